"""The planner: ``plan(spec, data) -> Plan``, a pure function from a validated grid to typed stage tasks.

Each task is a frozen, picklable record with the keys of the tasks it depends on and its own key, built
only from its own inputs:

    DecodeTask    images key   = data content + S + decode version
    TrainTask     weights key  = images key + backbone + init (its weights' sha256) + this pretext's options + train cfg
                                 + seed + runtime
    ExtractTask   features key = images key + backbone + init (its weights' sha256) + trained-weights key + feature
                                 input + seed + runtime
    ProbeTask     probe key    = features key + labels key + probe spec (solver, kNN) + seed + device
                                 (+ --knn-reference's features key + its labels key)
    ReduceTask    reduce key   = features key + reduction + seed
    CellTask      cell key     = reduce key + features key + labels key + clusterer (+ version, options, k) + seed

Nothing is computed here; names are validated against the registries before any compute."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Union

from benchmark.config.specs import GridSpec, ProbeSpec, TrainSpec, parse_inits
from benchmark.interfaces import BadInput, ClusterSpec, Options, stable_hash
from benchmark.pipeline.cells import cell_id, parse_cell_id  # noqa: F401  parse_cell_id re-exported
from benchmark.runtime.device import Runtime, train_channels_last
from benchmark.runtime.threads import stage_limit
from benchmark.scoring.reduce import UMAP_EPOCHS, UMAP_MIN_DIST, UMAP_NEIGHBORS, UMAP_PRE_PCA
from benchmark.train.optim import recipe_spec
from registry.backbones import (
    backbone_info,
    check_backbone,
    check_image_size,
    feature_layers,
    has_depthwise,
    raw_pixels_note,
    raw_pixels_size,
)
from registry.clusterers import CLUSTERERS, clusterer_class
from registry.datasets import check_split
from registry.pretexts import PRETEXTS, build_pretext
from registry.weights import Init, resolve

TRAIN_VERSION = 3  # 3: the init (kind, source, sha256, statistics) for every init (2: the method's recipe)
FEATURE_VERSION = 5  # 5: the init for every init (4: raw_pixels in [0, 1] with the data's channels)
PROBE_VERSION = 3  # 3: kNN accuracy on the draws (and --knn-reference's) in the record (2: torch solver, device)
REDUCE_VERSION = 3  # 3: streamed in row blocks above 8 Mi values (2: --reduce methods)
CELL_VERSION = 6  # 6: scores streamed above 8 Mi values (5: stability, silhouette own and with noise, rankable)
COPY_NOTE = "features = pretext none"  # the notes text of cells whose features are another cell's


@dataclass(frozen=True)
class DataInfo:
    """What the planner needs to know of the data (from its listing, before any decode)."""

    dataset: str
    labels_csv: str | None
    images_key: str
    labels_key: str
    n_listed: int
    n_classes: int  # among labeled listed images
    decoder: str = "pil"  # "nvjpeg" for photo folders on CUDA (benchmark.data.nvjpeg)
    split: str | None = None  # --split of data sets that have splits
    limit: int | None = None  # --limit: a seeded subset
    train_images_key: str | None = None  # --train-split: the images the pretexts train on (None: images_key)
    knn_images_key: str | None = None  # --knn-reference: the split whose labeled images are the kNN's neighbours
    knn_labels_key: str | None = None  # and its labels


@dataclass(frozen=True)
class RuntimeInfo:
    """The compute settings that change numbers (part of the feature key, CONVENTIONS 2)."""

    device: str
    precision: str
    channels_last: bool
    channels_last_infer: bool
    threads: int
    deterministic: bool = False
    compile: bool = False

    @classmethod
    def of(cls, rt: Runtime) -> "RuntimeInfo":
        """The settings of a selected runtime, with this process's torch thread count."""
        import torch

        amp = str(rt.amp_dtype).replace("torch.", "") if rt.amp_dtype else "fp32"
        return cls(rt.device, amp, rt.channels_last, rt.channels_last_infer, torch.get_num_threads(),
                   rt.deterministic, rt.compile)

    def for_training(self, depthwise: bool) -> "RuntimeInfo":
        """These settings with one backbone's training layout (``train_channels_last``; in its train key)."""
        return replace(self, channels_last=train_channels_last(self.device, self.channels_last, depthwise))


@dataclass(frozen=True)
class DecodeTask:
    key: str
    dataset: str
    labels_csv: str | None
    image_size: int
    decoder: str = "pil"
    split: str | None = None
    limit: int | None = None
    deps: tuple[str, ...] = ()
    kind: str = "decode"


@dataclass(frozen=True)
class TrainTask:
    key: str
    images_key: str
    backbone: str
    pretext: str
    options: Options  # the pretext's Options
    train: TrainSpec
    seed: int
    image_size: int
    init: Init  # resolved and verified: the file (if any) the backbone starts from
    runtime: RuntimeInfo
    deps: tuple[str, ...] = ()
    kind: str = "train"


@dataclass(frozen=True)
class ExtractTask:
    key: str
    images_key: str
    backbone: str
    pretext: str  # whose feature input the backbone sees (and whose training, when train_key is set)
    options: Options
    train_key: str | None
    seed: int
    image_size: int
    batch_size: int
    init: Init
    runtime: RuntimeInfo
    feature_layer: str | None = None  # --feature-layer: the pooled output of this stage
    deps: tuple[str, ...] = ()
    kind: str = "extract"


@dataclass(frozen=True)
class ProbeTask:
    key: str
    features_key: str
    images_key: str
    labels_key: str
    probe: ProbeSpec
    seed: int
    device: str = "cpu"  # where the torch solver runs (the run's device)
    blas_threads: int | None = 1  # benchmark.runtime.threads.stage_limit for this data set (part of the key)
    reference_features_key: str | None = None  # --knn-reference: features of its images, the same weights
    reference_images_key: str | None = None
    reference_labels_key: str | None = None
    deps: tuple[str, ...] = ()
    kind: str = "probe"


@dataclass(frozen=True)
class ReduceTask:
    key: str
    features_key: str
    method: str  # see benchmark.scoring.reduce.METHODS
    dims: int
    seed: int
    deps: tuple[str, ...] = ()
    kind: str = "reduce"


@dataclass(frozen=True)
class CellTask:
    key: str
    features_key: str
    reduce_key: str
    images_key: str
    labels_key: str
    clusterer: str
    k: int
    cluster: ClusterSpec
    seed: int
    device: str
    blas_threads: int | None = 1  # benchmark.runtime.threads.stage_limit for this data set (part of the key)
    deps: tuple[str, ...] = ()
    kind: str = "cell"


Task = Union[DecodeTask, TrainTask, ExtractTask, ProbeTask, ReduceTask, CellTask]


@dataclass(frozen=True)
class CellSlot:
    """One cell of the grid (backbone / init / pretext / clusterer / seed) and the tasks that produce its row."""

    backbone: str
    pretext: str
    clusterer: str
    seed: int
    features_key: str
    probe_key: str
    cell_key: str
    notes: str = ""
    init: str = "random"  # the init's label (Init.label): random, imagenet, imagenet:<source>, checkpoint:<sha>
    weights: str = "random"  # the init's identity (Init.identity): the weights column

    @property
    def id(self) -> str:
        return cell_id(self.backbone, self.pretext, self.clusterer, self.seed, self.init)


@dataclass(frozen=True)
class Plan:
    spec: GridSpec
    data: DataInfo
    runtime: RuntimeInfo
    k: int
    tasks: tuple[Task, ...]  # topological order, one task per key
    cells: tuple[CellSlot, ...]  # grid order
    by_key: dict[str, Task] = field(default_factory=dict, compare=False)

    def needed_for(self, slots: list[CellSlot]) -> list[Task]:
        """The tasks (in plan order) that the given cells' rows need: their cell and probe tasks and
        everything those depend on."""
        want: set[str] = set()
        stack = [k for s in slots for k in (s.cell_key, s.probe_key)]
        while stack:
            key = stack.pop()
            if key in want or key not in self.by_key:
                continue
            want.add(key)
            stack.extend(self.by_key[key].deps)
        return [t for t in self.tasks if t.key in want]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tasks:
            out[t.kind] = out.get(t.kind, 0) + 1
        return out


def check_member_names(backbones: tuple[str, ...], pretexts: tuple[str, ...], clusterers: tuple[str, ...]) -> None:
    """Every name must exist in its registry (timm names against timm's list)."""

    for b in backbones:
        check_backbone(b)
    for p in pretexts:
        PRETEXTS.get(p)
    for c in clusterers:
        CLUSTERERS.get(c)


def validate_names(spec: GridSpec) -> None:
    """Every name must exist in its registry (timm names against timm's list); sizes must fit; paths exist."""
    import os

    check_member_names(spec.backbones, spec.pretexts, spec.clusterers)
    check_split(spec.dataset, spec.split)
    check_split(spec.dataset, spec.train_split, "--train-split")
    check_split(spec.dataset, spec.probe.knn_reference, "--knn-reference")
    for b in spec.backbones:
        check_image_size(b, spec.image_size)
    if spec.feature_layer:
        if not any(feature_layers(b) for b in spec.backbones):
            raise BadInput(f"bad --feature-layer {spec.feature_layer[:80]!r}: no backbone of the grid has stages to "
                           f"take it from ({', '.join(spec.backbones)}); see `list` for those that do")
        for b in spec.backbones:
            allowed = feature_layers(b)
            if allowed and spec.feature_layer not in allowed:
                raise BadInput(f"bad --feature-layer {spec.feature_layer!r} for backbone {b!r}: allowed: "
                               f"{', '.join(allowed)}")
    for name, _opts in spec.pretext_options:
        PRETEXTS.get(name)
    for c in spec.clusterers:
        spec.reduction_for(c)
    if spec.labels and not os.path.isfile(spec.labels):
        raise BadInput(f"bad --labels {spec.labels!r}: no such file")
    for bname, path in spec.weights_paths().items():
        if not os.path.isfile(path):
            raise BadInput(f"bad --weights {bname}={path!r}: no such file")
    for bname in spec.backbones:
        spec.inits_for(bname)  # the --init text parses
    given, shared = parse_inits(spec.init or "", spec.backbones)
    for value in shared + [v for vs in given.values() for v in vs]:
        if value not in ("random", "none") and not value.startswith("imagenet") and not os.path.isfile(value):
            raise BadInput(f"bad --init {value[:80]!r}: allowed: random, imagenet, imagenet:<source>, or a checkpoint "
                           "file (no such file)")


def has_layers(backbone: str) -> bool:

    return bool(feature_layers(backbone))


def number_of_clusters(spec: GridSpec, data: DataInfo) -> int:
    if spec.cluster.k == "auto":
        return 0  # chosen per cell
    if spec.cluster.k is not None:
        return int(spec.cluster.k)
    if data.n_classes >= 2:
        return data.n_classes
    if data.n_classes == 1:
        raise BadInput("bad --k (not given): the labels name only 1 class, too few to take the number of clusters "
                       "from; pass --k")
    raise BadInput("bad --k (not given): the data has no labels to take the number of clusters from; pass --k")


def _feature_tasks(tasks: dict[str, Task], spec: GridSpec, data: DataInfo, runtime: RuntimeInfo, bname: str,
                   pname: str, seed: int, init: Init) -> tuple[str, str, str]:
    """Add the train (when the pretext trains), extract and probe tasks of one feature set, the backbone
    starting from ``init``. Returns (features key, probe key, notes)."""

    info = backbone_info(bname)
    train_images = data.train_images_key or data.images_key
    weights = init.key()
    pretext = build_pretext(pname, spec.options_for(pname))
    notes = ""
    if pretext.trains and not info.trainable:  # raw pixels: the pretext changes nothing
        notes = f"{pname} has nothing to train in {bname}; {COPY_NOTE}"
        pretext = build_pretext("none")
    train_key = None
    if pretext.trains:
        train = recipe_spec(spec.train, pretext)  # the method's recipe where the user set no shared flag
        train_rt = runtime.for_training(has_depthwise(bname, spec.image_size))
        train_key = stable_hash(["weights", TRAIN_VERSION, train_images, bname, weights, pretext.key(),
                                 train, seed, spec.image_size, train_rt])
        tasks.setdefault(train_key, TrainTask(
            train_key, train_images, bname, pretext.name, pretext.opts, train, seed,
            spec.image_size, init, train_rt, deps=(train_images,)))
    batch = max(spec.train.batch_size, 128)
    layer = spec.feature_layer if spec.feature_layer and has_layers(bname) else None
    capped = raw_pixels_note(spec.image_size) if bname == "raw_pixels" else ""  # the baseline's resolution cap
    notes = "; ".join(x for x in (notes, capped) if x)

    def extract(images: str) -> str:  # the features of ``images`` with this backbone, weights and training
        key = stable_hash(["features", FEATURE_VERSION, images, bname, weights, train_key,
                           pretext.name, seed, spec.image_size, batch, runtime] + ([layer] if layer else [])
                          + ([["raw_pixels_size", raw_pixels_size(spec.image_size)]] if capped else []))
        tasks.setdefault(key, ExtractTask(
            key, images, bname, pretext.name, pretext.opts, train_key, seed, spec.image_size,
            batch, init, runtime, layer, deps=(images,) + ((train_key,) if train_key else ())))
        return key

    fkey = extract(data.images_key)
    ref = extract(data.knn_images_key) if data.knn_images_key else None  # --knn-reference: the same weights
    threads = stage_limit("probe", data.n_listed)
    pkey = stable_hash(["probe", PROBE_VERSION, fkey, data.labels_key, spec.probe, seed, threads, runtime.device]
                       + ([ref, data.knn_labels_key] if ref else []))
    tasks.setdefault(pkey, ProbeTask(pkey, fkey, data.images_key, data.labels_key, spec.probe, seed,
                                     runtime.device, threads, ref, data.knn_images_key if ref else None,
                                     data.knn_labels_key if ref else None, deps=(fkey,) + ((ref,) if ref else ())))
    return fkey, pkey, notes


def _cell_tasks(tasks: dict[str, Task], spec: GridSpec, data: DataInfo, runtime: RuntimeInfo, fkey: str,
                cname: str, k: int, seed: int) -> str:
    """Add the reduce and cell tasks of one clusterer on one feature set. Returns the cell key."""

    method, dims = spec.reduction_for(cname)
    umap = [UMAP_NEIGHBORS, UMAP_MIN_DIST, UMAP_PRE_PCA, UMAP_EPOCHS] if method == "umap" else None
    rkey = stable_hash(["reduce", REDUCE_VERSION, fkey, method, dims, seed, umap])
    tasks.setdefault(rkey, ReduceTask(rkey, fkey, method, dims, seed, deps=(fkey,)))
    threads = stage_limit("cell", data.n_listed)
    ckey = stable_hash(["cell", CELL_VERSION, rkey, fkey, data.labels_key, cname, clusterer_class(cname).version, k,
                        spec.cluster, seed, runtime.device, threads])
    tasks.setdefault(ckey, CellTask(ckey, fkey, rkey, data.images_key, data.labels_key, cname, k, spec.cluster,
                                    seed, runtime.device, threads, deps=(rkey, fkey)))
    return ckey


def plan(spec: GridSpec, data: DataInfo, runtime: RuntimeInfo, inits: dict[str, dict[str, Init]] | None = None
         ) -> Plan:
    """The task graph of ``spec`` (see the module docstring). ``inits``: {backbone: {--init value: its resolved
    Init}} (``benchmark.config.checks.resolve_inits``; resolved here from the local files when not given)."""
    validate_names(spec)
    inits = inits if inits is not None else {b: {v: resolve(b, v) for v in spec.inits_for(b)} for b in spec.backbones}
    k = number_of_clusters(spec, data)
    tasks: dict[str, Task] = {}
    decode = DecodeTask(data.images_key, data.dataset, data.labels_csv, spec.image_size, data.decoder, data.split,
                        data.limit)
    tasks[decode.key] = decode
    train_images = data.train_images_key or data.images_key
    if train_images != data.images_key:
        tasks[train_images] = DecodeTask(train_images, data.dataset, data.labels_csv, spec.image_size, data.decoder,
                                         spec.train_split, data.limit)
    if data.knn_images_key:  # --knn-reference (the --train-split images already when it names the same split)
        tasks.setdefault(data.knn_images_key, DecodeTask(data.knn_images_key, data.dataset, data.labels_csv,
                                                         spec.image_size, data.decoder, spec.probe.knn_reference,
                                                         data.limit))
    slots: list[CellSlot] = []
    for seed in spec.seeds:
        for bname in spec.backbones:
            for value in spec.inits_for(bname):
                init = inits[bname][value]
                for pname in spec.pretexts_for(bname):
                    fkey, pkey, notes = _feature_tasks(tasks, spec, data, runtime, bname, pname, seed, init)
                    for cname in spec.clusterers:
                        ckey = _cell_tasks(tasks, spec, data, runtime, fkey, cname, k, seed)
                        slots.append(CellSlot(bname, pname, cname, seed, fkey, pkey, ckey, notes, init.label,
                                              init.identity))
    ordered = tuple(tasks.values())  # insertion order is a topological order: deps are added first
    return Plan(spec, data, runtime, k, ordered, tuple(slots), by_key=dict(tasks))
