"""`recommend` (the production recipe by a stated rule, with the quality-vs-throughput Pareto front) and
`diff` (per-cell score changes between two runs)."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from benchmark.driver.summary import knn_draws, paired_tie, primary_score, probe_draws, rankable_mask, with_init
from benchmark.interfaces import BadInput, Status
from benchmark.scoring import columns

RULE = ("among rankable cells (status ok, at most half noise, not one giant cluster) whose feature extraction "
        "reaches the throughput floor, take the feature set (backbone x init x pretext) with the best linear-probe "
        "accuracy, pooled over seeds and draws; feature sets tied with it (the 95% interval of the paired "
        "per-draw differences contains 0) compete on throughput, and the fastest wins; within it, the rankable "
        "clusterer with the best mean NMI where labels exist, else the best mean silhouette")


@dataclass(frozen=True)
class Recommendation:
    cell: pd.Series
    why: str
    pareto: pd.DataFrame


def pareto_front(fs: pd.DataFrame, quality: str = "linear_probe_acc", speed: str = "images_per_s") -> pd.DataFrame:
    """Feature sets no other one beats on both quality and throughput."""
    rows = fs.dropna(subset=[quality, speed]).sort_values([speed, quality], ascending=[False, False])
    keep, best_q = [], -np.inf
    for i, r in rows.iterrows():
        if r[quality] > best_q:
            keep.append(i)
            best_q = r[quality]
    return rows.loc[keep]


def recommend(cells: pd.DataFrame, min_throughput: float = 0.0) -> Recommendation:
    """Apply RULE. BadInput when no cell qualifies. The returned cell is the chosen cell at its first seed.
    A feature set is backbone x init x pretext: inside the rule its name is backbone/init/pretext (the init
    joined to the pretext), and the returned cell is the row as cells.csv has it."""
    shown = with_init(cells.reset_index(drop=True))
    named = shown.assign(pretext=shown["init"].astype(str) + "/" + shown["pretext"].astype(str))
    rec = _recommend(named, min_throughput)
    return replace(rec, cell=shown.loc[rec.cell.name])


def _recommend(cells: pd.DataFrame, min_throughput: float) -> Recommendation:
    df = cells.copy()
    for c in ("linear_probe_acc", "images_per_s", "nmi", "silhouette", "seed"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    ok = df[df["status"] == Status.OK.value]
    if ok.empty:
        raise BadInput("no cell with status ok to recommend")
    rank = ok[rankable_mask(ok)]
    if rank.empty:
        raise BadInput("no rankable cell to recommend: every ok cell is mostly noise or one giant cluster "
                       "(see rank_reason in cells.csv)")
    sets = rank.drop_duplicates(["backbone", "pretext", "seed"])
    draws: dict[tuple[str, str], dict[tuple[int, int], float]] = {}
    knn: dict[tuple[str, str], list[float]] = {}  # shown beside the probe (the rule ranks by the probe)
    for _, r in sets.iterrows():
        acc = draws.setdefault((r["backbone"], r["pretext"]), {})
        for i, draw_acc in enumerate(probe_draws(r)):
            acc[(int(r["seed"]), i)] = draw_acc
        knn.setdefault((r["backbone"], r["pretext"]), []).extend(knn_draws(r))
    fs = rank.groupby(["backbone", "pretext"], sort=False).agg(
        weights=("weights", "first"), images_per_s=("images_per_s", "mean")).reset_index()
    fs["linear_probe_acc"] = [np.mean(list(draws[(b, p)].values())) if draws[(b, p)] else np.nan
                              for b, p in zip(fs["backbone"], fs["pretext"], strict=False)]
    fs["knn_acc"] = [np.mean(knn[(b, p)]) if knn[(b, p)] else np.nan
                     for b, p in zip(fs["backbone"], fs["pretext"], strict=False)]
    fast = fs[fs["images_per_s"].fillna(0) >= min_throughput]
    if fast.empty:
        raise BadInput(f"no feature set reaches {min_throughput:g} images/s; the fastest does "
                       f"{fs['images_per_s'].max():.1f}")
    if fast["linear_probe_acc"].isna().all():  # no labels, no probe: the best rankable cell by its internal score
        return _recommend_unlabeled(ok, rank[rank.set_index(["backbone", "pretext"]).index.isin(
            fast.set_index(["backbone", "pretext"]).index)], fs)
    fast = fast.sort_values(["linear_probe_acc", "images_per_s"], ascending=[False, False], na_position="last")
    best = fast.iloc[0]
    tied = [best]
    for _, r in fast.iloc[1:].iterrows():
        a, b = draws[(best["backbone"], best["pretext"])], draws[(r["backbone"], r["pretext"])]
        common = sorted(set(a) & set(b))
        if common and paired_tie(np.array([a[x] for x in common]), np.array([b[x] for x in common])):
            tied.append(r)
    top = max(tied, key=lambda r: (r["images_per_s"] if not pd.isna(r["images_per_s"]) else -1))
    cand = rank[(rank["backbone"] == top["backbone"]) & (rank["pretext"] == top["pretext"])]
    by = primary_score(cand)
    means = cand.groupby("clusterer")[by].mean().sort_values(ascending=False)
    clusterer = means.index[0]
    chosen = cand[cand["clusterer"] == clusterer].sort_values("seed")
    cell = chosen.iloc[0]
    why = _why(top, best, tied, fast, fs, min_throughput, clusterer, by, means, ok, rank)
    return Recommendation(cell, why, pareto_front(fs))


def _recommend_unlabeled(ok: pd.DataFrame, rank: pd.DataFrame, fs: pd.DataFrame) -> Recommendation:
    """Without labels there is no probe: the rankable cell with the best mean silhouette over seeds."""
    means = rank.groupby(["backbone", "pretext", "clusterer"], sort=False)["silhouette"].mean()
    means = means.dropna().sort_values(ascending=False)
    if means.empty:
        raise BadInput("no rankable cell with a silhouette to recommend")
    b, p, c = means.index[0]
    cell = rank[(rank["backbone"] == b) & (rank["pretext"] == p) & (rank["clusterer"] == c)].sort_values("seed").iloc[0]
    why = (f"no labels, so no probe: {b}/{p}/{c} has the best mean silhouette ({_fmt(means.iloc[0])}) of the "
           f"{len(means)} rankable cells")
    passed = ok[~ok.index.isin(rank.index)]
    passed = passed[pd.to_numeric(passed["silhouette"], errors="coerce") > means.iloc[0]]
    if len(passed):
        r = passed.sort_values("silhouette", ascending=False).iloc[0]
        why += (f"; passed over {len(passed)} unrankable cells with a higher silhouette, e.g. {r['backbone']}/"
                f"{r['pretext']}/{r['clusterer']} ({_fmt(r['silhouette'])}): {r.get('rank_reason') or 'not rankable'}")
    return Recommendation(cell, why, pareto_front(fs))


def _fmt(v: float) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{v:.3f}"


def _why(top, best, tied, fast, fs, floor, clusterer, by, means, ok, rank) -> str:
    name = f"{top['backbone']}/{top['pretext']}"
    if len(tied) > 1 and name != f"{best['backbone']}/{best['pretext']}":
        head = (f"{name} ties with the best linear-probe feature set {best['backbone']}/{best['pretext']} "
                f"({_fmt(top['linear_probe_acc'])} vs {_fmt(best['linear_probe_acc'])}: the 95% interval of the "
                f"paired per-draw differences contains 0) and is faster ({top['images_per_s']:.0f} vs "
                f"{best['images_per_s']:.0f} images/s), so it is recommended")
    elif len(tied) > 1:
        head = (f"{name} has the best linear-probe accuracy ({_fmt(top['linear_probe_acc'])}); "
                f"{len(tied) - 1} other feature sets tie with it within the 95% interval and are slower")
    else:
        head = (f"{name} has the best linear-probe accuracy ({_fmt(top['linear_probe_acc'])}) of the {len(fast)} "
                f"feature sets at or above {floor:g} images/s, ahead of every other beyond the 95% interval")
    slow = len(fs) - len(fast)
    if slow:
        head += f" ({slow} slower feature sets left out)"
    head += _knn_text(top, fast)
    text = f"{head}; {clusterer} has its best mean {by} ({_fmt(means.iloc[0])})"
    passed = ok[~ok.index.isin(rank.index)]
    passed = passed[pd.to_numeric(passed[by], errors="coerce") > means.iloc[0]]
    if len(passed):
        r = passed.sort_values(by, ascending=False).iloc[0]
        text += (f"; passed over {len(passed)} unrankable cells with a higher {by}, e.g. {r['backbone']}/"
                 f"{r['pretext']}/{r['clusterer']} ({_fmt(r[by])}): {r.get('rank_reason') or 'not rankable'}")
    return text


def _knn_text(top: pd.Series, fast: pd.DataFrame) -> str:
    """The kNN accuracy beside the probe: the chosen feature set's, and the best one's where that differs."""
    if pd.isna(top["knn_acc"]):
        return ""
    text = f"; its kNN accuracy is {_fmt(top['knn_acc'])}"
    best = fast.loc[fast["knn_acc"].idxmax()]
    if (best["backbone"], best["pretext"]) != (top["backbone"], top["pretext"]):
        text += f" (best kNN: {best['backbone']}/{best['pretext']}, {_fmt(best['knn_acc'])})"
    return text


def diff_runs(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per cell present in either run: each score in a, in b, and b - a."""
    keys = ["backbone", "init", "pretext", "clusterer", "seed"]
    a, b = with_init(a), with_init(b)  # runs before the init axis: init from weights
    a = a.assign(seed=pd.to_numeric(a["seed"], errors="coerce").fillna(0).astype(int))
    b = b.assign(seed=pd.to_numeric(b["seed"], errors="coerce").fillna(0).astype(int))
    diff = [c.name for c in columns.shown_in("diff")]
    left = a.reindex(columns=keys + diff + ["status"]).assign(_order_a=range(len(a)))
    right = b.reindex(columns=keys + diff + ["status"]).assign(_order_b=range(len(b)))
    m = left.merge(right, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    m = m.sort_values(["_order_a", "_order_b"], na_position="last").reset_index(drop=True)  # run a's grid order
    out = m[keys].copy()
    out["in"] = m["_merge"].map({"both": "both", "left_only": "a only", "right_only": "b only"}).astype(str)
    for s in diff:
        va = pd.to_numeric(m[f"{s}_a"], errors="coerce")
        vb = pd.to_numeric(m[f"{s}_b"], errors="coerce")
        out[f"d_{s}"] = vb - va
    out["status"] = m["status_a"].fillna("-").astype(str) + " -> " + m["status_b"].fillna("-").astype(str)
    return out
