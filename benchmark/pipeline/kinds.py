"""The stage table: each kind of stage task described once, and ``execute``, which runs a task by its kind.

A row names the task type, the artifact it writes in the store, the counter of the run summary, its runner
(``benchmark.pipeline.stages``), the threads it computes with, whether it takes a GPU on CUDA, and its
memory model (bytes at its peak, a function of the task and the data set's size: the day-of-photos issue
owns these figures). The planner, the driver's counters, the CLI's plan printer, the store's layout and the
Ray resources all read this table; a new stage kind is its task type, its runner and one row."""
from __future__ import annotations

import os
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from benchmark.interfaces import BadInput, Status
from benchmark.pipeline import stages
from benchmark.pipeline.plan import CellTask, DecodeTask, ExtractTask, ProbeTask, ReduceTask, Task, TrainTask
from benchmark.pipeline.stages import TaskResult
from benchmark.runtime.memory import PeakMemory
from benchmark.runtime.threads import ThreadProfile, stage_limit
from benchmark.store.artifacts import ArtifactStore
from registry.clusterers import clusterer_class

MIB = 1 << 20


@dataclass(frozen=True)
class Sizes:
    """What a memory model knows of the data: images, the feature dimension (0 before extraction)."""

    n_images: int
    feature_dim: int = 0


@dataclass(frozen=True)
class StageKind:
    """One kind of stage task. threads(task, profile, n_images): the threads it computes with (the same in
    every executor); memory(task, sizes): bytes it may hold at its peak; gpu(task): whether it takes
    ``--gpus-per-task`` GPUs on CUDA (else a shared slice when its device is CUDA)."""

    kind: str
    task: type
    artifact: str
    counter: str
    label: str
    runner: Callable[[Any, ArtifactStore, bool], TaskResult]
    threads: Callable[[Any, ThreadProfile, int], int]
    memory: Callable[[Any, Sizes], int]
    gpu: Callable[[Any], bool]


def _pixels(task: Any, sizes: Sizes) -> int:
    size = int(getattr(task, "image_size", 0) or 0)
    return sizes.n_images * 3 * size * size


def _feats(sizes: Sizes) -> int:
    return sizes.n_images * sizes.feature_dim * 4


def _torch_threads(task: TrainTask | ExtractTask, profile: ThreadProfile, n: int) -> int:
    return int(task.runtime.threads)


def _blas_threads(task: ProbeTask | CellTask, profile: ThreadProfile, n: int) -> int:
    return int(task.blas_threads or profile.blas_threads)


def _cell_memory(task: CellTask, sizes: Sizes) -> int:
    return 6 * _feats(sizes) + 512 * MIB + clusterer_class(task.clusterer).fit_memory_mib * MIB


STAGE_KINDS: dict[str, StageKind] = {k.kind: k for k in (
    StageKind("decode", DecodeTask, "images", "decoded_images", "decode", stages.run_decode,
              threads=lambda t, p, n: p.cpus,  # one decode process per core
              memory=lambda t, s: 2 * _pixels(t, s) + 512 * MIB,
              gpu=lambda t: t.decoder == "nvjpeg"),
    StageKind("train", TrainTask, "weights", "trained", "trainings", stages.run_train, _torch_threads,
              memory=lambda t, s: _pixels(t, s) + 1024 * MIB, gpu=lambda t: True),
    StageKind("extract", ExtractTask, "features", "extracted", "extractions", stages.run_extract, _torch_threads,
              memory=lambda t, s: _pixels(t, s) + 1024 * MIB, gpu=lambda t: True),
    StageKind("probe", ProbeTask, "probes", "probed", "probes", stages.run_probe, _blas_threads,
              memory=lambda t, s: 3 * _feats(s) + 256 * MIB, gpu=lambda t: False),
    StageKind("reduce", ReduceTask, "reductions", "reduced", "reductions", stages.run_reduce,
              threads=lambda t, p, n: int(stage_limit("cell", n) or p.blas_threads),
              memory=lambda t, s: 6 * _feats(s) + 512 * MIB, gpu=lambda t: False),
    StageKind("cell", CellTask, "cells", "clustered", "clusterings", stages.run_cell, _blas_threads,
              memory=_cell_memory, gpu=lambda t: False),
)}


def stage_kind(task: Task) -> StageKind:
    return STAGE_KINDS[task.kind]


def execute(task: Task, store_root: Path | str, progress: bool = False) -> TaskResult:
    """Run one task against the store at ``store_root``; an exception becomes a failed result. The
    warnings the task raised travel back in ``warnings`` (the driver shows and logs them)."""
    store = ArtifactStore(store_root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            with PeakMemory() as memory:
                result = stage_kind(task).runner(task, store, progress)
            result.peak_anon_mib = memory.peak_mib
        except Exception as exc:  # noqa: BLE001  a failing task fails its dependents only
            result = TaskResult(task.key, task.kind, status=Status.FAILED.value,
                                error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
                                info={"traceback": traceback.format_exc(), "error_type": type(exc).__name__,
                                      "bad_input": isinstance(exc, BadInput), "errno": getattr(exc, "errno", None),
                                      "skipped": [list(x) for x in getattr(exc, "skipped", [])]})
    result.warnings = list(dict.fromkeys((w.category.__name__, str(w.message)) for w in caught))
    result.pid = os.getpid()
    return result
