"""Scale measurements behind the defaults: torch vs scikit-learn silhouette, FAISS vs scikit-learn k-means,
HDBSCAN through the PCA reduction. Ratios are measured in one process on the same data."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from benchmark.config.specs import ClusterSpec
from benchmark.data.decode import decode_file, decode_many
from benchmark.scoring.silhouette import silhouette_torch
from registry.clusterers import build_clusterer


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
        def fk(max_points: int = n, k: int = k) -> float:
            km = faiss.Kmeans(d, k, niter=niter, nredo=1, seed=seed + 1, verbose=False,
                              max_points_per_centroid=max_points, min_points_per_centroid=1)
            km.train(X)
            return float(km.index.search(X, 1)[0].sum())

        def sk(k: int = k) -> float:
            return float(KMeans(k, n_init=1, max_iter=niter, tol=0.0, random_state=seed, init="random").fit(X).inertia_)

        fi, tf = _timed(fk)
        fs, tfs = _timed(lambda: fk(256))  # FAISS's default: train on at most 256 points per centroid
        si, ts = _timed(sk)
        rows.append({"what": f"k-means N={n} D={d} k={k} ({niter} it)", "faiss_s": tf, "sklearn_s": ts,
                     "speedup": ts / tf, "inertia_ratio": fi / si, "faiss_sampled_s": tfs,
                     "sampled_speedup": ts / tfs, "sampled_inertia_ratio": fs / si})
    return rows


def hdbscan_at_scale(n: int = 100_000, d: int = 512, dims: int = 50, seed: int = 0) -> dict[str, Any]:
    """The harness's density path: standardize, PCA to ``dims``, HDBSCAN."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    X, _ = blobs(n, d, 10, seed)
    Z, t_pca = _timed(lambda: PCA(dims, random_state=seed).fit_transform(StandardScaler().fit_transform(X)))
    labels, t_fit = _timed(lambda: build_clusterer("hdbscan", 10, ClusterSpec(), seed).fit_predict(Z))
    return {"what": f"HDBSCAN N={n} D={d} via PCA-{dims}", "pca_s": t_pca, "hdbscan_s": t_fit,
            "total_s": t_pca + t_fit, "clusters": int(labels.max() + 1), "noise": float((labels < 0).mean())}


def decode_speed(sizes: tuple[tuple[int, int], ...] = ((1633, 1080), (4032, 3024)), n: int = 12,
                 target: int = 64, workdir: str | None = None) -> list[dict[str, Any]]:
    """images/s of the harness's decode (JPEG draft + resize; then all cores) vs. a plain full decode +
    resize, on photo-like JPEGs (scikit-learn's sample photo scaled up) of each size."""
    import os
    import tempfile
    from pathlib import Path

    from PIL import Image, ImageOps
    from sklearn.datasets import load_sample_images

    base = Image.fromarray(load_sample_images().images[0])
    rows = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for w, h in sizes:
            paths = []
            for i in range(n):
                p = Path(tmp) / f"{w}x{h}_{i}.jpg"
                base.rotate(i * 7, expand=False).resize((w, h), Image.Resampling.BICUBIC).save(p, quality=90)
                paths.append(p)

            def plain(paths: list[Path] = paths) -> None:
                for p in paths:
                    with Image.open(p) as im:
                        ImageOps.exif_transpose(im.convert("RGB")).resize((target, target), Image.Resampling.BILINEAR)

            def ours_serial(paths: list[Path] = paths) -> None:
                for p in paths:
                    decode_file(p, target)

            _, t_plain = _timed(plain)
            _, t_ours = _timed(ours_serial)

            def parallel(paths: list[Path] = paths) -> None:
                decode_many(paths * 25, target, Path(tmp), workers=os.cpu_count(), progress=False)

            _, t_par = _timed(parallel)
            rows.append({"what": f"decode {w}x{h} JPEG -> {target}px", "plain_img_s": n / t_plain,
                         "draft_img_s": n / t_ours, "draft_speedup": t_plain / t_ours,
                         "all_cores_img_s": 25 * n / t_par, "total_speedup": (25 * n / t_par) / (n / t_plain)})
    return rows
