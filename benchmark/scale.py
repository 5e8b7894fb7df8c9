"""Scale measurements behind the defaults: torch vs scikit-learn silhouette, FAISS vs scikit-learn k-means,
HDBSCAN through the PCA reduction. Ratios are measured in one process on the same data."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def blobs(n: int, d: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters with overlapping spread: a realistic, not trivially separable feature cloud."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.0, (k, d)).astype(np.float32)
    y = rng.integers(0, k, n)
    return (centers[y] + rng.normal(0, 1.0, (n, d)).astype(np.float32)), y


def silhouette_vs_sklearn(n: int = 20000, d: int = 512, k: int = 10, device: str = "cpu") -> dict[str, Any]:
    from sklearn.metrics import silhouette_score

    from benchmark.silhouette import silhouette_torch

    X, y = blobs(n, d, k)
    ours, t_ours = _timed(lambda: silhouette_torch(X, y, device=device))
    ref, t_ref = _timed(lambda: float(silhouette_score(X, y)))
    return {"what": f"silhouette N={n} D={d}", "ours_s": t_ours, "sklearn_s": t_ref, "speedup": t_ref / t_ours,
            "abs_diff": abs(ours - ref)}


def kmeans_vs_sklearn(n: int = 100_000, d: int = 512, ks: tuple[int, ...] = (10, 100, 1000), niter: int = 20,
                      seed: int = 0) -> list[dict[str, Any]]:
    """Same data, same iteration count, one restart, every point used by both (no FAISS subsampling)."""
    import faiss
    from sklearn.cluster import KMeans

    X, _ = blobs(n, d, 10, seed)
    rows = []
    for k in ks:
        def fk() -> float:
            km = faiss.Kmeans(d, k, niter=niter, nredo=1, seed=seed + 1, verbose=False,
                              max_points_per_centroid=n, min_points_per_centroid=1)
            km.train(X)
            return float(km.index.search(X, 1)[0].sum())

        def sk() -> float:
            return float(KMeans(k, n_init=1, max_iter=niter, tol=0.0, random_state=seed, init="random").fit(X).inertia_)

        fi, tf = _timed(fk)
        si, ts = _timed(sk)
        rows.append({"what": f"k-means N={n} D={d} k={k} ({niter} it)", "faiss_s": tf, "sklearn_s": ts,
                     "speedup": ts / tf, "inertia_ratio": fi / si})
    return rows


def hdbscan_at_scale(n: int = 100_000, d: int = 512, dims: int = 50, seed: int = 0) -> dict[str, Any]:
    """The harness's density path: standardize, PCA to ``dims``, HDBSCAN."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from benchmark.specs import ClusterSpec
    from registry.clusterers import build_clusterer

    X, _ = blobs(n, d, 10, seed)
    Z, t_pca = _timed(lambda: PCA(dims, random_state=seed).fit_transform(StandardScaler().fit_transform(X)))
    labels, t_fit = _timed(lambda: build_clusterer("hdbscan", 10, ClusterSpec(), seed).fit_predict(Z))
    return {"what": f"HDBSCAN N={n} D={d} via PCA-{dims}", "pca_s": t_pca, "hdbscan_s": t_fit,
            "total_s": t_pca + t_fit, "clusters": int(labels.max() + 1), "noise": float((labels < 0).mean())}
