"""Feature extraction of a large image set with Ray Data: ``map_batches`` over the image store's row ids
with an actor pool (one actor per GPU on CUDA), an explicit batch size, and features written in shards to
the store by the actors; the shards are then assembled into the usual features artifact. Only ids and shard
paths travel between the actors and the task that drives the pipeline; nothing large goes through the
driver.

When (``--extract-with auto``): Ray Data pays a fixed start-up (its executor, the actor pool, one backbone
built per actor) for spreading one feature set over several GPUs or nodes; with a single device a plain
task is as fast. Measured on the 2-core VM (benchmarks/ray_data_threshold.py): 3.9 s more once and 0.08 ms
more per image; see docs/ray.md and ``benchmark.executors.ray.resources.AUTO_MIN_IMAGES``."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.pipeline.plan import ExtractTask
from benchmark.pipeline.stages import TaskResult, extraction_done, extraction_meta, extractor
from benchmark.runtime.threads import ThreadProfile
from benchmark.store.artifacts import ArtifactStore
from benchmark.store.files import load_npy, save_npy
from benchmark.train.loop import extract_features

SHARDS = "shards"  # <store>/shards/features/<key>/<first row>-<end row>.npy while a pipeline runs


class FeatureShards:
    """A Ray Data actor: builds the task's backbone once, then turns each batch of row ids into one shard
    of features in the store. Returns the shard's rows and path (small)."""

    def __init__(self, task: ExtractTask, store_root: str, profile: ThreadProfile) -> None:
        self.task, self.profile = task, profile
        self.store = ArtifactStore(store_root)
        with profile.applied():
            self.ex = extractor(task, self.store)
        self.dir = shard_dir(self.store, task.key)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:

        ids = np.asarray(batch["data"], dtype=np.int64)
        start, stop = int(ids.min()), int(ids.max()) + 1
        if stop - start != len(ids):
            raise RuntimeError(f"Ray Data gave a batch of {len(ids)} rows that are not contiguous")
        with self.profile.applied():
            feats, secs = extract_features(self.ex.backbone, self.ex.images.images[start:stop], self.ex.rt,
                                           batch_size=len(ids), progress=False, pretext=self.ex.pretext)
        path = self.dir / f"{start:09d}-{stop:09d}.npy"
        save_npy(path, feats)
        return {"start": np.array([start]), "stop": np.array([stop]), "path": np.array([str(path)]),
                "seconds": np.array([secs]), "pid": np.array([os.getpid()]),
                "weights": np.array([str(self.ex.backbone.weights)]),
                "trainable": np.array([bool(self.ex.backbone.trainable)])}


def shard_dir(store: ArtifactStore, key: str) -> Path:
    path = store.root / SHARDS / "features" / key
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class RayDataOptions:
    """How Ray Data extracts one feature set: rows per batch, actors in the pool, each actor's GPUs and CPUs."""

    batch_size: int
    pool: int
    actor_gpus: float
    actor_cpus: float


def extract_with_ray_data(task: ExtractTask, store_root: str, profile: ThreadProfile,
                          data: RayDataOptions) -> TaskResult:
    """The extract task through a Ray Data pipeline (``data``: batch_size, pool, actor_cpus, actor_gpus)."""
    import ray.data

    store = ArtifactStore(store_root)
    done = extraction_done(task, store)
    if done is not None:
        return done
    meta_images = store.get_meta("images", task.images_key) or {}
    n = len(meta_images.get("names", []))
    batch = int(data.batch_size)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True
    t0 = time.perf_counter()
    # the row ids as blocks of one batch each, put in the object store by this task: no read tasks, which
    # would need CPUs that the actor pool may hold (a deadlock seen with ray.data.range on 4 CPUs)
    ds = ray.data.from_numpy([np.arange(s, min(s + batch, n), dtype=np.int64) for s in range(0, n, batch)])
    # an autoscaling pool of 1..pool actors: the pipelines of feature sets extracted at the same time share the
    # cluster and none waits for a full pool of its own
    out = ds.map_batches(FeatureShards, fn_constructor_args=(task, store_root, profile), batch_size=batch,
                         concurrency=(1, int(data.pool)), num_cpus=float(data.actor_cpus),
                         num_gpus=float(data.actor_gpus) or None, batch_format="numpy", zero_copy_batch=True)
    shards = sorted(out.take_all(), key=lambda r: int(r["start"]))
    secs = time.perf_counter() - t0
    train_meta = (store.get_weights_meta(task.train_key) or {}) if task.train_key else {}
    first = load_npy(Path(str(shards[0]["path"])), mmap=True) if shards else None
    dim = int(first.shape[1]) if first is not None and first.ndim == 2 else 0
    with store.array_writer("features", task.key, (n, dim)) as dest:  # one shard in memory at a time
        feats = assemble(shards, n, dest)
        ex_meta = extraction_meta(task, feats, secs, str(shards[0]["weights"]), bool(shards[0]["trainable"]),
                                  train_meta)
    meta = {**ex_meta, "extract_with": "ray-data", "ray_data": {
        "batch_size": batch, "actor_pool": int(data.pool), "actor_cpus": data.actor_cpus,
        "actor_gpus": data.actor_gpus, "shards": [{"rows": [int(r["start"]), int(r["stop"])],
                                                      "pid": int(r["pid"]), "seconds": float(r["seconds"])}
                                                     for r in shards]}}
    store.put_array_meta("features", task.key, meta)
    for r in shards:
        Path(str(r["path"])).unlink(missing_ok=True)
    return TaskResult(task.key, task.kind, computed=True, info=meta, seconds={"extract": secs})


def assemble(shards: list[dict[str, Any]], n: int, out: np.ndarray | None = None) -> np.ndarray:
    """The (N, D) features from shards that cover rows 0..N-1 exactly once, written into ``out`` when given
    (a memory map: one shard in memory at a time)."""
    covered = sum(int(r["stop"]) - int(r["start"]) for r in shards)
    if covered != n or (shards and int(shards[0]["start"]) != 0):
        raise RuntimeError(f"the Ray Data shards cover {covered} of {n} rows")
    parts = []
    for r in shards:
        part = load_npy(Path(str(r["path"])), mmap=out is not None)
        if part is None or part.shape[0] != int(r["stop"]) - int(r["start"]):
            raise RuntimeError(f"feature shard {r['path']} is missing or damaged")
        if out is None:
            parts.append(part)
        else:
            out[int(r["start"]):int(r["stop"])] = part
    return out if out is not None else np.concatenate(parts, axis=0).astype(np.float32, copy=False)
