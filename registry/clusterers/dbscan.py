"""scikit-learn DBSCAN with eps from the k-distance knee."""
from __future__ import annotations

import numpy as np

from registry.clusterers import CLUSTERERS, Clusterer

FIT_MAX = 20_000  # DBSCAN fits on at most this many points (a seeded sample); the rest get predict's rule
PREDICT_CHUNK = 10_000  # points assigned per nearest-core-point query: bounded memory at any N


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
    fit_memory_mib = 1024  # the neighbourhoods of up to FIT_MAX points
    density = True
    version = 2  # 2: above FIT_MAX points, fit on a seeded sample and assign the rest

    def fit(self, X: np.ndarray) -> np.ndarray:
        """DBSCAN on all points up to FIT_MAX; above, on a seeded sample of FIT_MAX (eps from its knee),
        the other points getting the label of their nearest core point within eps (predict's rule), in
        chunks: DBSCAN's neighbourhood lists grow with N times the density, the sample keeps them bounded."""
        from sklearn.cluster import DBSCAN

        X = np.asarray(X, np.float32)
        n = X.shape[0]
        fit_idx = np.sort(np.random.default_rng(self.seed).choice(n, FIT_MAX, replace=False)) if n > FIT_MAX \
            else np.arange(n)
        Xf = X[fit_idx]
        eps = self.spec.eps if self.spec.eps is not None else knee_eps(Xf, self.spec.min_samples)
        self.params = {"eps": round(eps, 6), "min_samples": self.spec.min_samples,
                       "eps_from": "given" if self.spec.eps is not None else "k-distance knee",
                       "fit_on": int(fit_idx.size)}
        model = DBSCAN(eps=eps, min_samples=self.spec.min_samples).fit(Xf)
        fit_labels = model.labels_.astype(np.int64)
        core = np.zeros(len(fit_labels), bool)
        core[model.core_sample_indices_] = True
        self.eps = float(eps)
        self.core_points = Xf[core]
        self.core_labels = fit_labels[core]
        if fit_idx.size == n:
            return fit_labels
        labels = np.empty(n, np.int64)
        labels[fit_idx] = fit_labels
        rest = np.setdiff1d(np.arange(n), fit_idx)
        labels[rest] = self.predict(X[rest])[0]
        return labels

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.neighbors import NearestNeighbors

        if len(self.core_points) == 0:
            return np.full(len(X), -1, np.int64), np.full(len(X), np.inf)
        nn_ = NearestNeighbors(n_neighbors=1).fit(self.core_points)
        X = np.asarray(X, np.float32)
        dist = np.empty(len(X))
        idx = np.empty(len(X), np.int64)
        for s in range(0, len(X), PREDICT_CHUNK):
            d, i = nn_.kneighbors(X[s:s + PREDICT_CHUNK])
            dist[s:s + PREDICT_CHUNK], idx[s:s + PREDICT_CHUNK] = d[:, 0], i[:, 0]
        lab = np.where(dist <= self.eps, self.core_labels[idx], -1)
        return lab.astype(np.int64), dist.astype(np.float64)

    def state(self) -> dict[str, np.ndarray]:
        return {"core_points": self.core_points, "core_labels": self.core_labels, "eps": np.array(self.eps)}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.core_points = arrays["core_points"]
        self.core_labels = arrays["core_labels"]
        self.eps = float(arrays["eps"])
