"""What runs inside a Ray worker: one stage task with the driver's thread settings, and where it ran.

Each function takes the task record and the store's location, runs ``benchmark.pipeline.stages.execute`` (the same
code the serial executor runs) and returns the small ``TaskResult``, with its placement (node, process,
GPU ids, CUDA_VISIBLE_DEVICES) for run.json. The decode of a large photo folder first fans out over file
shards (each shard a Ray task writing the per-file cache), then assembles the image store from it."""
from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

from benchmark.data.decode import decode_paths
from benchmark.data.images import file_version, listing_fingerprint
from benchmark.executors.ray.data import RayDataOptions, extract_with_ray_data
from benchmark.pipeline.kinds import execute
from benchmark.pipeline.plan import CellTask, ExtractTask, ProbeTask, Task, TrainTask
from benchmark.pipeline.stages import TaskResult
from benchmark.runtime.threads import ThreadProfile
from benchmark.store.artifacts import ArtifactStore
from registry.datasets import limit_listing, resolve_dataset

# tests: the GPUs a CPU-only Ray instance declares (ray.init(num_gpus=2)) are requested and assigned as on a
# GPU cluster, and every task computes on the CPU
FAKE_GPU_ENV = "SSLBENCH_RAY_FAKE_GPU"


def gpu_facts(fake: bool) -> tuple[bool, bool, str | None]:
    """(CUDA usable, bf16 supported, device name) as a GPU worker sees them."""
    if fake:
        return True, False, "declared GPU (test: tasks compute on the CPU)"
    import torch

    cuda = torch.cuda.is_available()
    return cuda, bool(cuda and torch.cuda.is_bf16_supported()), torch.cuda.get_device_name(0) if cuda else None


def on_cpu(task: Task) -> Task:
    """The task with its device forced to the CPU (FAKE_GPU_ENV); its key is unchanged."""
    if isinstance(task, (TrainTask, ExtractTask)):  # the tasks with a runtime
        return replace(task, runtime=replace(task.runtime, device="cpu"))
    if isinstance(task, (ProbeTask, CellTask)):  # the tasks with a device
        return replace(task, device="cpu")
    return task


def placement(started: float) -> dict[str, Any]:
    """Where this worker runs: node, process, the GPUs Ray assigned and what CUDA sees; when the task
    started and ended (epoch seconds)."""
    import ray

    ctx = ray.get_runtime_context()
    return {"started": round(started, 3), "ended": round(time.time(), 3), "node_id": ctx.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "worker_id": ctx.get_worker_id()}


def run_task(task: Task, store_root: str, profile: ThreadProfile, fake_gpu: bool) -> TaskResult:
    """One stage task, as the serial executor runs it, with the driver's thread settings."""
    started = time.time()
    with profile.applied():
        result = execute(on_cpu(task) if fake_gpu else task, store_root, progress=False)
    result.placement = placement(started)
    return result


def run_task_decode(task: Task, store_root: str, profile: ThreadProfile, shard_files: int,
                    fake_gpu: bool) -> TaskResult:
    """A decode task; a photo folder with more than 2 x ``shard_files`` new files is decoded by Ray tasks
    over shards of ``shard_files`` files first (the assembly then finds every file in the per-file cache)."""
    started = time.time()
    with profile.applied():
        shards = decode_shards(task, store_root, profile, shard_files)
        result = execute(on_cpu(task) if fake_gpu else task, store_root, progress=False)
    result.placement = placement(started)
    if shards:
        result.placement["decode_shards"] = shards
    return result


def decode_shards(task: Any, store_root: str, profile: ThreadProfile, shard_files: int) -> list[dict[str, Any]]:
    """Decode the new files of a photo folder as Ray tasks of ``shard_files`` files each (PIL decoder);
    returns one record per shard (files, node, process). Nothing to do: []."""
    import ray

    store = ArtifactStore(store_root)
    if task.decoder != "pil" or store.has("images", task.key):
        return []
    listing = limit_listing(resolve_dataset(task.dataset, task.labels_csv, task.split).list(), task.limit)
    if listing.files is None:
        return []
    _fp, shas = listing_fingerprint(listing, store)
    version = file_version(task.decoder)
    hashed = {i: sha for i, sha in enumerate(shas or []) if sha}  # files without a hash are skipped, not decoded
    todo = [i for i, sha in hashed.items() if store.get_file(sha, task.image_size, version) is None]
    if len(todo) <= 2 * shard_files:
        return []
    shard = ray.remote(decode_shard).options(num_cpus=1, max_retries=3)
    refs = [shard.remote([str(listing.files[i]) for i in todo[s:s + shard_files]],
                         [hashed[i] for i in todo[s:s + shard_files]], task.image_size, store_root, profile)
            for s in range(0, len(todo), shard_files)]
    return list(ray.get(refs))


def decode_shard(paths: list[str], shas: list[str], size: int, store_root: str,
                 profile: ThreadProfile) -> dict[str, Any]:
    """Decode one shard of files (in this process) into the per-file cache."""
    from pathlib import Path

    started = time.time()
    store = ArtifactStore(store_root)
    with profile.applied():
        decoded = decode_paths([Path(p) for p in paths], size, workers=1)
    for sha, res in zip(shas, decoded, strict=False):
        store.put_file(sha, size, file_version("pil"), res)
    where = placement(started)
    return {"files": len(paths), "node_id": where["node_id"], "pid": where["pid"]}


def run_task_ray_data(task: Task, store_root: str, profile: ThreadProfile, data: RayDataOptions,
                      fake_gpu: bool) -> TaskResult:
    """An extract task through Ray Data (``benchmark.executors.ray.data``), with the same result record."""
    run = on_cpu(task) if fake_gpu else task
    if not isinstance(run, ExtractTask):
        raise TypeError(f"Ray Data runs extract tasks, not a {task.kind} task")
    started = time.time()
    with profile.applied():
        result = extract_with_ray_data(run, store_root, profile, data)
    result.placement = placement(started)
    return result
