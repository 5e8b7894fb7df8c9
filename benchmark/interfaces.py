"""The small module both layers share: what registry members receive and return.

``registry/`` imports nothing else from ``benchmark/``: validation helpers, the options base class every
member's options derive from, the clustering options, the data-set listing and ``stable_hash``. It
depends only on the standard library and numpy."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np


class BadInput(ValueError):
    """A value the user passed (flag, file, folder, data) that cannot be used. The message is one line naming
    the value and what is allowed; the command line prints it and exits 2. Any other exception is a bug."""


def check_positive(name: str, value: int | float, allow_zero: bool = False) -> None:
    """ValueError unless ``value`` is a finite number > 0 (>= 0 with ``allow_zero``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise BadInput(f"bad {name} {value!r}: must be a finite number {bound}")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise BadInput(f"bad {name} {value!r}: allowed: {', '.join(allowed)}")


def check_range(name: str, value: float, lo: float, hi: float, hi_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and lo <= value and (value < hi if hi_open else value <= hi)
    if not ok:
        raise BadInput(f"bad {name} {value!r}: allowed {lo:g} <= value {'<' if hi_open else '<='} {hi:g}")


def stable_hash(obj: object, n: int = 16) -> str:
    """Short hex digest of a JSON-serializable object (dataclasses allowed), stable across runs."""

    def default(o: object) -> object:
        if dataclasses.is_dataclass(o):
            return dataclasses.asdict(o)  # type: ignore[arg-type]
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"cannot hash {type(o).__name__}")

    blob = json.dumps(obj, sort_keys=True, default=default).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


@dataclass(frozen=True)
class Options:
    """Base of a member's own options (a frozen dataclass validated in ``__post_init__``).

    ``flag_prefix`` names the command-line flags: field ``gap`` of prefix ``jigsaw`` is ``--jigsaw-gap``;
    a field's ``metadata["help"]`` is its help text. The options are the member's whole contribution to
    a cache key (``key()``)."""

    flag_prefix = ""

    def key(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def flags(cls) -> list[tuple[str, dataclasses.Field]]:  # type: ignore[type-arg]
        """(flag name without dashes, field) for every option."""
        return [(f"{cls.flag_prefix}-{f.name.replace('_', '-')}", f) for f in fields(cls)]


@dataclass(frozen=True)
class NoOptions(Options):
    """For members without options."""


@dataclass(frozen=True)
class ClusterSpec:
    """Clusterer options: k for k-means types (None: number of classes), DBSCAN eps (None: k-distance knee)."""

    k: int | str | None = None  # "auto": chosen per cell by internal criteria (benchmark.pipeline.stages.choose_k)
    eps: float | None = None
    min_samples: int = 5
    density_dims: int = 50  # PCA copy for density clusterers (0 = no reduction)
    silhouette_max_n: int = 20000  # above this, silhouette is computed on a seeded sample
    kmeans_n_init: int = 4  # k-means restarts (scikit-learn KMeans)
    stability_repeats: int = 3  # fits of a seeded clusterer for the stability column (1: not measured)

    def __post_init__(self) -> None:
        if self.k is not None and self.k != "auto" and (isinstance(self.k, bool) or not isinstance(self.k, int)
                                                         or self.k < 2):
            raise BadInput(f"bad k {self.k!r}: need an integer >= 2, or auto")
        if self.eps is not None:
            check_positive("eps", self.eps)
        for name in ("kmeans_n_init", "stability_repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BadInput(f"bad {name} {v!r}: need an integer >= 1")
        if self.min_samples < 2:
            raise BadInput(f"bad min samples {self.min_samples!r}: need >= 2")
        check_positive("density dims", self.density_dims, allow_zero=True)
        check_positive("silhouette max n", self.silhouette_max_n)


@dataclass
class Listing:
    """What a data set lists: N images (files to decode, or in-memory pixels) with names and labels.

    ``files``: paths to decode (None for in-memory data); ``pixels``: a callable giving N uint8 arrays
    (H,W) or (H,W,3); ``labels``: N class names or None (unlabeled); ``fingerprint``: identifies the pixel
    content (not the labels)."""

    names: list[str]
    labels: list[str | None]
    fingerprint: str
    files: list[Path] | None = None
    root: Path | None = None
    pixels: Callable[[], list[np.ndarray]] | None = None
    label_source: str = "none"  # "builtin", "csv", "subfolders" or "none"
    notes: list[str] = field(default_factory=list)

    def class_names(self) -> list[str]:
        return sorted({x for x in self.labels if x is not None})
