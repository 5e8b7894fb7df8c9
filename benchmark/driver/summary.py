"""Seeds aggregated: mean, std and 95% interval per cell (summary.csv), ties with the leader, the leaderboard.

Interval: Student t over the seeds (mean +- t(0.975, n-1) * sd / sqrt(n)); the probe and the kNN accuracy pool
seeds x draws.
Ties: a **paired** comparison with the leader. For the ranking score (NMI with labels, else silhouette) the
per-seed differences leader - cell; for the probe the per-(seed, draw) differences, since a draw's labeled
subset is the same for every feature set. A cell is tied when the 95% interval of its mean difference
contains 0. The leader is the best rankable cell by the mean ranking score; unrankable cells (mostly noise,
or one giant cluster: ``benchmark.scoring.metrics.rankability``) are listed after the rankable ones and never lead."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from benchmark.interfaces import Status
from benchmark.pipeline.plan import COPY_NOTE
from benchmark.scoring import columns

GROUP = ["backbone", "init", "pretext", "clusterer"]
SORT_RULE = ("one row per backbone/init/pretext/clusterer over the seeds; rankable cells first, by the mean NMI where "
             "the data set has labels, else the mean silhouette (descending); then the pooled probe accuracy")


def row_init(row: Any) -> str:
    """A row's init label; rows of runs before the init axis (no ``init`` column) take it from ``weights``
    (random, none, imagenet:<enum> -> imagenet, checkpoint:<file> -> checkpoint)."""
    got = row.get("init") if hasattr(row, "get") else None
    if isinstance(got, str) and got:
        return got
    weights = str(row.get("weights") or "") if hasattr(row, "get") else ""
    if row.get("backbone") == "raw_pixels" or weights == "none":
        return "none"
    kind = weights.partition(":")[0]
    return kind if kind in ("imagenet", "checkpoint") else "random"


def with_init(df: pd.DataFrame) -> pd.DataFrame:
    """cells.csv of a run before the init axis gains its ``init`` column (from ``weights``, see ``row_init``)."""
    if "backbone" not in df.columns or ("init" in df.columns and df["init"].notna().all()):
        return df
    df = df.copy()
    labels = [row_init(r) for r in df.to_dict("records")]
    if "init" in df.columns:
        df["init"] = labels
    else:
        df.insert(int(list(df.columns).index("backbone")) + 1, "init", labels)
    return df


def interval(values: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, std, lo, hi) of the 95% Student-t interval of the mean; lo = hi = mean for one value."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (math.nan,) * 4
    m = float(v.mean())
    if v.size == 1:
        return m, 0.0, m, m
    from scipy.stats import t

    sd = float(v.std(ddof=1))
    half = float(t.ppf(0.975, v.size - 1)) * sd / math.sqrt(v.size)
    return m, sd, m - half, m + half


def paired_tie(a: np.ndarray, b: np.ndarray) -> bool | None:
    """Whether the 95% interval of mean(a - b) over paired values contains 0 (None: fewer than 2 pairs)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2:
        return None
    _m, _sd, lo, hi = interval(d)
    return bool(lo <= 0.0 <= hi) or bool(np.allclose(d, 0.0))


def primary_score(df: pd.DataFrame) -> str:
    return "nmi" if pd.to_numeric(df.get("nmi"), errors="coerce").notna().any() else "silhouette"


def probe_draws(row: Any, per_draw: str = "probe_accuracies", mean: str = "linear_probe_acc") -> list[float]:
    """The per-draw probe accuracies of a row (``probe_accuracies`` "a;b;c"), else its mean alone; the kNN's
    with ``per_draw="knn_accuracies", mean="knn_acc"`` (``knn_draws``)."""
    text = row.get(per_draw) if hasattr(row, "get") else None
    if isinstance(text, str) and text:
        return [float(x) for x in text.split(";")]
    v = pd.to_numeric(pd.Series([row.get(mean)]), errors="coerce").iloc[0]
    return [] if pd.isna(v) else [float(v)]


def knn_draws(row: Any) -> list[float]:
    """The per-draw kNN accuracies of a row (``knn_accuracies``), else its mean alone."""
    return probe_draws(row, "knn_accuracies", "knn_acc")


def rankable_mask(df: pd.DataFrame) -> pd.Series:
    """Rows whose internal scores may rank them (status ok and the ``rankable`` flag; older runs: status ok)."""
    if "rankable" not in df:
        return df["status"] == Status.OK.value
    r = df["rankable"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
    return r & (df["status"] == Status.OK.value)


def summarize(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per backbone/init/pretext/clusterer: seeds, mean/std/lo/hi of every score, rankable, tied."""
    cells = with_init(cells)
    df = cells[~cells["notes"].fillna("").astype(str).str.contains(COPY_NOTE, regex=False)].copy()
    df = df[df["status"].isin([Status.OK.value, Status.DEGENERATE.value])]
    if df.empty:
        return pd.DataFrame()
    df["_rankable"] = rankable_mask(df)
    primary = primary_score(df)
    rows = []
    for key, g in df.groupby(GROUP, sort=False):
        out: dict[str, Any] = dict(zip(GROUP, key, strict=False))
        out["weights"] = str(g["weights"].iloc[0]) if "weights" in g else ""
        out["seeds"] = int(g["seed"].nunique())
        for s in columns.summary_columns("interval"):
            m, sd, lo, hi = interval(pd.to_numeric(g.get(s), errors="coerce").to_numpy())
            out.update({f"{s}_mean": m, f"{s}_std": sd, f"{s}_lo": lo, f"{s}_hi": hi})
        for name, of in (("probe", probe_draws), ("knn", knn_draws)):  # pooled over seeds x draws
            m, sd, lo, hi = interval(np.array([a for _, r in g.iterrows() for a in of(r)]))
            out.update({f"{name}_pooled_mean": m, f"{name}_pooled_lo": lo, f"{name}_pooled_hi": hi})
        for s in columns.summary_columns("mean"):
            out[s] = pd.to_numeric(g.get(s), errors="coerce").mean()
        out["rankable"] = bool(g["_rankable"].all())
        reasons = [str(x) for x in g.get("rank_reason", pd.Series(dtype=str)).fillna("") if str(x)]
        out["rank_reason"] = reasons[0] if reasons else ("" if out["rankable"] else "status degenerate")
        rows.append(out)
    summary = pd.DataFrame(rows)
    summary["_key"] = summary[f"{primary}_mean"].fillna(-np.inf)
    summary = summary.sort_values(["rankable", "_key", "probe_pooled_mean"], ascending=[False, False, False],
                                  na_position="last").drop(columns="_key").reset_index(drop=True)
    summary["tied_with_leader"] = None
    if summary["rankable"].any():
        lead = summary.iloc[0]
        per_seed = df.pivot_table(index="seed", columns=GROUP, values=primary, aggfunc="first")
        lead_vals = per_seed[tuple(lead[GROUP])]
        ties: list[str | None] = []
        for _, r in summary.iterrows():
            if not r["rankable"]:
                ties.append(None)
            elif tuple(r[GROUP]) == tuple(lead[GROUP]):
                ties.append("leader")
            else:
                t = paired_tie(lead_vals.to_numpy(), per_seed[tuple(r[GROUP])].to_numpy())
                ties.append(None if t is None else ("tied" if t else "no"))
        summary["tied_with_leader"] = ties
    summary.attrs["primary"] = primary
    return summary


def leaderboard_text(cells: pd.DataFrame, limit: int | None = None) -> str:
    """The seeds-aware leaderboard: mean [95% interval] per cell, stability, rankable, the tie marks."""
    from tabulate import tabulate

    summary = summarize(cells)
    if summary.empty:
        return "no finished cells"
    primary = summary.attrs["primary"]
    n_seeds = int(summary["seeds"].max())

    def ci(r: Any, s: str) -> str:
        m, lo, hi = r[f"{s}_mean"], r[f"{s}_lo"], r[f"{s}_hi"]
        if pd.isna(m):
            return "-"
        return f"{m:.3f}" if n_seeds < 2 or pd.isna(lo) else f"{m:.3f} [{lo:.3f}, {hi:.3f}]"

    view = []
    for i, r in summary.iterrows():
        mark = {"leader": "leader", "tied": "= tied", "no": ""}.get(r["tied_with_leader"] or "", "")
        view.append({"#": i + 1, "backbone": r["backbone"], "init": r["init"], "pretext": r["pretext"],
                     "clusterer": r["clusterer"],
                     primary: ci(r, primary), "silhouette" if primary != "silhouette" else "nmi":
                     ci(r, "silhouette" if primary != "silhouette" else "nmi"),
                     "probe": (f"{r['probe_pooled_mean']:.3f}" if not pd.isna(r["probe_pooled_mean"]) else "-"),
                     "knn": (f"{r['knn_pooled_mean']:.3f}" if not pd.isna(r["knn_pooled_mean"]) else "-"),
                     "clusters": "-" if pd.isna(r["n_clusters_mean"]) else f"{r['n_clusters_mean']:.0f}",
                     "noise": "-" if pd.isna(r["noise_fraction_mean"]) else f"{r['noise_fraction_mean']:.2f}",
                     "stability": "-" if pd.isna(r["stability_mean"]) else f"{r['stability_mean']:.2f}",
                     "img/s": "-" if pd.isna(r["images_per_s"]) else f"{r['images_per_s']:.0f}",
                     "rankable": "yes" if r["rankable"] else f"no: {r['rank_reason']}", "vs leader": mark})
    if limit:
        view = view[:limit]
    return leaderboard_header(summary) + "\n" + tabulate(view, headers="keys", tablefmt="github")


def leaderboard_header(summary: pd.DataFrame) -> str:
    """What the intervals and tie marks of a summary mean (or that one seed gives neither)."""
    primary, n_seeds = summary.attrs["primary"], int(summary["seeds"].max())
    if n_seeds >= 2:
        return (f"{n_seeds} seeds: mean [95% interval]. '= tied': the 95% interval of the paired per-seed "
                f"{primary} differences with the leader contains 0, so the order among them is not established.")
    return (f"1 seed: no intervals, no tie marks (differences under about 0.05 {primary} are within seed "
            "noise on digits); run with --seeds 0,1,2 to rank with intervals.")
