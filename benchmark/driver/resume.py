"""Resuming a run (CONVENTIONS 7): which earlier rows are kept as they are, and the spec a resumed run plans
(its axes extended by the earlier cells, torch's thread count set to the earlier run's)."""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from benchmark.config.specs import MAX_SEED, GridSpec, parse_backbone_pretexts
from benchmark.driver.integrity import check_folder
from benchmark.driver.probe_rows import probe_columns
from benchmark.driver.results import assignment_of, cell_id, read_assignments, rows_of
from benchmark.interfaces import BadInput, Status
from benchmark.pipeline.plan import Plan, check_member_names
from benchmark.runtime.threads import describe as describe_threads
from benchmark.store.artifacts import RUN_INFO, ArtifactStore, RunFolder


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


@dataclass
class Previous:
    """The rows of the run in a folder being resumed: ``rows`` intact (typed as ``read_cells`` types them),
    ``damaged`` one phrase per row that is not a finished cell (edited, damaged, out of range: recomputed),
    with the raw strings of those rows in ``damaged_rows``."""

    rows: list[dict[str, Any]]
    damaged: list[str]
    damaged_rows: list[dict[str, str]]
    schema: int
    problems: list[str]  # the folder's other files that do not match their checksums


def previous_rows(folder: RunFolder) -> Previous:
    """Read back and check (``benchmark.driver.integrity``) the rows of the run in ``folder``."""
    try:
        check = check_folder(folder)
    except BadInput as exc:
        raise BadInput(f"bad --resume: {exc}") from None
    intact = [r for i, r in enumerate(check.rows) if i not in check.damaged]
    return Previous(rows_of(check.header, intact), [f"{check.row_name(i)} {why}" for i, why in check.damaged.items()],
                    [check.rows[i] for i in check.damaged], check.schema, check.problems)


def _same_as_record(row: dict[str, Any], record: dict[str, Any] | None) -> bool:
    """A row of a folder without checksums (schema 1) agrees with the store's checksummed record of its
    cell or probe at cells.csv's 6 significant digits (True when the store no longer holds it)."""
    if record is None:
        return True
    for k, v in record.items():
        if k not in row or isinstance(v, (dict, list)):
            continue
        w = row[k]
        if isinstance(v, float) and isinstance(w, (int, float)) and not isinstance(w, bool):
            if f"{v:.6g}" != f"{float(w):.6g}":
                return False
        elif v is not None and w is not None and str(v) != str(w) and not isinstance(v, float):
            return False
    return True


def kept_rows(plan_: Plan, folder: RunFolder, store: ArtifactStore
              ) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Finished rows of a previous run in ``folder`` that the plan keeps as they are (CONVENTIONS 7): intact
    (their digests in run.json; in a folder without checksums, equal to the store's records), same cell,
    probe and cell keys, and their clusters in assignments.csv. A damaged row is not kept: its cell is
    recomputed (read from the store when it holds it), with one warning. Every earlier row is a cell of the
    plan (``adopt_previous`` adds the earlier axes). BadInput when a row was computed from other features."""
    prev = previous_rows(folder)
    # a damaged assignments.csv cannot give kept rows their clusters: their cells are read from the store
    assign = {} if any(p.startswith("assignments.csv") for p in prev.problems) else read_assignments(folder.assignments)
    planned = {s.id: s for s in plan_.cells}
    keep: dict[str, dict[str, Any]] = {}
    damaged = list(prev.damaged)
    for r in prev.rows:
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
        if same and prev.schema < 2 and r["status"] in (Status.OK, Status.DEGENERATE):
            cell = store.get_cell(slot.cell_key)
            if not (_same_as_record(r, cell[0] if cell else None)
                    and _same_as_record(r, _probe_columns(store.get_record("probes", slot.probe_key)))):
                damaged.append(f"{cell_id(r)} differs from the store's record of its cell")
                continue
        if same and (r["status"] == Status.SKIPPED or (r["status"] in (Status.OK, Status.DEGENERATE)
                                                  and assignment_of(assign, r) is not None)):
            keep[slot.id] = r
    damaged += [p for p in prev.problems if p.startswith("assignments.csv")]
    if damaged:
        warnings.warn(f"--resume: {len(damaged)} rows of {folder.cells} are not finished cells and are "
                      f"recomputed, e.g. {damaged[0]}", stacklevel=2)
    return keep, {cid: a for cid, r in keep.items() if (a := assignment_of(assign, r)) is not None}


def _probe_columns(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The numeric cells.csv columns of a probe record (linear probe and kNN)."""
    if record is None:
        return None
    return {k: v for k, v in probe_columns(record).items() if not isinstance(v, str)}


def _add_axes(axes: dict[str, list[Any]], r: dict[str, Any]) -> None:
    for axis, col in (("backbones", "backbone"), ("pretexts", "pretext"), ("clusterers", "clusterer"),
                      ("seeds", "seed")):
        if col == "seed" and r.get("seed") in (None, ""):
            continue  # folders made before the seed axis
        value = int(r[col]) if col == "seed" else str(r[col])
        if value not in axes[axis]:
            axes[axis].append(value)


def check_seeds(seeds: tuple[int, ...]) -> None:
    if any(not 0 <= s <= MAX_SEED for s in seeds):
        raise BadInput(f"bad seeds {seeds}: allowed: integers in [0, {MAX_SEED}]")


def libraries(blas: list[dict[str, Any]]) -> frozenset[tuple[str, str]]:
    """The BLAS/OpenMP libraries of a thread description as a set of (api, version): threadpoolctl lists
    the same libraries in an order that varies between processes."""
    return frozenset((str(x.get("api")), str(x.get("version"))) for x in blas if isinstance(x, dict))


def adopt_previous(spec: GridSpec, folder: RunFolder) -> GridSpec:
    """The spec a resumed run plans: its axes extended by the cells already in ``folder`` (so every earlier
    row is checked against this configuration, never kept blindly), and torch's thread count set to the
    earlier run's, so cache keys and results stay equal (with a warning naming the difference)."""

    prev = previous_rows(folder)
    axes: dict[str, list[Any]] = {"backbones": list(spec.backbones), "pretexts": list(spec.pretexts),
                                  "clusterers": list(spec.clusterers), "seeds": list(spec.seeds)}
    for r in prev.rows:
        _add_axes(axes, r)
    try:
        check_member_names(tuple(axes["backbones"]), tuple(axes["pretexts"]), tuple(axes["clusterers"]))
    except BadInput as exc:
        raise BadInput(f"bad --resume: {folder.path} holds cells this harness cannot run ({exc})") from None
    for raw in prev.damaged_rows:  # a damaged row's cell is recomputed when its names are still ones of ours
        trial = {a: list(v) for a, v in axes.items()}
        try:
            _add_axes(trial, raw)
            check_member_names(tuple(trial["backbones"]), tuple(trial["pretexts"]), tuple(trial["clusterers"]))
            check_seeds(tuple(trial["seeds"]))
        except (BadInput, KeyError, TypeError, ValueError):
            continue
        axes = trial
    info = folder.read_info() or {}
    threads = info.get("threads") or {}
    now = describe_threads()
    before = threads.get("torch_intra_op")
    if isinstance(before, int) and before != now["torch_intra_op"]:
        warnings.warn(f"--resume: the run used {before} torch threads and this process has "
                      f"{now['torch_intra_op']}; using {before} so features and cache keys stay equal", stacklevel=2)
        torch.set_num_threads(before)
    libs, now_libs = libraries(threads.get("blas") or []), libraries(now["blas"])
    # a process lists only the libraries loaded so far (a run loads more than a refusal gets to): they differ
    # only when neither set holds the other
    if libs and now_libs and not (libs <= now_libs or now_libs <= libs):
        warnings.warn(f"--resume: the BLAS/OpenMP libraries differ from the run's ({sorted(libs)} then, "
                      f"{sorted(libraries(now['blas']))} now); new cells may differ from the old ones at float "
                      "rounding", stacklevel=2)
    backbones, pretexts = tuple(axes["backbones"]), tuple(axes["pretexts"])
    return replace(spec, backbones=backbones, pretexts=pretexts, clusterers=tuple(axes["clusterers"]),
                   seeds=tuple(axes["seeds"]), backbone_pretexts=_with_earlier_pairs(
                       spec.backbone_pretexts, backbones, pretexts, prev.rows + prev.damaged_rows))


def _with_earlier_pairs(text: str | None, backbones: tuple[str, ...], pretexts: tuple[str, ...],
                        rows: list[Any]) -> str | None:
    """``--backbone-pretexts`` extended by the (backbone, pretext) pairs of the earlier rows: a resumed run
    keeps every earlier cell."""
    if not text:
        return text
    # the items in effect (an item left none of --pretexts, or for a backbone outside the grid, limits nothing)
    per = {b: chosen for b, chosen in parse_backbone_pretexts(text, backbones, pretexts).items() if chosen}
    for r in rows:
        if r.get("backbone") in per and r.get("pretext") in pretexts:
            per[r["backbone"]].add(r["pretext"])
    return ",".join(f"{b}={'+'.join(p for p in pretexts if p in chosen)}" for b, chosen in per.items()) or None
