"""Frozen, validated configuration dataclasses. Bad values raise ValueError before any compute."""
from __future__ import annotations

from dataclasses import dataclass, replace

from benchmark.config.reduction import parse_method, parse_reduce
from benchmark.interfaces import (
    BadInput,
    ClusterSpec,
    Constraint,
    Options,
    check_positive,
    check_settings,
    setting,
)
from registry.backbones import backbone_info
from registry.clusterers import clusterer_class

OPTIMIZERS = ("sgd", "adam", "lars")
DEVICES = ("auto", "cpu", "cuda")
PROBE_SOLVERS = ("torch", "sklearn")
MAX_SEED = 2**31 - 2002  # the harness offsets seeds (+1000 per stability refit, +1 into FAISS's C int)


@dataclass(frozen=True)
class TrainSpec:
    """Pretext training options shared by every pretext task (one training loop)."""

    epochs: int = setting(1, Constraint("int", 0, cap=100_000), flag="epochs", help="pretext training epochs")
    batch_size: int = setting(64, Constraint("int", 1, cap=65536), flag="batch-size", label="batch size",
                              help="pretext training batch size")
    lr: float | None = setting(None, Constraint("real", 0, cap=1e12, lo_open=True, optional=True), flag="lr",
                               label="learning rate",
                               help="pretext learning rate (default: the method's own: 0.01 for the pretext tasks, "
                                    "the reference config's for the joint-embedding methods)")
    optimizer: str | None = setting(None, Constraint("choice", choices=OPTIMIZERS, optional=True), flag="optimizer",
                                    help="sgd, adam or lars (default: the method's own; sgd for the pretext tasks)")
    momentum: float = setting(0.9, Constraint("real", 0, 1, hi_open=True))
    weight_decay: float | None = setting(None, Constraint("real", 0, cap=1, optional=True), flag="weight-decay",
                                         label="weight decay",
                                         help="pretext weight decay (default: the method's own; 5e-4 for the "
                                              "pretext tasks)")
    max_steps: int | None = setting(None, Constraint("int", 1, cap=10**9, optional=True), flag="max-steps",
                                    help="cap on pretext training steps (default: whole epochs)")
    lr_schedule: str = setting("cosine", Constraint("choice", choices=("cosine", "constant")),
                               help="cosine decay over all steps, or constant (DEC's pretraining)")
    plateau_patience: int | None = setting(None, Constraint("int", 1, cap=10**6, optional=True),
                                           help="stop after this many epochs without the pretext's own accuracy "
                                                "(loss where it has none) improving by plateau_delta: a budget rule "
                                                "that never looks at the probe")
    plateau_delta: float = setting(0.005, Constraint("real", 0, cap=1))
    warmup: float | None = setting(None, Constraint("real", 0, 1, hi_open=True, optional=True), flag="warmup",
                                   help="linear learning-rate warmup as a fraction of all steps, then the cosine "
                                        "(default: the method's own; none for the pretext tasks)")

    def __post_init__(self) -> None:
        check_settings(self)

    def resolved(self, optimizer: str, lr: float, weight_decay: float, warmup: float,
                 base_batch: int | None = None) -> TrainSpec:
        """This spec with every field the user left unset (None) taken from a method's recipe: the user's
        explicit ``--lr`` / ``--optimizer`` / ``--weight-decay`` / ``--warmup`` win. A recipe's learning
        rate is given at ``base_batch`` images per step and scaled linearly to ``batch_size`` (an explicit
        ``--lr`` is used as given)."""
        scaled = lr * self.batch_size / base_batch if base_batch else lr
        return replace(self, optimizer=self.optimizer or optimizer,
                       lr=self.lr if self.lr is not None else scaled,
                       weight_decay=self.weight_decay if self.weight_decay is not None else weight_decay,
                       warmup=self.warmup if self.warmup is not None else warmup)


@dataclass(frozen=True)
class ProbeSpec:
    """Linear probe protocol: k labeled images per class, C chosen on a validation split of them; the weighted
    kNN accuracy on the same draws (``knn_k``, ``knn_t``) and, with ``knn_reference``, on all labels of another
    split (``knn_full_k``, ``knn_full_t``): ``benchmark.probe.knn``."""

    k_per_class: int = setting(10, Constraint("int", 2, cap=100_000), flag="probe-k", label="probe k",
                               help="labeled images per class for the linear probe (default 10)")
    draws: int = setting(20, Constraint("int", 1, cap=1000), flag="probe-draws", label="probe draws",
                         help="seeded draws of the probe's labeled subset (default 20; presets set their own)")
    c_grid: tuple[float, ...] = setting((0.01, 0.1, 1.0, 10.0), Constraint("reals", 0, cap=1e6, lo_open=True),
                                        label="probe C grid")
    solver: str = setting("torch", Constraint("choice", choices=PROBE_SOLVERS), flag="probe-solver",
                          label="probe solver", help="torch (batched Newton-CG on the run's device; default) or "
                                                     "sklearn (the reference LogisticRegression, one fit at a time)")
    knn_k: int = setting(20, Constraint("int", 1, cap=100_000), flag="knn-k", label="knn k",
                         help="neighbours of the weighted kNN accuracy on the probe's draws (default 20, "
                              "solo-learn's; capped at the draw's labeled images)")
    knn_t: float = setting(0.07, Constraint("real", 0, cap=1e6, lo_open=True), flag="knn-t", label="knn T",
                           help="temperature of the kNN votes exp(cosine / T) (default 0.07, solo-learn's)")
    knn_reference: str | None = setting(None, Constraint("text", optional=True), flag="knn-reference",
                                        label="knn reference",
                                        help="also score kNN with every labeled image of this split of the data "
                                             "set (e.g. train) as neighbours of every labeled image of --split "
                                             "(lightly's full-label protocol: knn_full_acc; default: off)")
    knn_full_k: int = setting(200, Constraint("int", 1, cap=100_000), flag="knn-full-k", label="knn full k",
                              help="neighbours of the --knn-reference kNN (default 200, lightly's)")
    knn_full_t: float = setting(0.1, Constraint("real", 0, cap=1e6, lo_open=True), flag="knn-full-t",
                                label="knn full T", help="temperature of the --knn-reference kNN (default 0.1, "
                                                         "lightly's)")

    def __post_init__(self) -> None:
        check_settings(self)
        if not self.c_grid:
            raise BadInput(f"bad probe C grid {self.c_grid!r}: need positive values")
        for c in self.c_grid:
            check_positive("probe C", c)


@dataclass(frozen=True)
class GridSpec:
    """Everything a run needs. Names are checked against the registries by the planner. A field with a
    ``flag`` is a ``run`` flag (the command line is generated from these fields, their constraints and help).

    ``pretext_options``: (pretext name, its Options) for pretexts whose options differ from the defaults."""

    dataset: str = setting(constraint=Constraint("text"), flag="dataset",
                           help="a built-in data set or a folder of images")
    backbones: tuple[str, ...] = setting(constraint=Constraint("names"), flag="backbones",
                                         help="comma list of backbones (timm:<name> for any timm model)")
    pretexts: tuple[str, ...] = setting(constraint=Constraint("names"), flag="pretexts",
                                        help="comma list of pretext tasks")
    clusterers: tuple[str, ...] = setting(constraint=Constraint("names"), flag="clusterers",
                                          help="comma list of clusterers")
    image_size: int = setting(32, Constraint("int", 8, 1024), flag="image-size", label="image size",
                              help="images are resized to S x S")
    seeds: tuple[int, ...] = setting((0,), Constraint("ints", 0, MAX_SEED), flag="seeds",
                                     help="comma list of seeds, e.g. 0,1,2 (every cell runs once per seed)")
    device: str = setting("auto", Constraint("choice", choices=DEVICES), flag="device",
                          help="auto, cpu or cuda (auto: cuda when a GPU is visible)")
    labels: str | None = setting(None, Constraint("path", optional=True), flag="labels",
                                 help="CSV filename,label for a folder (the rest stays unlabeled)")
    init: str | None = setting(None, Constraint("text", optional=True), flag="init",
                               help="where the deep backbones' weights start, a grid axis: comma list of random, "
                                    "imagenet, imagenet:<source>, a checkpoint PATH, for all or per backbone "
                                    "(resnet18=imagenet,timm:efficientnet_lite0=random); default random")
    weights: str | None = setting(None, Constraint("text", optional=True), flag="weights",
                                  help="local checkpoint (state_dict) for the deep backbones: PATH, or "
                                       "backbone=PATH,... (a spelling of --init PATH)")
    backbone_pretexts: str | None = setting(
        None, Constraint("text", optional=True), flag="backbone-pretexts",
        help="only some of --pretexts for some backbones: timm:efficientnet_lite0=none+rotation,... (the other "
             "backbones, and one given none of --pretexts, take every --pretexts)")
    reduce: str = setting("", Constraint("text", empty=True), flag="reduce",
                          help="step before clustering: none, standardize, l2, pca[:D], umap[:D], for all or per "
                               "clusterer (kmeans=standardize,hdbscan=umap:10); default: umap:10 for density "
                               "clusterers, pca:50 for Ward, standardize for the rest")
    train: TrainSpec = setting(factory=TrainSpec)
    pretext_options: tuple[tuple[str, Options], ...] = ()
    probe: ProbeSpec = setting(factory=ProbeSpec)
    cluster: ClusterSpec = setting(factory=ClusterSpec)
    split: str | None = setting(None, Constraint("text", optional=True), flag="split",
                                help="split of a data set that has them")
    limit: int | None = setting(None, Constraint("int", 2, cap=10**9, optional=True), flag="limit",
                                help="a seeded subset of N images of the data set")
    train_split: str | None = setting(None, Constraint("text", optional=True), flag="train-split",
                                      help="train the pretexts on this split (e.g. train) and take features of "
                                           "--split (e.g. test)")
    feature_layer: str | None = setting(None, Constraint("text", optional=True), flag="feature-layer",
                                        help="features of an intermediate stage, pooled (the backbone's stages: "
                                             "see `list`)")
    deterministic: bool = setting(False, Constraint("bool"), flag="deterministic",
                                  help="deterministic kernels: CUDA reruns and resumes bit-identical (slower)")
    compile: bool = setting(False, Constraint("bool"), flag="compile",
                            help="torch.compile the backbones for training and extraction (compile time kept "
                                 "apart in run.json)")

    def __post_init__(self) -> None:
        check_settings(self)
        for kind, names in (("backbones", self.backbones), ("pretexts", self.pretexts),
                            ("clusterers", self.clusterers), ("seeds", self.seeds)):
            if not names:
                raise BadInput(f"no {kind} given: name at least one")
            if len(set(names)) != len(names):
                raise BadInput(f"duplicate {kind} in {','.join(map(str, names))}")
        if self.backbone_pretexts:
            parse_backbone_pretexts(self.backbone_pretexts, self.backbones, self.pretexts)

    @property
    def seed(self) -> int:
        """The first seed (runs with one seed)."""
        return self.seeds[0]

    def inits_for(self, backbone: str) -> tuple[str, ...]:
        """The ``--init`` values of ``backbone`` (``none`` for backbones without weights, ``random`` by default);
        ``--weights`` is read as the checkpoint init of the backbones it names (it overrides ``--init`` for them)."""
        if not backbone_info(backbone).uses_weights:
            return ("none",)
        path = self.weights_paths().get(backbone) if self.weights else None
        if path:  # --weights B=PATH: B's init is that checkpoint, whatever --init says of it
            return (path,)
        given, shared = parse_inits(self.init or "", self.backbones)
        values = given.get(backbone) or shared or ["random"]
        if len(set(values)) != len(values):
            raise BadInput(f"bad --init {self.init!r}: backbone {backbone!r} is given {values[0]!r} twice")
        return tuple(values)

    def pretexts_for(self, backbone: str) -> tuple[str, ...]:
        """The pretexts ``backbone`` is crossed with: those of ``--pretexts`` that ``--backbone-pretexts`` gives
        it (in the order of ``--pretexts``), else every one (also where --pretexts holds none of them)."""
        chosen = parse_backbone_pretexts(self.backbone_pretexts or "", self.backbones, self.pretexts).get(backbone)
        return tuple(p for p in self.pretexts if p in chosen) if chosen else self.pretexts

    def weights_paths(self) -> dict[str, str]:
        """{deep backbone: checkpoint path} from ``weights`` (file existence and content are checked later)."""

        if not self.weights:
            return {}
        deep = [b for b in self.backbones if backbone_info(b).uses_weights]
        items = [x.strip() for x in self.weights.split(",") if x.strip()]
        if len(items) == 1 and "=" not in items[0]:
            if len(deep) > 1:
                raise BadInput(f"bad --weights {self.weights!r}: the grid has {len(deep)} deep backbones "
                               f"({', '.join(deep)}); give one path per backbone: "
                               f"--weights {deep[0]}=PATH,{deep[1]}=PATH2")
            return {deep[0]: items[0]} if deep else {}
        out: dict[str, str] = {}
        for item in items:
            name, sep, path = item.partition("=")
            name, path = name.strip(), path.strip()
            if not sep or not path:
                raise BadInput(f"bad --weights item {item!r}: write backbone=PATH")
            if name not in deep:
                raise BadInput(f"bad --weights backbone {name!r}: allowed: the grid's deep backbones "
                               f"({', '.join(deep) or 'none'})")
            if name in out:
                raise BadInput(f"bad --weights: backbone {name!r} is given twice")
            out[name] = path
        return out

    def reduction_for(self, clusterer: str) -> tuple[str, int]:
        """(method, dims) of the step before ``clusterer``: --reduce, else the default for its kind."""
        given = parse_reduce(self.reduce, self.clusterers).get(clusterer)
        return given or default_reduction(clusterer)

    def options_for(self, pretext: str) -> Options | None:
        """The options given for ``pretext`` (None: its defaults)."""
        return dict(self.pretext_options).get(pretext)


def default_reduction(clusterer: str) -> tuple[str, int]:
    """The clusterer's own ``default_reduce``: UMAP to 10 dimensions for DBSCAN and HDBSCAN (measured on the
    default preset, see the README), PCA-50 for Ward, the standardized features for the rest."""

    return parse_method(clusterer_class(clusterer).default_reduce)


def parse_inits(text: str, backbones: tuple[str, ...]) -> tuple[dict[str, list[str]], list[str]]:
    """``--init`` text -> ({backbone: its values}, the values for the other backbones). An item ``name=value``
    is per backbone where ``name`` is one of the grid's; every value is random, imagenet, imagenet:<source>
    or a checkpoint path (whose existence the resolver checks)."""
    per: dict[str, list[str]] = {}
    shared: list[str] = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        name, sep, value = item.partition("=")
        if sep and name.strip() in backbones:
            target = per.setdefault(name.strip(), [])
            item = value.strip()
        elif sep and _is_backbone(name.strip()):  # a backbone outside this grid (a preset's, --backbones narrowed)
            continue
        elif sep and not (name.strip().startswith((".", "/", "~")) or "/" in name):
            raise BadInput(f"bad --init item {item!r}: {name.strip()!r} is not a backbone of the grid "
                           f"({', '.join(backbones)}); write backbone=INIT")
        else:
            target = shared
        if not item:
            raise BadInput(f"bad --init item {name!r}: write backbone=INIT with INIT random, imagenet or a checkpoint")
        if item.startswith("imagenet") and item != "imagenet" and not item.startswith("imagenet:"):
            raise BadInput(f"bad --init value {item!r}: allowed: random, imagenet, imagenet:<source>, a checkpoint "
                           "file")
        target.append(item)
    return per, shared


def parse_backbone_pretexts(text: str, backbones: tuple[str, ...], pretexts: tuple[str, ...]) -> dict[str, set[str]]:
    """``--backbone-pretexts`` text -> {backbone of the grid: its pretexts}. Items are ``backbone=p1+p2``, each
    pretext one of ``pretexts``; items of backbones outside the grid (a preset's, --backbones narrowed) are
    ignored."""
    from registry.pretexts import PRETEXTS

    out: dict[str, set[str]] = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        name, sep, value = (x.strip() for x in item.partition("="))
        chosen = [p.strip() for p in value.split("+") if p.strip()]
        if not sep or not chosen:
            raise BadInput(f"bad --backbone-pretexts item {item!r}: write backbone=PRETEXT+PRETEXT")
        if name not in backbones:
            if _is_backbone(name):
                continue
            raise BadInput(f"bad --backbone-pretexts item {item!r}: {name!r} is not a backbone of the grid "
                           f"({', '.join(backbones)})")
        if name in out:
            raise BadInput(f"bad --backbone-pretexts item {item!r}: backbone {name!r} is given twice")
        for p in chosen:
            if p not in PRETEXTS:
                raise BadInput(f"bad --backbone-pretexts item {item!r}: {p!r} is not a pretext (allowed: "
                               f"{', '.join(PRETEXTS.names())})")
        out[name] = {p for p in chosen if p in pretexts}  # a preset's pretext that --pretexts left out: ignored
    return out


def _is_backbone(name: str) -> bool:
    from registry.backbones import check_backbone

    try:
        check_backbone(name)
    except BadInput:
        return False
    return True
