"""The driver: plan the grid, hand the tasks to an executor, and write the run files (the only writer).

cells.csv and assignments.csv are rewritten atomically after every finished cell, so a run that dies
loses nothing already computed; ``--resume`` keeps finished rows whose keys the new plan still has."""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from benchmark.config import checks
from benchmark.config.specs import GridSpec
from benchmark.data.images import (
    align_labels,
    images_key,
    labels_key,
    labels_record,
    listing_fingerprint,
    warn_small_classes,
)
from benchmark.data.nvjpeg import select_decoder
from benchmark.driver.integrity import write_info
from benchmark.driver.probe_rows import knn_reference, probe_columns
from benchmark.driver.results import (
    environment,
    write_assignments,
    write_cells,
    write_skipped,
    write_summary,
)
from benchmark.driver.resume import adopt_previous, kept_rows, run_config
from benchmark.driver.runlog import RunLog
from benchmark.driver.summary import SORT_RULE
from benchmark.executors.base import DeviceFacts, Executor, ExecutorSpec, local_facts
from benchmark.executors.factory import make_executor
from benchmark.interfaces import BadInput, Status
from benchmark.pipeline import footprint
from benchmark.pipeline.kinds import STAGE_KINDS
from benchmark.pipeline.plan import CellSlot, DataInfo, Plan, RuntimeInfo, Task, plan, validate_names
from benchmark.pipeline.stages import TaskResult
from benchmark.runtime.device import Runtime, apply_determinism, cpu_model, select_runtime
from benchmark.runtime.threads import describe as describe_threads
from benchmark.scoring import columns
from benchmark.store.artifacts import ArtifactStore, RunFolder
from benchmark.store.files import MACHINE_ERRNOS, CorruptArtifact
from registry.datasets import dataset_version
from registry.pretexts import build_pretext
from registry.weights import downloads_allowed

STAGES = ("decode", "train", "extract", "probe", "reduce", "cluster", "score")


@dataclass
class RunStats:
    """What a run computed (vs. read from the store) and how long each stage took, in seconds."""

    computed: dict[str, int] = field(default_factory=lambda: {k.counter: 0 for k in STAGE_KINDS.values()})
    resumed_cells: int = 0
    stage_s: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in STAGES})
    gpu_util: dict[str, list[float]] = field(default_factory=dict)  # stage -> sampled GPU utilisation (%)
    peak_anon_mib: dict[str, float] = field(default_factory=dict)  # stage kind -> highest task peak (MiB)

    def add(self, result: TaskResult) -> None:
        if result.computed:
            name = STAGE_KINDS[result.kind].counter
            self.computed[name] += int(result.info.get("decoded_now", 0)) if result.kind == "decode" else 1
            for stage, secs in result.seconds.items():
                self.stage_s[stage] = self.stage_s.get(stage, 0.0) + secs
            if (peak := result.peak_anon_mib) is not None:
                self.peak_anon_mib[result.kind] = max(self.peak_anon_mib.get(result.kind, 0.0), peak)
            if result.info.get("gpu_util") is not None:
                self.gpu_util.setdefault(result.kind, []).append(float(result.info["gpu_util"]))

    def gpu_util_mean(self) -> dict[str, float | None]:
        """Mean sampled GPU utilisation (%) of the train and extract tasks computed (None on the CPU)."""
        return {k: (sum(self.gpu_util[k]) / len(self.gpu_util[k]) if self.gpu_util.get(k) else None)
                for k in ("train", "extract")}

    @property
    def trained(self) -> int:
        return self.computed["trained"]

    @property
    def extracted(self) -> int:
        return self.computed["extracted"]

    @property
    def clustered(self) -> int:
        return self.computed["clustered"]

    @property
    def decoded(self) -> int:
        return self.computed["decoded_images"]


@dataclass
class ImagesSummary:
    n: int
    n_labeled: int
    skipped: list[tuple[str, str]]


@dataclass
class RunResult:
    out: Path
    rows: list[dict[str, Any]]
    stats: RunStats
    images: ImagesSummary
    wall_s: float
    plan: Plan | None = None


def make_plan(spec: GridSpec, store: ArtifactStore, facts: DeviceFacts | None = None
              ) -> tuple[Plan, dict[str, Any], Runtime]:
    """Validate, list the data (hashing file contents, memoized), then plan. Nothing is decoded or trained.
    Every check on what the user passed happens here, before any compute (BadInput, exit 2). ``facts``: what
    the machines that run the tasks have (the executor's; default this process's)."""

    validate_names(spec)  # before the data is listed or hashed
    facts = facts or local_facts()
    rt = select_runtime(spec.device, facts.cuda, facts.bf16, spec.deterministic, spec.compile)
    apply_determinism(rt)  # for the tasks a serial executor runs in this process
    inits = checks.resolve_inits(spec, downloads_allowed())
    listing = checks.limited_listing(spec, spec.split, "")
    n = len(listing.names)
    if isinstance(spec.cluster.k, int) and spec.cluster.k > n:
        raise BadInput(f"bad --k {spec.cluster.k}: at most the number of images ({n} in {spec.dataset})")
    checks.check_reductions(spec, n)
    fingerprint, _ = listing_fingerprint(listing, store)
    rec = labels_record(listing)
    decoder = select_decoder(rt.device, listing.files is not None)
    train_key = None
    if spec.train_split is not None and spec.train_split != spec.split:
        tlist = checks.limited_listing(spec, spec.train_split, f" (its --train-split {spec.train_split})")
        train_key = images_key(listing_fingerprint(tlist, store)[0], spec.image_size, decoder)
    data = DataInfo(spec.dataset, spec.labels, images_key(fingerprint, spec.image_size, decoder), labels_key(rec),
                    n, len(rec["class_names"]), decoder, spec.split, spec.limit, train_key,
                    *knn_reference(spec, listing, store, decoder))
    if not store.has("images", data.images_key):
        checks.check_free_space(store.root, n, spec.image_size)
    plan_ = plan(spec, data, RuntimeInfo.of(rt), inits)
    if facts.local_memory:  # Ray: each task asks for its model's bytes as a resource instead
        footprint.check_memory(plan_, footprint.to_compute(plan_, store))
    return plan_, rec, rt


class Recorder:
    """The driver's view of the run: collects task results, builds rows, writes the run files."""

    def __init__(self, plan_: Plan, store: ArtifactStore, folder: RunFolder, labels_rec: dict[str, Any],
                 kept: dict[str, dict[str, Any]], kept_assign: dict[str, np.ndarray], log: RunLog,
                 info: dict[str, Any]) -> None:
        self.plan, self.store, self.folder, self.labels_rec, self.log = plan_, store, folder, labels_rec, log
        self.info = info  # run.json: sealed after every write of the other files
        self.results: dict[str, TaskResult] = {}
        self.rows: dict[str, dict[str, Any]] = dict(kept)
        self.assign: dict[str, np.ndarray] = dict(kept_assign)
        self.stats = RunStats(resumed_cells=sum(1 for s in plan_.cells if s.id in kept))
        # cell or probe key -> the grid cells whose rows wait for it (a row is made when both have finished:
        # an executor that runs tasks in parallel may finish a cell before its feature set's probe)
        self.waiting: dict[str, list[CellSlot]] = {}
        for s in plan_.cells:
            if s.id not in kept:
                for key in (s.cell_key, s.probe_key):
                    self.waiting.setdefault(key, []).append(s)
        self.images_meta: dict[str, Any] = {}
        self.names: list[str] = []
        self.labels = np.zeros(0, np.int64)  # class index of each stored image, -1 = unlabeled

    def on_done(self, task: Task, result: TaskResult) -> None:
        self.results[task.key] = result
        self.stats.add(result)
        what = task_label(task)
        if result.status == Status.FAILED and result.info.get("errno") in MACHINE_ERRNOS:
            # the machine failed, not the cell: the run stops (exit 1 with the resume hint), never a failed row
            self.log.write(f"{what} failed: {result.error}\n{result.info.get('traceback', '')}")
            raise OSError(int(result.info["errno"]), f"{os.strerror(int(result.info['errno']))} during {what} "
                          f"({result.error})")
        for category, message in result.warnings:
            kind = CorruptArtifact if category == CorruptArtifact.__name__ else UserWarning
            warnings.warn(f"{what}: {message}" if kind is UserWarning else message, kind, stacklevel=2)
        if result.status == Status.FAILED and "traceback" in result.info:
            self.log.write(f"{what} failed: {result.error}\n{result.info['traceback']}")
        if task.kind == "decode":
            if result.status != Status.OK:
                if result.info.get("skipped"):
                    write_skipped(self.folder.skipped, [tuple(s) for s in result.info["skipped"]])
                    write_info(self.folder, self.info)
                if result.info.get("bad_input"):
                    listed = f" (each listed with its reason in {self.folder.skipped})" if result.info.get("skipped") \
                        else ""
                    raise BadInput(result.error.split(": ", 1)[-1] + listed)
                if result.info.get("error_type") in ("OSError", "PermissionError"):
                    raise OSError(f"the decode could not write the store: {result.error}")
                raise RuntimeError(f"decode failed: {result.error}")
            if task.key != self.plan.data.images_key:
                return  # --train-split / --knn-reference images: the run's rows are of the others
            got = self.store.get_images(task.key)
            if got is None:
                raise RuntimeError(f"the image store {task.key} was not readable right after its decode")
            self.images_meta = got[1]
            self.names = list(self.images_meta.get("names", []))
            self.labels = align_labels(self.names, self.labels_rec)
            write_skipped(self.folder.skipped, [tuple(s) for s in self.images_meta.get("skipped", [])])
            write_info(self.folder, self.info)
            if self.plan.k > len(self.names):
                raise BadInput(f"bad --k {self.plan.k}: at most the number of images, and {len(self.names)} of "
                               f"{self.plan.data.n_listed} decoded (see {self.folder.skipped})")
        for slot in self.waiting.pop(task.key, []):
            if slot.id not in self.rows and slot.cell_key in self.results and slot.probe_key in self.results:
                self._finish(slot)

    def _finish(self, slot: CellSlot) -> None:
        row = self.make_row(slot)
        self.rows[slot.id] = row
        labels = self.store.get_cell_labels(slot.cell_key) if row["status"] in (Status.OK, Status.DEGENERATE) else None
        if labels is not None:
            self.assign[slot.id] = labels
        self.write()

    def ordered_rows(self) -> list[dict[str, Any]]:
        planned = [self.rows[s.id] for s in self.plan.cells if s.id in self.rows]
        ids = {s.id for s in self.plan.cells}
        return planned + [r for cid, r in self.rows.items() if cid not in ids]

    def write(self) -> None:
        """Assignments first: a row in cells.csv always has its clusters on disk."""
        if self.names:
            order = [s.id for s in self.plan.cells if s.id in self.assign]
            order += [c for c in self.assign if c not in order]
            write_assignments(self.folder.assignments, self.names, self.labels, list(self.labels_rec["class_names"]),
                              {c: self.assign[c] for c in order})
        write_cells(self.folder.cells, self.ordered_rows())
        write_info(self.folder, self.info)

    def finish(self) -> None:
        """The last write, once every task has finished."""
        self.write()

    def write_summary(self) -> None:
        """summary.csv (seeds aggregated), when the run ends: cells.csv is the record kept after every cell."""
        write_summary(self.folder.summary, self.ordered_rows())
        write_info(self.folder, self.info)

    def make_row(self, slot: CellSlot) -> dict[str, Any]:

        spec, meta = self.plan.spec, self.images_meta
        row: dict[str, Any] = {c: None for c in columns.names()}
        row.update(dataset=spec.dataset, backbone=slot.backbone, init=slot.init, weights=slot.weights,
                   pretext=slot.pretext, clusterer=slot.clusterer,
                   seed=slot.seed, image_size=spec.image_size, n_images=len(self.names),
                   n_labeled=int((self.labels >= 0).sum()),
                   status=Status.OK.value, error="", feature_key=slot.features_key, probe_key=slot.probe_key,
                   cell_key=slot.cell_key, notes=slot.notes)
        reason = build_pretext(slot.pretext, spec.options_for(slot.pretext)).not_applicable(
            bool(meta.get("grayscale")), slot.backbone)
        cell = self.results.get(slot.cell_key)
        status = Status.SKIPPED.value if reason else (cell.status if cell else Status.FAILED.value)
        fmeta = self.store.get_meta("features", slot.features_key) or {}
        if status != Status.OK or cell is None:  # "ok" comes with its cell's result
            err = reason or (cell.error if cell else "not run")
            row.update(status=status, error=err, notes=err if status == Status.SKIPPED else slot.notes, rankable=False,
                       rank_reason=f"status {status}")
            return row
        probe = self.store.get_record("probes", slot.probe_key) or {}
        row.update(probe_columns(probe), pretext_loss=fmeta.get("pretext_loss"), pretext_acc=fmeta.get("pretext_acc"),
                   train_s=fmeta.get("train_s"), extract_s=fmeta.get("extract_s"),
                   images_per_s=fmeta.get("images_per_s"), feature_dim=fmeta.get("feature_dim"),
                   notes="; ".join(x for x in (slot.notes, probe.get("probe_reason", "")) if x))
        row.update(cell.info)
        return row


def task_label(task: Task) -> str:
    """A short name of a task for messages: its stage and what it works on."""
    parts = [str(getattr(task, a)) for a in ("backbone", "pretext", "clusterer", "seed") if hasattr(task, a)]
    return f"{task.kind} {'/'.join(parts)}".strip()


def run_grid(spec: GridSpec, out: Path, cache_dir: Path, resume: bool = False, progress: bool = True,
             executor: ExecutorSpec | str = "serial") -> RunResult:
    """Run every cell of ``spec``; write the run files under ``out``; artifacts go to the store ``cache_dir``.

    Everything the user passed is checked before any compute (BadInput). The run folder is locked while the
    run writes it; run.json says "running", "finished" or "interrupted". The executor connects first (a
    Ray cluster's GPUs decide whether the run uses CUDA) and is released however the run ends."""
    t_start = time.perf_counter()
    checks.check_writable_dir(out, "--out")
    checks.check_writable_dir(cache_dir, "--cache-dir")
    chosen = make_executor(executor)
    folder = RunFolder(out)
    if resume and folder.holds_run():
        spec = adopt_previous(spec, folder)
    store = ArtifactStore(cache_dir)
    facts = chosen.start()
    try:
        return _run(spec, folder, store, resume, progress, chosen, facts, t_start)
    finally:
        chosen.stop()


def _start_info(spec: GridSpec, plan_: Plan, rt: Any, executor: Executor, facts: DeviceFacts,
                cache_dir: Path) -> dict[str, Any]:
    """run.json as the run starts: its configuration, environment, executor, keys and thread settings."""
    return {"config": run_config(spec),
            "environment": environment(facts.name if rt.device == "cuda" and facts.name else cpu_model()),
            "sort_rule": SORT_RULE, "status": "running", "cache_dir": str(cache_dir),
            "executor": executor.name, "executor_info": executor.describe(), "images_key": plan_.data.images_key,
            "labels_key": plan_.data.labels_key, "plan": plan_.counts(), "k": plan_.k or "auto",
            "threads": describe_threads(), "pid": os.getpid(),
            "data_version": dataset_version(spec.dataset), "decoder": plan_.data.decoder,
            "inits": _inits(plan_)}


def _inits(plan_: Plan) -> dict[str, dict[str, str]]:
    """{backbone: {init label: weights identity (source, file, sha256 prefix)}} of the grid's cells."""
    out: dict[str, dict[str, str]] = {}
    for s in plan_.cells:
        out.setdefault(s.backbone, {})[s.init] = s.weights
    return out


def _finished_info(recorder: Recorder, rows: list[dict[str, Any]], wall: float, rt: Any,
                   n_warnings: int) -> dict[str, Any]:
    """What run.json adds when the run ends: times per stage, what was computed, where tasks ran."""
    stats, plan_ = recorder.stats, recorder.plan
    stage_sum = sum(stats.stage_s.values())
    placement = [{"task": task_label(plan_.by_key[k]), "kind": r.kind, "key": k, "status": r.status,
                  "computed": r.computed, "pid": r.pid, **r.placement}
                 for k, r in recorder.results.items() if r.placement]
    failed = [r for r in rows if r["status"] == Status.FAILED]
    return dict(status="finished", wall_s=wall, stage_s=stats.stage_s, stage_sum_s=stage_sum,
                gpu_util_pct=stats.gpu_util_mean(), peak_anon_mib=stats.peak_anon_mib,
                overhead_ratio=wall / stage_sum if stage_sum > 0 else None,
                computed={**stats.computed, "resumed_cells": stats.resumed_cells},
                task_pids=sorted({r.pid for r in recorder.results.values() if r.pid}), driver_pid=os.getpid(),
                task_placement=placement, n_images=len(recorder.names),
                n_labeled=int((recorder.labels >= 0).sum()), failed_cells=len(failed),
                n_skipped=len(recorder.images_meta.get("skipped", [])), runtime=rt.describe(), warnings=n_warnings)


def _run(spec: GridSpec, folder: RunFolder, store: ArtifactStore, resume: bool, progress: bool, executor: Executor,
         facts: DeviceFacts, t_start: float) -> RunResult:
    out, cache_dir = folder.path, store.root
    plan_, rec, rt = make_plan(spec, store, facts)
    with folder.lock(), RunLog(folder.log) as log:
        kept, kept_assign = kept_rows(plan_, folder, store) if resume and folder.holds_run() else ({}, {})
        log.write(f"{'resume' if resume else 'run'}: {len(plan_.cells)} cells, {len(kept)} kept; pid {os.getpid()}")
        store.put_labels(plan_.data.labels_key, rec)
        todo = [s for s in plan_.cells if s.id not in kept]
        # every cell depends on the decode; with nothing to do, the decode alone (read from the store when
        # cached) names the images for assignments.csv
        tasks = plan_.needed_for(todo) or [plan_.tasks[0]]
        info = _start_info(spec, plan_, rt, executor, facts, cache_dir)
        write_info(folder, info)
        recorder = Recorder(plan_, store, folder, rec, kept, kept_assign, log, info)
        bar = tqdm(total=len(tasks), desc="grid", unit="task", disable=not progress)

        def on_done(task: Task, result: TaskResult) -> None:
            recorder.on_done(task, result)
            if task.kind == "decode" and task.key == plan_.data.images_key:
                warn_small_classes(recorder.labels, list(rec["class_names"]), spec.probe.k_per_class)
            bar.set_description(f"grid: {task_label(task)}")
            bar.update(1)

        try:
            executor.run(tasks, cache_dir, on_done, progress)
        except BaseException as exc:
            bar.close()
            status = "failed" if isinstance(exc, Exception) else "interrupted"
            info.update(status=status, error=f"{type(exc).__name__}: {exc}"[:300])
            recorder.write_summary()
            log.write(f"{status}: {type(exc).__name__}: {exc}; finished cells are kept")
            raise
        bar.close()
        recorder.finish()
        recorder.write_summary()
        wall = time.perf_counter() - t_start
        rows = recorder.ordered_rows()
        info.update(_finished_info(recorder, rows, wall, rt, log.n_warnings))
        write_info(folder, info)
        log.write(f"finished: {len(rows)} cells, {info['failed_cells']} failed, {wall:.1f} s")
    labels, meta, stats = recorder.labels, recorder.images_meta, recorder.stats
    images = ImagesSummary(len(recorder.names), int((labels >= 0).sum()),
                           [tuple(s) for s in meta.get("skipped", [])])
    return RunResult(out, rows, stats, images, wall, plan_)
