"""What each Ray task asks of the cluster, and the thread settings every task runs with: pure functions of
the task, the driver's thread settings and the cluster's shape, testable without Ray.

Resources follow the threads a task uses (CONVENTIONS 2), so Ray's scheduler, not its OOM killer, decides:
train and extract tasks take the run's torch threads and, on CUDA, ``--gpus-per-task`` GPUs; probe, reduce
and cell tasks take their stage's BLAS limit (one thread for small data sets) and, when the run's device
is CUDA (the torch probe solver, FAISS and the silhouette run there), a tenth of a GPU. A task never asks
for more CPUs than the largest node has (it keeps its threads, so results stay equal). Memory is an
estimate from the images and the feature size, capped at half the largest node's memory."""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from benchmark.pipeline.plan import Task
from benchmark.runtime.threads import limit_threads, stage_limit

SHARED_GPU = 0.1  # the GPU share of a probe or cell task whose device is CUDA
MIB = 1 << 20
HEAVY_CLUSTERERS = {"hdbscan": 2048, "agglomerative": 2048, "dbscan": 1024}  # extra MiB of their fits
# --extract-with auto: Ray Data above this many images. Measured (benchmarks/ray_data_threshold.py): Ray Data
# costs 3.9 s more once and 0.08 ms more per image than a plain task; spread over 2 devices it pays from ~37,000
# images on this CPU and, on an H100 at 6,170 images/s (fixed cost only), from ~48,000
AUTO_MIN_IMAGES = 50_000


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
        import numpy  # noqa: F401  the thread pools must be loaded to be limited
        import scipy.linalg  # noqa: F401
        import sklearn.cluster  # noqa: F401
        import torch

        try:
            import faiss  # noqa: F401
        except ImportError:
            pass
        torch.set_num_threads(self.torch_threads)
        with limit_threads(self.blas_threads):
            yield


def cluster_shape(resources: dict[str, float], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals and per-node resources of a Ray cluster (from ``ray.cluster_resources()`` and ``ray.nodes()``)."""
    alive = [n for n in nodes if n.get("Alive")]
    rows = [{"node_id": n.get("NodeID"), "ip": n.get("NodeManagerAddress"),
             "cpus": float(n.get("Resources", {}).get("CPU", 0)), "gpus": float(n.get("Resources", {}).get("GPU", 0)),
             "memory_gb": round(float(n.get("Resources", {}).get("memory", 0)) / 2**30, 2)} for n in alive]
    return {"cpus": float(resources.get("CPU", 0)), "gpus": float(resources.get("GPU", 0)),
            "max_node_cpus": max((r["cpus"] for r in rows), default=0.0),
            "max_node_memory": max((float(n.get("Resources", {}).get("memory", 0)) for n in alive), default=0.0),
            "nodes": rows}


def task_threads(task: Task, profile: ThreadProfile, n_images: int) -> int:
    """The threads a task computes with (the same in every executor)."""
    if task.kind in ("train", "extract"):
        return int(task.runtime.threads)  # type: ignore[union-attr]
    if task.kind == "decode":
        return profile.cpus  # one decode process per core
    if task.kind in ("probe", "cell"):
        return int(task.blas_threads or profile.blas_threads)  # type: ignore[union-attr]
    return int(stage_limit("cell", n_images) or profile.blas_threads)  # reduce


def memory_estimate(task: Task, n_images: int, feature_dim: int) -> int:
    """Bytes a task may hold at its peak (an estimate: images, features and their copies, model state)."""
    size = int(getattr(task, "image_size", 0) or 0)
    pixels = n_images * 3 * size * size
    feats = n_images * feature_dim * 4
    if task.kind == "decode":
        return 2 * pixels + 512 * MIB
    if task.kind in ("train", "extract"):
        return pixels + 1024 * MIB
    if task.kind == "probe":
        return 3 * feats + 256 * MIB
    extra = HEAVY_CLUSTERERS.get(getattr(task, "clusterer", ""), 0) * MIB
    return 6 * feats + 512 * MIB + extra


def task_resources(task: Task, profile: ThreadProfile, uses_gpu: bool, gpus_per_task: float, shape: dict[str, Any],
                   feature_dim: int = 0, n_images: int = 0) -> dict[str, Any]:
    """num_cpus / num_gpus / memory for ``task`` (see the module docstring), and the threads it uses."""
    threads = task_threads(task, profile, n_images)
    cap = shape.get("max_node_cpus") or threads
    gpus = 0.0
    if uses_gpu and (task.kind in ("train", "extract") or getattr(task, "decoder", "pil") == "nvjpeg"):
        gpus = float(gpus_per_task)
    elif uses_gpu and getattr(task, "device", "cpu") == "cuda":
        gpus = SHARED_GPU
    memory = memory_estimate(task, n_images, feature_dim)
    if shape.get("max_node_memory"):
        memory = min(memory, int(shape["max_node_memory"] // 2))
    return {"num_cpus": float(min(threads, cap)), "num_gpus": gpus, "memory": int(memory), "threads": threads,
            "n_images": n_images}


def choose_extraction(spec: Any, shape: dict[str, Any], n_images: int) -> str:
    """"ray-data" or "task" for one feature set: as asked, or (auto) Ray Data for large image sets on a
    cluster with more than one GPU or node to spread them over."""
    if spec.extract_with != "auto":
        return str(spec.extract_with)
    spread = shape.get("gpus", 0) >= 2 or len(shape.get("nodes", [])) >= 2
    return "ray-data" if spread and n_images >= AUTO_MIN_IMAGES else "task"
