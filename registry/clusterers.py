"""Clusterers, all sklearn-shaped: ``fit_predict(X) -> labels`` with -1 = noise.

k-means types get k (the number of classes where labels exist, else ``--k``); density clusterers
(``density = True``) are fed a PCA copy of at most ``ClusterSpec.density_dims`` dimensions."""
from __future__ import annotations

from typing import Callable

import numpy as np

from benchmark.specs import ClusterSpec
from registry.base import Registry


class Clusterer:
    density = False  # True: works on the PCA copy; may return -1 for noise
    uses_k = False

    def __init__(self, k: int, spec: ClusterSpec, seed: int, use_gpu: bool = False) -> None:
        self.k = k
        self.spec = spec
        self.seed = seed
        self.use_gpu = use_gpu
        self.params: dict[str, object] = {}  # the parameters actually used (recorded in results)

    def fit_predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError


CLUSTERERS: Registry[Callable[..., Clusterer]] = Registry("clusterer")


@CLUSTERERS.register("kmeans")
class SkKMeans(Clusterer):
    """scikit-learn KMeans, k-means++ init, best of 4 restarts."""

    uses_k = True

    def fit_predict(self, X: np.ndarray) -> np.ndarray:
        from sklearn.cluster import KMeans

        self.params = {"k": self.k, "n_init": 4}
        self.model = KMeans(n_clusters=self.k, n_init=4, random_state=self.seed)
        return self.model.fit_predict(X).astype(np.int64)


# Measured on 2 CPU cores at N=100,000, D=512, 20 iterations (python -m benchmark scale --only kmeans):
# on all points FAISS ran at 0.50x / 0.79x / 0.96x scikit-learn's speed for k = 10 / 100 / 1000; with FAISS's
# own sampling (256 points per centroid) at 8.2x / 2.9x / 0.98x, its inertia 9.3% / 0.4% / 0.0% worse.
# So: sample from k >= 100 (quality kept), train on every point below (sampling costs too much quality).
SAMPLE_FROM_K = 100
POINTS_PER_CENTROID = 256


@CLUSTERERS.register("faiss_kmeans")
class FaissKMeans(Clusterer):
    """FAISS k-means (on the GPU when faiss sees one), 25 iterations, best of 3 restarts; trains on at most
    256 points per centroid when k >= 100 (FAISS's default), on every point below."""

    uses_k = True

    def fit_predict(self, X: np.ndarray) -> np.ndarray:
        import faiss

        x = np.ascontiguousarray(X, dtype=np.float32)
        gpu = bool(self.use_gpu and faiss.get_num_gpus() > 0)
        per_centroid = POINTS_PER_CENTROID if self.k >= SAMPLE_FROM_K else max(x.shape[0], 1)
        km = faiss.Kmeans(x.shape[1], self.k, niter=25, nredo=3, seed=self.seed + 1, gpu=gpu,
                          verbose=False, min_points_per_centroid=1, max_points_per_centroid=per_centroid)
        km.train(x)
        self.params = {"k": self.k, "niter": 25, "nredo": 3, "gpu": gpu,
                       "trained_on": min(x.shape[0], per_centroid * self.k)}
        self.centroids = km.centroids
        _, idx = km.index.search(x, 1)
        return idx[:, 0].astype(np.int64)


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
    """scikit-learn DBSCAN; eps from the k-distance knee (k = min_samples) unless ``--eps`` is given."""

    density = True

    def fit_predict(self, X: np.ndarray) -> np.ndarray:
        from sklearn.cluster import DBSCAN

        eps = self.spec.eps if self.spec.eps is not None else knee_eps(X, self.spec.min_samples)
        self.params = {"eps": round(eps, 6), "min_samples": self.spec.min_samples,
                       "eps_from": "given" if self.spec.eps is not None else "k-distance knee"}
        return DBSCAN(eps=eps, min_samples=self.spec.min_samples).fit_predict(X).astype(np.int64)


FIT_MAX = 50_000  # HDBSCAN fits on at most this many points; the rest get approximate_predict


@CLUSTERERS.register("hdbscan")
class HDBSCANClusterer(Clusterer):
    """HDBSCAN from the ``hdbscan`` package; min_cluster_size = max(5, n_fit / (4k)). Above FIT_MAX points
    it fits on a seeded sample of FIT_MAX and assigns the others with hdbscan.approximate_predict (the fit
    grows faster than linearly: 100,000 x 50 dims took 264 s on 2 cores)."""

    density = True

    def fit_predict(self, X: np.ndarray) -> np.ndarray:
        import hdbscan

        x = X.astype(np.float64)
        n = x.shape[0]
        fit_idx = np.arange(n)
        if n > FIT_MAX:
            fit_idx = np.sort(np.random.default_rng(self.seed).permutation(n)[:FIT_MAX])
        mcs = max(5, fit_idx.size // (4 * max(self.k, 1)))
        self.params = {"min_cluster_size": mcs, "min_samples": self.spec.min_samples, "fit_on": int(fit_idx.size)}
        self.model = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=self.spec.min_samples,
                                     prediction_data=True)
        labels = np.empty(n, np.int64)
        labels[fit_idx] = self.model.fit_predict(x[fit_idx])
        if fit_idx.size < n:
            rest = np.setdiff1d(np.arange(n), fit_idx)
            labels[rest] = hdbscan.approximate_predict(self.model, x[rest])[0]
        return labels


def build_clusterer(name: str, k: int, spec: ClusterSpec, seed: int, use_gpu: bool = False) -> Clusterer:
    return CLUSTERERS.get(name)(k, spec, seed, use_gpu)
