"""Thread settings per stage, the same in every executor (CONVENTIONS 2), recorded in run.json and part of
the keys of the stages they govern.

BLAS libraries oversubscribe threads on small problems: the linear probe (logistic regression on 1,797 x
3,072 raw-pixel features, 5 draws x 4 C values) took 27.2 s with OpenBLAS's default 2 threads and 2.3 s
with one on this 2-core VM, with identical accuracies (``python -m benchmark.perf.threads_bench`` measures it). So
the probe runs with one BLAS / OpenMP thread. Clustering and scoring one feature set (k-means, FAISS,
DBSCAN, HDBSCAN and the scores on 1,797 x 512 features, 6 feature sets) took 8.4-9.7 s with the default
and 6.1 s with one thread, so cells run with one too."""
from __future__ import annotations

import importlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

STAGE_BLAS_THREADS: dict[str, int | None] = {"probe": 1, "cell": 1}  # None / absent: the library default
SMALL_N = 20_000  # the limits apply below this many images; above, the problem is large enough for all cores


def stage_limit(stage: str, n: int = 0) -> int | None:
    """The thread limit of a stage for a data set of n images (part of that stage's keys): the small-problem
    limit below SMALL_N images, the library default above (k-means on 70,000 x 784 Fashion-MNIST pixels is
    a large problem: the limit of one thread would halve its speed on 2 cores)."""
    return STAGE_BLAS_THREADS.get(stage) if n < SMALL_N else None


@contextmanager
def stage_threads(stage: str, n: int = 0) -> Iterator[None]:
    """Limit BLAS and OpenMP pools to the stage's setting for the duration of the block."""
    with limit_threads(stage_limit(stage, n)):
        yield


@contextmanager
def limit_threads(limit: int | None) -> Iterator[None]:
    """Limit BLAS and OpenMP pools to ``limit`` threads for the block (None: leave them as they are)."""
    if limit is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=limit):
        yield


def describe() -> dict[str, Any]:
    """What run.json records: torch's intra-op threads, the BLAS/OpenMP libraries and the stage limits."""
    import torch
    from threadpoolctl import threadpool_info

    libs = [{"api": i.get("internal_api"), "version": i.get("version"), "threads": i.get("num_threads")}
            for i in threadpool_info()]
    return {"torch_intra_op": torch.get_num_threads(), "blas": libs, "stage_blas_threads": STAGE_BLAS_THREADS}


@dataclass(frozen=True)
class ThreadProfile:
    """The driver's thread settings, applied in every worker: torch intra-op threads, the BLAS/OpenMP
    default, and the cores the driver's machine has (decode pool size)."""

    torch_threads: int
    blas_threads: int
    cpus: int

    @classmethod
    def current(cls) -> "ThreadProfile":
        import torch
        from threadpoolctl import threadpool_info

        counts = [int(i.get("num_threads") or 0) for i in threadpool_info()]
        cpus = os.cpu_count() or 1
        return cls(torch.get_num_threads(), max(counts, default=0) or cpus, cpus)

    def env_vars(self) -> dict[str, str]:
        """The environment a worker starts with: Ray sets OMP_NUM_THREADS to a task's CPUs otherwise, which
        would change the library defaults that the serial executor sees."""
        return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(self.blas_threads))}

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Run a task in a worker with the driver's settings; the stage limits of the task apply inside."""
        # the thread pools must be loaded to be limited
        for name in ("numpy", "scipy.linalg", "sklearn.cluster"):
            importlib.import_module(name)
        import torch

        try:
            importlib.import_module("faiss")
        except ImportError:
            pass
        torch.set_num_threads(self.torch_threads)
        with limit_threads(self.blas_threads):
            yield
