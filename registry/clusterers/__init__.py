"""Clusterers, one module each in this package (discovered, no import list).

Each member owns its lifecycle: ``fit(X) -> labels`` (-1 = noise), ``predict(X) -> (labels, score)`` for
new points, ``save(folder)`` / ``load(folder)`` as npz arrays + JSON (never pickle), and ``params`` (the
parameters actually used). k-means types get k (the number of classes where labels exist, else ``--k``);
each declares the step before it (``default_reduce``: UMAP-10 for the density clusterers, PCA-50 for Ward) and
the memory its fit needs (``fit_memory_mib``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.interfaces import ClusterSpec
from registry.base import Registry

STATE_FILE = "clusterer.npz"
PARAMS_FILE = "clusterer.json"


class Clusterer:
    name = "base"
    density = False  # True: works on the reduced (PCA) copy; may return -1 for noise
    uses_k = False
    score_name = "distance"  # what ``predict``'s second output is ("distance" or "confidence")
    version = 1  # bump when fitting changes, so cached cells are not reused
    default_reduce = "standardize"  # the step before it unless --reduce says otherwise (benchmark.scoring.reduce)
    seeded = False  # True: the labels depend on the seed (its stability is measured by refitting)
    fit_memory_mib = 0  # memory its fit needs beyond the features and their copies (the cell stage's memory model)

    def __init__(self, k: int, spec: ClusterSpec, seed: int, use_gpu: bool = False) -> None:
        self.k = k
        self.spec = spec
        self.seed = seed
        self.use_gpu = use_gpu
        self.params: dict[str, Any] = {}  # the parameters actually used (recorded in results)

    def fit(self, X: np.ndarray) -> np.ndarray:
        """Fit on X (N, D) float32; returns labels (N,) int64, -1 = noise."""
        raise NotImplementedError

    def fit_predict(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Assign new points X (M, D): (labels (M,) int64 with -1 = outlier, score (M,) float64)."""
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        """The fitted state as plain arrays (what ``predict`` needs)."""
        raise NotImplementedError

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def save(self, folder: Path) -> list[Path]:
        """Write the fitted state (npz, no pickle) and parameters (JSON) into ``folder``; returns the files."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = self.state()  # Any: mypy also matches **arrays against savez's allow_pickle
        np.savez(folder / STATE_FILE, **arrays)
        meta = {"clusterer": self.name, "k": self.k, "seed": self.seed, "params": self.params,
                "spec": {f: getattr(self.spec, f) for f in self.spec.__dataclass_fields__}}
        (folder / PARAMS_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return [folder / STATE_FILE, folder / PARAMS_FILE]

    @classmethod
    def load(cls, folder: Path) -> "Clusterer":
        """A clusterer saved by ``save``, ready to ``predict`` (the class is looked up by its saved name)."""
        meta = json.loads((folder / PARAMS_FILE).read_text())
        member = CLUSTERERS.get(meta["clusterer"])
        obj = member(int(meta["k"]), ClusterSpec(**meta["spec"]), int(meta["seed"]))
        obj.params = meta["params"]
        with np.load(folder / STATE_FILE, allow_pickle=False) as z:
            obj.set_state({k: z[k] for k in z.files})
        return obj


class CentroidClusterer(Clusterer):
    """k-means types: predict = nearest centroid; farther than every training point from its centroid
    (``outlier_distance``) is an outlier (-1)."""

    uses_k = True
    centroids: np.ndarray
    outlier_distance: float

    def _finish_fit(self, X: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
        self.centroids = np.asarray(centroids, np.float32)
        far = 0.0
        step = max(1, (32 << 20) // (8 * max(X.shape[1], 1)))  # rows per block: 32 MiB as float64, never all N
        for i in range(0, len(X), step):
            x, lab = np.asarray(X[i:i + step], np.float64), labels[i:i + step]
            far = max(far, float(np.linalg.norm(x - self.centroids[lab].astype(np.float64), axis=1).max()))
        self.outlier_distance = far
        return labels.astype(np.int64)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(X, np.float64)
        c = self.centroids.astype(np.float64)
        d2 = (x ** 2).sum(1)[:, None] - 2 * x @ c.T + (c ** 2).sum(1)[None, :]
        lab = d2.argmin(1)
        dist = np.sqrt(np.maximum(d2[np.arange(len(lab)), lab], 0))
        lab = np.where(dist > self.outlier_distance * (1 + 1e-6) + 1e-9, -1, lab)
        return lab.astype(np.int64), dist

    def state(self) -> dict[str, np.ndarray]:
        return {"centroids": self.centroids, "outlier_distance": np.array(self.outlier_distance)}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.centroids = arrays["centroids"]
        self.outlier_distance = float(arrays["outlier_distance"])


CLUSTERERS: Registry[type[Clusterer]] = Registry("clusterer", package=__name__)


def build_clusterer(name: str, k: int, spec: ClusterSpec, seed: int, use_gpu: bool = False) -> Clusterer:
    return CLUSTERERS.get(name)(k, spec, seed, use_gpu)


def clusterer_class(name: str) -> type[Clusterer]:
    return CLUSTERERS.get(name)
