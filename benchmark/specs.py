"""Frozen, validated configuration dataclasses. Bad values raise ValueError before any compute."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")


def _positive(name: str, value: int | float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"bad {name} {value!r}: must be a number {bound}")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"bad {name} {value!r}: allowed: {', '.join(allowed)}")


def stable_hash(obj: object, n: int = 16) -> str:
    """Short hex digest of a JSON-serializable object (dataclasses allowed), stable across runs."""

    def default(o: object) -> object:
        if dataclasses.is_dataclass(o):
            return dataclasses.asdict(o)  # type: ignore[arg-type]
        raise TypeError(f"cannot hash {type(o).__name__}")

    blob = json.dumps(obj, sort_keys=True, default=default).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


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

    def __post_init__(self) -> None:
        _positive("epochs", self.epochs, allow_zero=True)
        _positive("batch size", self.batch_size)
        _positive("learning rate", self.lr)
        _positive("weight decay", self.weight_decay, allow_zero=True)
        _positive("momentum", self.momentum, allow_zero=True)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.max_steps is not None:
            _positive("max steps", self.max_steps)


@dataclass(frozen=True)
class PretextSpec:
    """Per-pretext options (used by the tasks that need them)."""

    jigsaw_permutations: int = 24
    jigsaw_gap: float = 0.15  # fraction of a cell left as a random gap around each tile
    color_loss: str = "classification"  # or "l1" / "l2" regression
    color_rebalance: float = 0.5  # lambda of Zhang et al.'s class rebalancing (0 = off)
    autoencoder_noise: float = 0.0  # std of Gaussian input noise (denoising variant when > 0)

    def __post_init__(self) -> None:
        if not 2 <= self.jigsaw_permutations <= 1000:
            raise ValueError(f"bad jigsaw permutations {self.jigsaw_permutations!r}: allowed 2..1000")
        if not 0.0 <= self.jigsaw_gap < 0.5:
            raise ValueError(f"bad jigsaw gap {self.jigsaw_gap!r}: allowed 0 <= gap < 0.5")
        _choice("colorization loss", self.color_loss, ("classification", "l1", "l2"))
        if not 0.0 <= self.color_rebalance <= 1.0:
            raise ValueError(f"bad colorization rebalance {self.color_rebalance!r}: allowed 0..1")
        _positive("autoencoder noise", self.autoencoder_noise, allow_zero=True)


@dataclass(frozen=True)
class ProbeSpec:
    """Linear probe protocol: k labeled images per class, C chosen on a validation split of them."""

    k_per_class: int = 10
    draws: int = 5
    c_grid: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)

    def __post_init__(self) -> None:
        if self.k_per_class < 2:
            raise ValueError(f"bad probe k {self.k_per_class!r}: need >= 2 labeled images per class")
        _positive("probe draws", self.draws)
        if not self.c_grid or any(c <= 0 for c in self.c_grid):
            raise ValueError(f"bad probe C grid {self.c_grid!r}: need positive values")


@dataclass(frozen=True)
class ClusterSpec:
    """Clusterer options: k for k-means types (None: number of classes), DBSCAN eps (None: k-distance knee)."""

    k: int | None = None
    eps: float | None = None
    min_samples: int = 5
    density_dims: int = 50  # PCA copy for density clusterers (0 = no reduction)
    silhouette_max_n: int = 20000  # above this, silhouette is computed on a seeded sample

    def __post_init__(self) -> None:
        if self.k is not None and (isinstance(self.k, bool) or self.k < 2):
            raise ValueError(f"bad k {self.k!r}: need an integer >= 2")
        if self.eps is not None:
            _positive("eps", self.eps)
        if self.min_samples < 2:
            raise ValueError(f"bad min samples {self.min_samples!r}: need >= 2")
        _positive("density dims", self.density_dims, allow_zero=True)
        _positive("silhouette max n", self.silhouette_max_n)


@dataclass(frozen=True)
class GridSpec:
    """Everything a run needs. Names are checked against the registries by ``validate_names``."""

    dataset: str
    backbones: tuple[str, ...]
    pretexts: tuple[str, ...]
    clusterers: tuple[str, ...]
    image_size: int = 32
    seed: int = 0
    device: str = "auto"
    labels: str | None = None
    weights: str | None = None  # a local checkpoint path for every deep backbone
    train: TrainSpec = field(default_factory=TrainSpec)
    pretext_opts: PretextSpec = field(default_factory=PretextSpec)
    probe: ProbeSpec = field(default_factory=ProbeSpec)
    cluster: ClusterSpec = field(default_factory=ClusterSpec)

    def __post_init__(self) -> None:
        for kind, names in (("backbones", self.backbones), ("pretexts", self.pretexts),
                            ("clusterers", self.clusterers)):
            if not names:
                raise ValueError(f"no {kind} given: name at least one")
            if len(set(names)) != len(names):
                raise ValueError(f"duplicate {kind} in {','.join(names)}")
        if isinstance(self.image_size, bool) or not 8 <= self.image_size <= 1024:
            raise ValueError(f"bad image size {self.image_size!r}: allowed 8..1024")
        _choice("device", self.device, DEVICES)
        if self.seed < 0:
            raise ValueError(f"bad seed {self.seed!r}: need an integer >= 0")
