"""Reproductions of published numbers: each entry of ``reproductions.toml`` is a grid (a preset) plus the
published values it is held against, with their sources. ``reproduce NAME`` runs the grid, computes each
metric per seed, and prints published vs ours with a tolerance and a verdict.

Tolerance rule (fixed before any comparison, never tuned on the anchor): the largest of a floor (0.02),
three times the standard deviation of our per-seed values stored in the file (measured over >= 3 seeds),
and the published standard deviation where the paper gives one. A metric without a published value is
reported, not judged. ``tolerance()`` computes it; a test recomputes it from the stored values.

Other rules: ``at_least`` (every seed at or above a threshold: the founding case's split purity) and
``rule = "positive_gap"`` for paired per-seed gaps (``baseline_where``): within when the mean gap minus two
standard errors is above 0 (RotNet: rotation beats random init); a reversal is reported as found."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from benchmark.driver.results import cell_id
from benchmark.interfaces import BadInput
from benchmark.outputs.report import Section, _png, write_pages
from registry.base import unknown_message

DATA = Path(__file__).resolve().parent / "reproductions.toml"
FLOOR = 0.02
SEED_FACTOR = 3.0


def load(path: Path = DATA) -> dict[str, dict[str, Any]]:
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def names() -> list[str]:
    return sorted(load())


def entry(name: str) -> dict[str, Any]:

    data = load()
    if name not in data:
        raise BadInput(unknown_message("reproduction", name, sorted(data)))
    return data[name]


def tolerance(metric: dict[str, Any]) -> float:
    """The rule of the module doc, from the metric's stored per-seed values and published spread."""
    seeds = [float(v) for v in metric.get("our_seeds", [])]
    spread = float(np.std(seeds, ddof=1)) if len(seeds) >= 2 else 0.0
    return max(FLOOR, SEED_FACTOR * spread, float(metric.get("published_std", 0.0)))


@dataclass
class Row:
    metric: str
    published: float | None
    source: str
    ours_mean: float | None
    ours_std: float | None
    per_seed: list[float]
    tolerance: float | None
    verdict: str
    at_least: float | None = None  # the rule "every seed >= at_least" instead of a published value
    rule: str = ""  # "positive_gap": a paired gap whose mean minus two standard errors must be above 0
    column: str = ""  # the cells.csv column (or computed value) the metric reads
    variant: str = ""  # the variant's run it reads ("" when the reproduction has one run)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @property
    def failed(self) -> bool:
        """Outside its tolerance or rule (a reversal or no clear gap included), or without a value."""
        return self.verdict == "no value" or self.verdict.startswith("outside")


def _select(cells: "Any", where: dict[str, Any]) -> "Any":
    rows = cells
    for col, value in where.items():
        rows = rows[rows[col].astype(str) == str(value)]
    return rows


def metric_values(metric: dict[str, Any], cells: "Any", out: Path) -> list[float]:
    """One value per seed of a metric: a cells.csv column of the selected cells, or a computed one."""
    rows = _select(cells, metric.get("where", {})).sort_values("seed")
    kind = metric["column"]
    if kind == "split_purity":
        return [split_purity(out, row, metric["group"]) for _, row in rows.iterrows()]
    if "baseline_where" in metric:  # a paired gap per seed: these cells minus the baseline's
        base = _select(cells, metric["baseline_where"]).set_index("seed")[kind]
        return [float(v) - float(base[s]) for s, v in zip(rows["seed"], rows[kind], strict=False)
                if s in base.index and v == v]
    return [float(v) for v in rows[kind] if v == v]


def split_purity(out: Path, row: "Any", group: list[str]) -> float:
    """Purity of a 2-cluster split against the grouping {group} vs the other classes: the share of images
    whose cluster's majority side is their side."""
    import pandas as pd

    assign = pd.read_csv(out / "assignments.csv")
    col = cell_id(row)
    old = f"{row['backbone']}/{row['pretext']}/{row['clusterer']}/{row['seed']}"  # runs before the init axis
    col = old if col not in assign.columns and old in assign.columns else col
    if col not in assign.columns:
        raise RuntimeError(f"assignments.csv has no column for cell {col!r}")
    labeled = assign["label"].notna()
    if not labeled.any():
        raise RuntimeError(f"{out / 'assignments.csv'} has no labels: the split purity needs them")
    side = assign.loc[labeled, "label"].isin(group).to_numpy()
    clusters = assign.loc[labeled, col].to_numpy()
    hits = 0
    for c in np.unique(clusters):
        members = side[clusters == c]
        hits += max(int(members.sum()), int((~members).sum()))
    return hits / len(side)


def judge(metric: dict[str, Any], values: list[float]) -> Row:
    pub = metric.get("published")
    mean = float(np.mean(values)) if values else None
    std = float(np.std(values, ddof=1)) if len(values) >= 2 else (0.0 if values else None)
    tol = tolerance(metric) if pub is not None else None
    if mean is None:
        verdict = "no value"
    elif "at_least" in metric:
        verdict = "within" if min(values) >= float(metric["at_least"]) else "outside"
    elif metric.get("rule") == "positive_gap":  # mean minus two standard errors above 0
        se = (std or 0.0) / math.sqrt(len(values))
        verdict = ("within" if mean - 2 * se > 0 else
                   "outside (reversal found)" if mean + 2 * se < 0 else "outside (no clear gap)")
    elif pub is None or tol is None:  # tol is None exactly when pub is
        verdict = "reported"
    else:
        verdict = "within" if abs(mean - float(pub)) <= tol else "outside"
    return Row(metric["name"], pub, metric.get("source", ""), mean, std, values, tol, verdict, metric.get("at_least"),
               metric.get("rule", ""), metric.get("column", ""), metric.get("variant", ""))


def published_text(r: Row, fmt: Any = str) -> str:
    """The published column: the value (``fmt``), or the rule the row is judged by."""
    if r.at_least is not None:
        return f">= {r.at_least:g} every seed"
    return "> 0 (mean - 2 SE)" if r.rule == "positive_gap" else fmt(r.published)


def table(rows: list[Row]) -> str:
    from tabulate import tabulate

    def fmt(v: float | None) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    body = [[r.metric, published_text(r, fmt),
             f"{fmt(r.ours_mean)} ± {fmt(r.ours_std)} (n={len(r.per_seed)})",
             fmt(r.tolerance), r.verdict, r.source] for r in rows]
    return tabulate(body, headers=["metric", "published", "ours (mean ± std over seeds)", "tolerance", "verdict",
                                   "source"], tablefmt="github")


def variants(name: str) -> list[tuple[str, dict[str, Any]]]:
    """(variant name, grid overrides) of a reproduction: one run each (e.g. k = 2 and k = 10 on the same
    features); a reproduction without variants is one run named ""."""
    return [(v["name"], {k: x for k, x in v.items() if k != "name"}) for v in entry(name).get("variants", [])] \
        or [("", {})]


def run_folder(out: Path, variant: str) -> Path:
    return out / variant if variant else out


def evaluate(name: str, out: Path, verdicts: bool = True) -> list[Row]:
    """Published vs ours for every metric of reproduction ``name`` from its runs under ``out``; written to
    reproduce.json / reproduce.csv there. ``verdicts=False`` (smoke runs): values only."""
    import pandas as pd

    rows = []
    for m in entry(name)["metrics"]:
        folder = run_folder(out, m.get("variant", ""))
        rows.append(judge(m, metric_values(m, pd.read_csv(folder / "cells.csv"), folder)))
    if not verdicts:
        for r in rows:
            r.verdict, r.tolerance = "not judged (smoke)", None
    with open(out / "reproduce.json", "w", encoding="utf-8") as fh:
        json.dump({"reproduction": name, "title": entry(name).get("title", ""), "rows": [r.as_dict() for r in rows],
                   "tolerance_rule": f"max({FLOOR}, {SEED_FACTOR:g} x std of our stored per-seed values, "
                                     f"published std)"}, fh, indent=1)
    pd.DataFrame([r.as_dict() for r in rows]).to_csv(out / "reproduce.csv", index=False)
    return rows


def _se(r: Row) -> float:
    return (r.ours_std or 0.0) / math.sqrt(max(1, len(r.per_seed)))


def _gaps_by_column(rows: list[Row]) -> dict[str, list[Row]]:
    """The paired-gap rows with a value, grouped by the column they read, in file order."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        if r.rule == "positive_gap" and r.ours_mean is not None:
            groups.setdefault(r.column, []).append(r)
    return groups


def largest_gaps(rows: list[Row]) -> list[str]:
    """Per column of the paired-gap rows: the variant with the largest mean gap (RotNet: which block)."""
    lines = []
    for col, sel in _gaps_by_column(rows).items():
        best = max(sel, key=lambda r: r.ours_mean if r.ours_mean is not None else -math.inf)  # never None here
        lines.append(f"largest {col} gap: {best.variant or best.metric}, {best.ours_mean:+.3f} ± {2 * _se(best):.3f} "
                     f"(2 SE over {len(best.per_seed)} seeds; {best.verdict})")
    return lines


def ordering_lines(rows: list[Row]) -> list[str]:
    """Per column of the paired-gap rows: how many gaps held the published order (within), how many reversed
    it and how many were unclear, naming the rows where our ordering differs from the published one."""
    lines = []
    for col, sel in _gaps_by_column(rows).items():
        if len(sel) < 2:
            continue
        held = [r for r in sel if r.verdict == "within"]
        reversed_ = [r.variant or r.metric for r in sel if "reversal" in r.verdict]
        unclear = [r.variant or r.metric for r in sel if "no clear gap" in r.verdict]
        text = f"{col}: the published order held in {len(held)} of {len(sel)} paired gaps"
        if reversed_:
            text += f"; reversed in {len(reversed_)} ({', '.join(reversed_)})"
        if unclear:
            text += f"; unclear in {len(unclear)} ({', '.join(unclear)})"
        lines.append(text)
    return lines


def gap_figure(rows: list[Row]) -> bytes | None:
    """Mean paired gap per variant with ±2 SE bars, one panel per column; None without gap rows."""
    groups = _gaps_by_column(rows)
    if not groups:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wide = max(len(sel) for sel in groups.values()) > 6
    fig, axes = plt.subplots(1, len(groups), figsize=((7.0 if wide else 4.5) * len(groups), 5.5 if wide else 3.4),
                             squeeze=False)
    for ax, (col, sel) in zip(axes[0], groups.items(), strict=False):
        x = np.arange(len(sel))
        colors = ["tab:green" if r.verdict == "within" else "tab:red" if "reversal" in r.verdict else "tab:gray"
                  for r in sel]
        ax.bar(x, [r.ours_mean for r in sel], yerr=[2 * _se(r) for r in sel], color=colors, capsize=4)
        for i, r in enumerate(sel):
            ax.scatter([i] * len(r.per_seed), r.per_seed, color="black", s=10, zorder=3)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, [r.variant or r.metric for r in sel], rotation=90 if len(sel) > 6 else 0, fontsize=7)
        ax.set_title(f"{col}: treatment - baseline")
        ax.set_ylabel("gap (bars: mean ± 2 SE; dots: seeds)")
    fig.tight_layout()
    return _png(fig)


def write_report(name: str, out: Path, rows: list[Row], facts: str) -> tuple[Path, Path]:
    """report.html / report.md of a reproduction in ``out``: published vs ours, the gaps as a plot, the runs."""
    import pandas as pd

    table = pd.DataFrame([{"metric": r.metric, "published": published_text(r, lambda v: "-" if v is None else v),
                           "ours mean": r.ours_mean, "ours std": r.ours_std,
                           "per seed": ", ".join(f"{v:.3f}" for v in r.per_seed),
                           "tolerance": r.tolerance, "verdict": r.verdict, "source": r.source} for r in rows])
    secs = [Section("Reproduction", f"{name}: {entry(name).get('title', '')}\n{facts}"),
            Section("Published vs ours", f"Tolerance rule: max({FLOOR}, {SEED_FACTOR:g} x std of our stored "
                    "per-seed values, published std); paired gaps: within when mean - 2 SE > 0.", table=table)]
    fig = gap_figure(rows)
    if fig is not None:
        secs.append(Section("Gaps per variant", "\n".join(ordering_lines(rows) + largest_gaps(rows)), fig))
    runs = [f"- {v or '(one run)'}: {run_folder(out, v) / 'cells.csv'}" for v, _ in variants(name)]
    secs.append(Section("Runs", "\n".join(runs) + "\n\n`python -m benchmark report <run folder>` draws any run's "
                        "own report."))
    return write_pages(out, f"Reproduction: {name}", secs)
