"""How far a sampled silhouette is from the exact one, over data sizes, sample sizes and seeds: the
measurement behind ``ClusterSpec.silhouette_max_n`` (exact up to it, a seeded sample of that many above).
``python benchmarks/silhouette_sampling.py --out benchmarks/silhouette-sampling.json``.

Data: Fashion-MNIST (the Debian package's 70,000 images, ``make fashion-mnist``) as the grid scores it, raw
pixels standardized (784-D), at N = 10,000 / 30,000 / 70,000 (the first N of train + test); labelings: the
ten classes and a k-means (k = 10) fit. For each, the exact silhouette (``silhouette_torch``, O(N^2 D)) and
the sampled one at each sample size for 5 seeds: the error |sampled - exact| (mean and max over seeds) and
the seconds of each. Writes JSON and prints a table."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fashion(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` of Fashion-MNIST's train + test images as standardized raw pixels, and their classes."""
    from registry.datasets.fashion_mnist import _find, data_root, read_idx

    root = data_root()
    x = np.concatenate([read_idx(_find(root, f"{s}-images-idx3-ubyte")) for s in ("train", "t10k")])[:n]
    y = np.concatenate([read_idx(_find(root, f"{s}-labels-idx1-ubyte")) for s in ("train", "t10k")])[:n]
    f = x.reshape(len(x), -1).astype(np.float64) / 255.0
    std = f.std(0)
    return ((f - f.mean(0)) / np.where(std > 0, std, 1)).astype(np.float32), y.astype(np.int64)


def main() -> None:
    from sklearn.cluster import KMeans

    from benchmark.scoring.silhouette import silhouette_torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,30000,70000")
    ap.add_argument("--samples", default="2000,5000,10000,20000")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    samples = [int(s) for s in a.samples.split(",")]
    x_all, y_all = fashion(max(sizes))
    rows = []
    for n in sizes:
        x, y = x_all[:n], y_all[:n]
        km = KMeans(10, n_init=1, random_state=0).fit_predict(x)
        for name, lab in (("classes", y), ("kmeans", km)):
            t0 = time.perf_counter()
            exact = silhouette_torch(x, lab)
            exact_s = time.perf_counter() - t0
            for m in (s for s in samples if s < n):
                errs, secs = [], []
                for seed in range(a.seeds):
                    t0 = time.perf_counter()
                    errs.append(abs(silhouette_torch(x, lab, sample_size=m, seed=seed) - exact))
                    secs.append(time.perf_counter() - t0)
                rows.append({"n": n, "labels": name, "sample": m, "exact": round(exact, 6),
                             "err_mean": float(np.mean(errs)), "err_max": float(np.max(errs)),
                             "sample_s": float(np.mean(secs)), "exact_s": exact_s})
                print(json.dumps(rows[-1]), flush=True)
    if a.out:
        a.out.write_text(json.dumps({"dataset": "fashion_mnist raw pixels, standardized (784-D)", "rows": rows},
                                    indent=1))
    from tabulate import tabulate

    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".4g"))


if __name__ == "__main__":
    main()
