"""Resuming a run (CONVENTIONS 7): which earlier rows are kept as they are, and the spec a resumed run plans
(its axes extended by the earlier cells, torch's thread count set to the earlier run's)."""
from __future__ import annotations

import warnings
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch

from benchmark.config.specs import GridSpec
from benchmark.driver.results import assignment_of, cell_id, read_assignments, read_cells
from benchmark.interfaces import BadInput, Status
from benchmark.pipeline.plan import Plan, check_member_names
from benchmark.runtime.threads import describe as describe_threads
from benchmark.store.artifacts import RUN_INFO, RunFolder


def run_config(spec: GridSpec) -> dict[str, Any]:
    cfg = asdict(spec)
    cfg["pretext_options"] = {name: asdict(opts) for name, opts in spec.pretext_options}
    return cfg


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two configurations."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            out += _differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        old, new = list(old), list(new)
    return [] if old == new else [f"{prefix[:-1]} ({old!r} -> {new!r})"]


def kept_rows(plan_: Plan, folder: RunFolder) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Finished rows of a previous run in ``folder`` that the plan keeps as they are (CONVENTIONS 7): same
    cell, probe and cell keys, and their clusters in assignments.csv. Every earlier row is a cell of the plan
    (``adopt_previous`` adds the earlier axes). BadInput when a row was computed from other features."""
    rows = read_cells(folder.cells)
    assign = read_assignments(folder.assignments)
    planned = {s.id: s for s in plan_.cells}
    keep: dict[str, dict[str, Any]] = {}
    for r in rows:
        slot = planned[cell_id(r)]
        if r["status"] != Status.FAILED and r.get("feature_key") != slot.features_key:
            old = folder.read_info()
            if old is None:
                diff = [f"{RUN_INFO} is missing, so the setting cannot be named; its feature key differs"]
            else:
                diff = _differences(old.get("config", {}), run_config(plan_.spec))
                diff = diff or ["the harness version or the runtime (device, precision, threads)"]
            raise BadInput(f"bad --resume: {folder.path} holds {cell_id(r)} computed with another configuration "
                           f"({'; '.join(diff[:3])}); use the run's settings or a new --out")
        same = r.get("cell_key") == slot.cell_key and r.get("probe_key") == slot.probe_key
        if same and (r["status"] == Status.SKIPPED or (r["status"] in (Status.OK, Status.DEGENERATE)
                                                  and assignment_of(assign, r) is not None)):
            keep[slot.id] = r
    return keep, {cid: a for cid, r in keep.items() if (a := assignment_of(assign, r)) is not None}


def libraries(blas: list[dict[str, Any]]) -> frozenset[tuple[str, str]]:
    """The BLAS/OpenMP libraries of a thread description as a set of (api, version): threadpoolctl lists
    the same libraries in an order that varies between processes."""
    return frozenset((str(x.get("api")), str(x.get("version"))) for x in blas if isinstance(x, dict))


def adopt_previous(spec: GridSpec, folder: RunFolder) -> GridSpec:
    """The spec a resumed run plans: its axes extended by the cells already in ``folder`` (so every earlier
    row is checked against this configuration, never kept blindly), and torch's thread count set to the
    earlier run's, so cache keys and results stay equal (with a warning naming the difference)."""

    rows = read_cells(folder.cells)
    axes: dict[str, list[Any]] = {"backbones": list(spec.backbones), "pretexts": list(spec.pretexts),
                                  "clusterers": list(spec.clusterers), "seeds": list(spec.seeds)}
    for r in rows:
        for axis, col in (("backbones", "backbone"), ("pretexts", "pretext"), ("clusterers", "clusterer"),
                          ("seeds", "seed")):
            value = int(r[col]) if col == "seed" else str(r[col])
            if value not in axes[axis]:
                axes[axis].append(value)
    try:
        check_member_names(tuple(axes["backbones"]), tuple(axes["pretexts"]), tuple(axes["clusterers"]))
    except BadInput as exc:
        raise BadInput(f"bad --resume: {folder.path} holds cells this harness cannot run ({exc})") from None
    info = folder.read_info() or {}
    threads = info.get("threads") or {}
    now = describe_threads()
    before = threads.get("torch_intra_op")
    if isinstance(before, int) and before != now["torch_intra_op"]:
        warnings.warn(f"--resume: the run used {before} torch threads and this process has "
                      f"{now['torch_intra_op']}; using {before} so features and cache keys stay equal", stacklevel=2)
        torch.set_num_threads(before)
    libs = libraries(threads.get("blas") or [])
    if libs and libs != libraries(now["blas"]):
        warnings.warn(f"--resume: the BLAS/OpenMP libraries differ from the run's ({sorted(libs)} then, "
                      f"{sorted(libraries(now['blas']))} now); new cells may differ from the old ones at float "
                      "rounding", stacklevel=2)
    return replace(spec, backbones=tuple(axes["backbones"]), pretexts=tuple(axes["pretexts"]),
                   clusterers=tuple(axes["clusterers"]), seeds=tuple(axes["seeds"]))
