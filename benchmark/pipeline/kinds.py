"""The stage table: each kind of stage task described once, and ``execute``, which runs a task by its kind.

A row names the task type, the artifact it writes in the store, the counter of the run summary, its runner
(``benchmark.pipeline.stages``), the threads it computes with, whether it takes a GPU on CUDA, and its
memory model (bytes at its peak, a function of the task and of N, D and d: ``Sizes``; the plan's estimates
and the check before a run are in ``benchmark.pipeline.footprint``). The planner, the driver's counters,
the CLI's plan printer, the store's layout and the Ray resources all read this table; a new stage kind is
its task type, its runner and one row."""
from __future__ import annotations

import os
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from benchmark.data.images import CHUNK
from benchmark.interfaces import BadInput, Status
from benchmark.pipeline import stages
from benchmark.pipeline.plan import CellTask, DecodeTask, ExtractTask, ProbeTask, ReduceTask, Task, TrainTask
from benchmark.pipeline.stages import TaskResult
from benchmark.probe import knn
from benchmark.probe.torch_draws import TEST_CHUNK
from benchmark.runtime.memory import PeakMemory
from benchmark.runtime.threads import ThreadProfile, stage_limit
from benchmark.scoring import streamed
from benchmark.store.artifacts import ArtifactStore
from benchmark.train.loop import STAGE_BATCHES
from registry.clusterers import clusterer_class

MIB = 1 << 20
PROCESS_MIB = 640  # a task's process with its libraries imported (torch, scikit-learn, umap): measured 605 MiB
DECODE_WORKER_MIB = 192  # one decode process: its interpreter, PIL and one photo at a time
TORCH_MODEL_MIB = 1024  # a backbone, its optimizer state and one batch's activations (train / extract)
UMAP_BYTES_PER_POINT = 2048  # UMAP's neighbour graph, fuzzy set and embedding per point (15 neighbours)
UMAP_FIXED_MIB = 400  # UMAP's numba-compiled code and its working arrays (measured: 10,000 points, 1.5 GB stage)


@dataclass(frozen=True)
class Sizes:
    """What a memory model knows of the data: images, the feature dimension (0 before extraction or when
    unknown), the cluster space's dimension (0: the feature dimension) and the number of classes."""

    n_images: int
    feature_dim: int = 0
    space_dim: int = 0
    n_classes: int = 0

    @property
    def d(self) -> int:
        return self.space_dim or self.feature_dim


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


def _torch_threads(task: TrainTask | ExtractTask, profile: ThreadProfile, n: int) -> int:
    return int(task.runtime.threads)


def _blas_threads(task: ProbeTask | CellTask, profile: ThreadProfile, n: int) -> int:
    return int(task.blas_threads or profile.blas_threads)


# The memory model (docs/pipeline.md#memory): each stage's peak in bytes. Images and features are read
# memory-mapped (file pages, not counted: the kernel drops and rereads them), so only what a stage computes
# counts; the terms that grow with N are named.

def _decode_memory(task: DecodeTask, s: Sizes) -> int:
    """One process per core, each holding one photo, and one chunk of decoded images (2,048 of 3 x S x S, sent
    back and cached per file): constant in N (the store is filled from the per-file cache by memory map)."""
    workers = max(1, os.cpu_count() or 1)
    return (PROCESS_MIB + workers * DECODE_WORKER_MIB) * MIB + 2 * CHUNK * 3 * task.image_size ** 2


def _extract_memory(task: ExtractTask, s: Sizes) -> int:
    """The backbone and a batch, plus the features staged before they are written (16 batches x D)."""
    return (PROCESS_MIB + TORCH_MODEL_MIB) * MIB + STAGE_BATCHES * task.batch_size * max(s.feature_dim, 1) * 4


def _train_memory(task: TrainTask, s: Sizes) -> int:
    """The backbone, its optimizer and a batch of views: constant in N (batches are read from the memory map)."""
    views = 4 * task.train.batch_size * 3 * task.image_size ** 2 * 4  # a batch, its views and their gradients
    return (PROCESS_MIB + TORCH_MODEL_MIB) * MIB + views


def _probe_memory(task: ProbeTask, s: Sizes) -> int:
    """The labeled draws (float64, a few copies) and one block of test rows: O(k x classes x D); then (after
    the linear probe's arrays are freed) the kNN's blocks (``benchmark.probe.knn.memory_bytes``), constant in N."""
    d = max(s.feature_dim, 1)
    subset = task.probe.draws * task.probe.k_per_class * max(s.n_classes, 2)
    return PROCESS_MIB * MIB + max(4 * subset * d * 8 + 2 * TEST_CHUNK * d * 4, knn.memory_bytes(d))


def _rows_memory(n: int, d: int) -> int:
    """What a pass over (n, d) features holds: the whole array as float64 and three working copies when it is
    small (``scoring.streamed.small``), else a few row blocks."""
    return 4 * n * d * 8 if streamed.small(n, d) else 4 * streamed.BLOCK_BYTES


def _reduce_memory(task: ReduceTask, s: Sizes) -> int:
    """Blocks of the features, the PCA's covariance (D x D float64, a few copies) or randomized range
    (N x 60 float64), UMAP's graph (O(N)); the cluster space is written by memory map."""
    n, d = s.n_images, max(s.feature_dim, 1)
    need = PROCESS_MIB * MIB + _rows_memory(n, d)
    if task.method in ("pca", "umap"):
        need += 3 * d * d * 8 if d <= streamed.COV_MAX_DIM else 3 * n * (50 + streamed.OVERSAMPLES) * 8
    if task.method == "umap":
        need += UMAP_FIXED_MIB * MIB + n * (UMAP_BYTES_PER_POINT + 50 * 4)
    return need


def _cell_memory(task: CellTask, s: Sizes) -> int:
    """The clusterer's working copy of the cluster space (N x d float32, twice), the labels of its refits,
    the silhouette's rows (at most ``silhouette_max_n`` x D, three copies) and blocks of the common space,
    and what the clusterer declares beyond that (``fit_memory_mib``)."""
    n, D = s.n_images, max(s.feature_dim, 1)
    m = min(n, int(task.cluster.silhouette_max_n))
    own = 2 * n * max(s.d, 1) * 4
    labels = n * 8 * (int(task.cluster.stability_repeats) + 4)
    silhouette = 3 * m * D * 4 + m * 64 * 8
    return (PROCESS_MIB + clusterer_class(task.clusterer).fit_memory_mib) * MIB + own + labels + silhouette + \
        _rows_memory(n, D)


STAGE_KINDS: dict[str, StageKind] = {k.kind: k for k in (
    StageKind("decode", DecodeTask, "images", "decoded_images", "decode", stages.run_decode,
              threads=lambda t, p, n: p.cpus,  # one decode process per core
              memory=_decode_memory, gpu=lambda t: t.decoder == "nvjpeg"),
    StageKind("train", TrainTask, "weights", "trained", "trainings", stages.run_train, _torch_threads,
              memory=_train_memory, gpu=lambda t: True),
    StageKind("extract", ExtractTask, "features", "extracted", "extractions", stages.run_extract, _torch_threads,
              memory=_extract_memory, gpu=lambda t: True),
    StageKind("probe", ProbeTask, "probes", "probed", "probes", stages.run_probe, _blas_threads,
              memory=_probe_memory, gpu=lambda t: False),
    StageKind("reduce", ReduceTask, "reductions", "reduced", "reductions", stages.run_reduce,
              threads=lambda t, p, n: int(stage_limit("cell", n) or p.blas_threads),
              memory=_reduce_memory, gpu=lambda t: False),
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
