"""Ward agglomerative clustering (scikit-learn), fit on a seeded sample, the rest by nearest centroid.

Ward needs all pairwise distances (scipy's condensed matrix, n(n-1)/2 float64, plus the merge work): on this
2-core machine a 20,000 x 50 fit took 27.1 s and 3.07 GB of extra peak RSS (3.3 GB for the whole process;
``python -m registry.clusterers.agglomerative`` measures it with ``resource.getrusage``). Both grow as n^2
(50,000 points would need ~19 GB), so it fits on at most FIT_MAX points; the others go to the nearest
cluster centroid (the means of the sample's clusters), as ``predict`` does."""
from __future__ import annotations

import numpy as np

from benchmark.interfaces import ClusterSpec
from registry.clusterers import CLUSTERERS, CentroidClusterer

FIT_MAX = 20_000
ASSIGN_BYTES = 64 << 20  # working memory per chunk when assigning the points outside the sample


@CLUSTERERS.register("agglomerative")
class WardAgglomerative(CentroidClusterer):
    """scikit-learn AgglomerativeClustering, Ward linkage, k clusters; on the PCA copy (density = True:
    at most 50 dimensions); never labels noise. predict = nearest centroid (CentroidClusterer)."""

    name = "agglomerative"
    default_reduce = "pca:50"
    fit_memory_mib = 2048  # the linkage of up to FIT_MAX points
    density = True

    def fit(self, X: np.ndarray) -> np.ndarray:
        """X (N, D) -> labels (N,) int64 in [0, k)."""
        from sklearn.cluster import AgglomerativeClustering

        x = np.asarray(X, np.float32)
        n = x.shape[0]
        fit_idx = np.arange(n)
        if n > FIT_MAX:
            fit_idx = np.sort(np.random.default_rng(self.seed).permutation(n)[:FIT_MAX])
        k = min(self.k, fit_idx.size)
        xs = x[fit_idx]
        sample = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(xs).astype(np.int64)
        centroids = _cluster_means(xs, sample, k)
        self.params = {"k": k, "linkage": "ward", "fit_on": int(fit_idx.size)}
        labels = np.empty(n, np.int64)
        labels[fit_idx] = sample
        if fit_idx.size < n:
            rest = np.setdiff1d(np.arange(n), fit_idx)
            labels[rest] = _nearest(x[rest], centroids)
        return self._finish_fit(x, centroids, labels)


def _cluster_means(xs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean (k, D) float32 of each cluster's rows of xs (n, D), rows kept in their original order."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    grouped = xs[order]
    return np.stack([grouped[bounds[c]:bounds[c + 1]].mean(0) for c in range(k)])


def _nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index (M,) of the nearest centroid (k, D) to each row of x (M, D), exact squared distances in float64,
    in chunks of at most ASSIGN_BYTES of differences."""
    c = centroids.astype(np.float64)
    step = max(1, ASSIGN_BYTES // max(1, 8 * c.shape[0] * c.shape[1]))
    out = np.empty(len(x), np.int64)
    for s in range(0, len(x), step):
        d2 = ((x[s:s + step, None, :].astype(np.float64) - c[None]) ** 2).sum(-1)
        out[s:s + step] = d2.argmin(1)
    return out


def _measure(n: int = FIT_MAX, d: int = 50) -> tuple[float, float]:
    """(seconds, peak MB above the start) of one Ward fit on n x d Gaussian blobs."""
    import resource
    import time

    from sklearn.datasets import make_blobs

    X, _ = make_blobs(n_samples=n, centers=10, n_features=d, random_state=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    WardAgglomerative(10, ClusterSpec(), 0).fit(X.astype(np.float32))
    secs = time.perf_counter() - t0
    return secs, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


if __name__ == "__main__":
    s, mb = _measure()
    print(f"Ward on {FIT_MAX} x 50: {s:.1f} s, peak +{mb:.0f} MB")
