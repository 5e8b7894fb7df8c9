"""scikit-learn DBSCAN with eps from the k-distance knee."""
from __future__ import annotations

import numpy as np

from registry.clusterers import CLUSTERERS, Clusterer


def knee_eps(X: np.ndarray, k: int) -> float:
    """DBSCAN eps from the sorted k-distance curve: the point farthest from the chord joining its ends."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, X.shape[0] - 1)
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    d = np.sort(dist[:, -1])
    n = d.shape[0]
    if n < 3 or d[-1] - d[0] <= 0:
        return float(max(d[-1], 1e-6))
    x = np.linspace(0.0, 1.0, n)
    y = (d - d[0]) / (d[-1] - d[0])
    knee = int(np.argmax(x - y))  # convex increasing curve: largest gap below the chord
    return float(max(d[knee], 1e-6))


@CLUSTERERS.register("dbscan")
class SkDBSCAN(Clusterer):
    """scikit-learn DBSCAN; eps from the k-distance knee (k = min_samples) unless ``--eps`` is given.
    predict: the label of the nearest core point when it is within eps, else -1 (DBSCAN's own rule for
    border points, up to ties between clusters)."""

    name = "dbscan"
    default_reduce = "umap:10"
    density = True

    def fit(self, X: np.ndarray) -> np.ndarray:
        from sklearn.cluster import DBSCAN

        eps = self.spec.eps if self.spec.eps is not None else knee_eps(X, self.spec.min_samples)
        self.params = {"eps": round(eps, 6), "min_samples": self.spec.min_samples,
                       "eps_from": "given" if self.spec.eps is not None else "k-distance knee"}
        model = DBSCAN(eps=eps, min_samples=self.spec.min_samples).fit(X)
        labels = model.labels_.astype(np.int64)
        core = np.zeros(len(labels), bool)
        core[model.core_sample_indices_] = True
        self.eps = float(eps)
        self.core_points = np.asarray(X, np.float32)[core]
        self.core_labels = labels[core]
        return labels

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.neighbors import NearestNeighbors

        if len(self.core_points) == 0:
            return np.full(len(X), -1, np.int64), np.full(len(X), np.inf)
        dist, idx = NearestNeighbors(n_neighbors=1).fit(self.core_points).kneighbors(np.asarray(X, np.float32))
        lab = np.where(dist[:, 0] <= self.eps, self.core_labels[idx[:, 0]], -1)
        return lab.astype(np.int64), dist[:, 0].astype(np.float64)

    def state(self) -> dict[str, np.ndarray]:
        return {"core_points": self.core_points, "core_labels": self.core_labels, "eps": np.array(self.eps)}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.core_points = arrays["core_points"]
        self.core_labels = arrays["core_labels"]
        self.eps = float(arrays["eps"])
