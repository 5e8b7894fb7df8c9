"""Frozen, validated configuration dataclasses. Bad values raise ValueError before any compute."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmark.config.reduction import parse_method, parse_reduce
from benchmark.interfaces import (  # noqa: F401  re-exported
    BadInput,
    ClusterSpec,
    Options,
    check_choice,
    check_positive,  # noqa: F401
    stable_hash,
)

OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")


def _int(name: str, value: Any, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise BadInput(f"bad {name} {value!r}: need an integer >= {lo}")


@dataclass(frozen=True)
class TrainSpec:
    """Pretext training options shared by every pretext task (one training loop)."""

    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_steps: int | None = None  # cap on optimizer steps per run (None: whole epochs)
    lr_schedule: str = "cosine"  # "cosine" decay over all steps, or "constant" (DEC's pretraining)
    plateau_patience: int | None = None  # stop after this many epochs without the pretext's own accuracy
    # (loss where it has none) improving by plateau_delta: a budget rule that never looks at the probe
    plateau_delta: float = 0.005

    def __post_init__(self) -> None:
        _int("epochs", self.epochs, 0)
        check_choice("lr schedule", self.lr_schedule, ("cosine", "constant"))
        if self.plateau_patience is not None:
            _int("plateau patience", self.plateau_patience, 1)
        check_positive("plateau delta", self.plateau_delta, allow_zero=True)
        _int("batch size", self.batch_size, 1)
        check_positive("learning rate", self.lr)
        check_positive("weight decay", self.weight_decay, allow_zero=True)
        check_positive("momentum", self.momentum, allow_zero=True)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.max_steps is not None:
            _int("max steps", self.max_steps, 1)


PROBE_SOLVERS = ("torch", "sklearn")


@dataclass(frozen=True)
class ProbeSpec:
    """Linear probe protocol: k labeled images per class, C chosen on a validation split of them."""

    k_per_class: int = 10
    draws: int = 20
    c_grid: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
    solver: str = "torch"  # "torch": batched Newton-CG (benchmark.probe.logreg); "sklearn": the reference

    def __post_init__(self) -> None:
        if self.solver not in PROBE_SOLVERS:
            raise BadInput(f"bad probe solver {self.solver!r}: allowed: {', '.join(PROBE_SOLVERS)}")
        if isinstance(self.k_per_class, bool) or not isinstance(self.k_per_class, int) or self.k_per_class < 2:
            raise BadInput(f"bad probe k {self.k_per_class!r}: need >= 2 labeled images per class")
        _int("probe draws", self.draws, 1)
        if not self.c_grid:
            raise BadInput(f"bad probe C grid {self.c_grid!r}: need positive values")
        for c in self.c_grid:
            check_positive("probe C", c)


@dataclass(frozen=True)
class GridSpec:
    """Everything a run needs. Names are checked against the registries by the planner.

    ``pretext_options``: (pretext name, its Options) for pretexts whose options differ from the defaults."""

    dataset: str
    backbones: tuple[str, ...]
    pretexts: tuple[str, ...]
    clusterers: tuple[str, ...]
    image_size: int = 32
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"
    labels: str | None = None
    weights: str | None = None  # "backbone=PATH,..." (a bare PATH when the grid has one deep backbone)
    reduce: str = ""  # --reduce: "umap" for all, or "kmeans=standardize,hdbscan=umap:10"; "" = the defaults
    train: TrainSpec = field(default_factory=TrainSpec)
    pretext_options: tuple[tuple[str, Options], ...] = ()
    probe: ProbeSpec = field(default_factory=ProbeSpec)
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    split: str | None = None  # --split of data sets that have splits (fashion_mnist: train, test, all)
    limit: int | None = None  # --limit N: a seeded subset of N images of the data set (smoke runs, quick looks)
    train_split: str | None = None  # --train-split: pretexts train on this split, features come from --split
    feature_layer: str | None = None  # --feature-layer: features of this stage (layer1..4, pool1..5, timm stages)
    deterministic: bool = False  # --deterministic: deterministic kernels (CUDA reruns bit-identical)
    compile: bool = False  # --compile: torch.compile the backbone for training and extraction

    def __post_init__(self) -> None:
        if self.limit is not None:
            _int("limit", self.limit, 2)
        for name in ("deterministic", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise BadInput(f"bad {name} {getattr(self, name)!r}: allowed: true, false")
        for kind, names in (("backbones", self.backbones), ("pretexts", self.pretexts),
                            ("clusterers", self.clusterers), ("seeds", self.seeds)):
            if not names:
                raise BadInput(f"no {kind} given: name at least one")
            if len(set(names)) != len(names):
                raise BadInput(f"duplicate {kind} in {','.join(map(str, names))}")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) \
                or not 8 <= self.image_size <= 1024:
            raise BadInput(f"bad image size {self.image_size!r}: allowed 8..1024")
        check_choice("device", self.device, DEVICES)
        for s in self.seeds:
            _int("seed", s, 0)

    @property
    def seed(self) -> int:
        """The first seed (runs with one seed)."""
        return self.seeds[0]

    def weights_paths(self) -> dict[str, str]:
        """{deep backbone: checkpoint path} from ``weights`` (file existence and content are checked later)."""
        from registry.backbones import backbone_info

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
    from registry.clusterers import clusterer_class

    return parse_method(clusterer_class(clusterer).default_reduce)
