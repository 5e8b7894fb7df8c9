"""Measure the probe's batched torch solver against the scikit-learn reference on the same splits, in one
process (``python -m benchmark.perf.probe_bench [--draws 5] [--json PATH]``): seconds of each (scikit-learn with
its default stopping rule, one BLAS thread and the library default; torch with the run's threads), their
ratio, and the largest per-draw accuracy difference to scikit-learn at its default tolerance and run to
convergence (tol 1e-10)."""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from benchmark.config.specs import ProbeSpec
from benchmark.probe.protocol import linear_probe


def feature_sets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Digits as the probe sees them: raw 64-D, a 512-D random ReLU embedding, and 3,072-D raw pixels
    (32 x 32 x 3, as raw_pixels gives at 32 px)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    big = np.kron(d.images, np.ones((4, 4))).reshape(len(d.images), -1)
    proj = np.random.default_rng(0).standard_normal((big.shape[1], 512)) / 32
    return {"digits 64-D": (d.data.astype(np.float32), d.target),
            "digits 512-D ReLU embedding": (np.maximum(big @ proj, 0).astype(np.float32), d.target),
            "digits 3072-D raw pixels": (np.repeat(big, 3, axis=1).astype(np.float32), d.target)}


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def measure(draws: int = 5, seed: int = 0) -> list[dict]:
    from threadpoolctl import threadpool_limits

    rows = []
    for name, (X, y) in feature_sets().items():
        spec = ProbeSpec(draws=draws)
        linear_probe(X, y, spec, seed)  # warm-up
        with threadpool_limits(limits=1):
            ref, t_sk1 = _timed(lambda X=X, y=y: linear_probe(X, y, ProbeSpec(draws=draws, solver="sklearn"), seed))
            ours, t_torch = _timed(lambda X=X, y=y, spec=spec: linear_probe(X, y, spec, seed))
            conv = linear_probe(X, y, spec, seed, reference_tol=1e-10)
        _, t_skd = _timed(lambda X=X, y=y: linear_probe(X, y, ProbeSpec(draws=draws, solver="sklearn"), seed))
        rows.append({"features": name, "draws": draws, "sklearn_1thread_s": t_sk1, "sklearn_default_threads_s": t_skd,
                     "torch_s": t_torch, "speedup_vs_1thread": t_sk1 / t_torch,
                     "speedup_vs_default_threads": t_skd / t_torch,
                     "max_draw_diff_vs_sklearn_default_tol":
                         float(np.abs(np.subtract(ours.accuracies, ref.accuracies)).max()),
                     "max_draw_diff_vs_sklearn_converged":
                         float(np.abs(np.subtract(ours.accuracies, conv.accuracies)).max()),
                     "chosen_c": {"torch": ours.chosen_c, "sklearn": ref.chosen_c, "sklearn_converged": conv.chosen_c}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    rows = measure(args.draws)
    print(f"{'features':30} {'sk 1 thr':>9} {'sk default':>10} {'torch':>7} {'x 1 thr':>7} {'x def':>6} "
          f"{'diff dflt':>9} {'diff conv':>9}")
    for r in rows:
        print(f"{r['features']:30} {r['sklearn_1thread_s']:9.3f} {r['sklearn_default_threads_s']:10.3f} "
              f"{r['torch_s']:7.3f} {r['speedup_vs_1thread']:7.1f} {r['speedup_vs_default_threads']:6.1f} "
              f"{r['max_draw_diff_vs_sklearn_default_tol']:9.4f} {r['max_draw_diff_vs_sklearn_converged']:9.4f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
