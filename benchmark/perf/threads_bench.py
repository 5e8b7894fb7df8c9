"""Why the probe stage runs with one BLAS thread: ``python -m benchmark.perf.threads_bench``."""
from __future__ import annotations

import time

import numpy as np
from sklearn.datasets import load_digits

from benchmark.config.specs import ProbeSpec
from benchmark.probe.protocol import linear_probe
from benchmark.runtime.threads import STAGE_BLAS_THREADS, stage_threads


def measure() -> None:
    """The probe on digits (4x upscaled, 3 channels) with the BLAS libraries' default threads and with 1."""
    d = load_digits()
    X = np.repeat(np.kron(d.images, np.ones((4, 4))).reshape(len(d.images), -1), 3, axis=1).astype(np.float32)
    for limit in (None, 1):
        STAGE_BLAS_THREADS["probe"] = limit
        t0 = time.perf_counter()
        with stage_threads("probe"):
            r = linear_probe(X, d.target, ProbeSpec(), 0)
        print(f"BLAS threads {limit or 'default'}: {time.perf_counter() - t0:.2f} s, "
              f"accuracies {np.round(r.accuracies, 4)}")


if __name__ == "__main__":
    measure()
