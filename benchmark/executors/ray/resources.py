"""What each Ray task asks of the cluster, and the thread settings every task runs with: pure functions of
the task, the driver's thread settings and the cluster's shape, testable without Ray.

Resources follow the threads a task uses (CONVENTIONS 2), so Ray's scheduler, not its OOM killer, decides:
train and extract tasks take the run's torch threads and, on CUDA, ``--gpus-per-task`` GPUs; probe, reduce
and cell tasks take their stage's BLAS limit (one thread for small data sets) and, when the run's device
is CUDA (the torch probe solver, FAISS and the silhouette run there), a tenth of a GPU. A task never asks
for more CPUs than the largest node has (it keeps its threads, so results stay equal). Memory is an
estimate from the images and the feature size, capped at half the largest node's memory."""
from __future__ import annotations

from typing import Any

from benchmark.pipeline.kinds import Sizes, stage_kind
from benchmark.pipeline.plan import Task
from benchmark.runtime.threads import ThreadProfile

SHARED_GPU = 0.1  # the GPU share of a probe or cell task whose device is CUDA
# --extract-with auto: Ray Data above this many images. Measured (benchmarks/ray_data_threshold.py): Ray Data
# costs 3.9 s more once and 0.08 ms more per image than a plain task; spread over 2 devices it pays from ~37,000
# images on this CPU and, on an H100 at 6,170 images/s (fixed cost only), from ~48,000
AUTO_MIN_IMAGES = 50_000


def cluster_shape(resources: dict[str, float], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals and per-node resources of a Ray cluster (from ``ray.cluster_resources()`` and ``ray.nodes()``)."""
    alive = [n for n in nodes if n.get("Alive")]
    rows: list[dict[str, Any]]
    rows = [{"node_id": n.get("NodeID"), "ip": n.get("NodeManagerAddress"),
             "cpus": float(n.get("Resources", {}).get("CPU", 0)), "gpus": float(n.get("Resources", {}).get("GPU", 0)),
             "memory_gb": round(float(n.get("Resources", {}).get("memory", 0)) / 2**30, 2)} for n in alive]
    return {"cpus": float(resources.get("CPU", 0)), "gpus": float(resources.get("GPU", 0)),
            "max_node_cpus": max((r["cpus"] for r in rows), default=0.0),
            "max_node_memory": max((float(n.get("Resources", {}).get("memory", 0)) for n in alive), default=0.0),
            "nodes": rows}


def task_resources(task: Task, profile: ThreadProfile, uses_gpu: bool, gpus_per_task: float, shape: dict[str, Any],
                   feature_dim: int = 0, n_images: int = 0) -> dict[str, Any]:
    """num_cpus / num_gpus / memory for ``task`` (see the module docstring), and the threads it uses."""
    kind = stage_kind(task)
    threads = kind.threads(task, profile, n_images)
    cap = shape.get("max_node_cpus") or threads
    gpus = 0.0
    if uses_gpu and kind.gpu(task):
        gpus = float(gpus_per_task)
    elif uses_gpu and getattr(task, "device", "cpu") == "cuda":
        gpus = SHARED_GPU
    memory = kind.memory(task, Sizes(n_images, feature_dim))
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
