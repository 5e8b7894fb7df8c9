"""`recommend` (the production recipe by a stated rule, with the quality-vs-throughput Pareto front) and
`diff` (per-cell score changes between two runs)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from benchmark.interfaces import BadInput

RULE = ("among cells with status ok whose feature extraction reaches the throughput floor, take the feature "
        "set (backbone x pretext) with the best linear-probe accuracy; within it, the clusterer with the best "
        "NMI where labels exist, else the best silhouette; ties go to the faster feature set")
DIFF_SCORES = ["nmi", "ari", "cluster_acc", "silhouette", "davies_bouldin", "linear_probe_acc", "images_per_s"]


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
    """Apply RULE. Raises ValueError when no cell qualifies."""
    ok = cells[cells["status"] == "ok"].copy()
    for c in ("linear_probe_acc", "images_per_s", "nmi", "silhouette"):
        ok[c] = pd.to_numeric(ok[c], errors="coerce")
    if ok.empty:
        raise BadInput("no cell with status ok to recommend")
    fs = ok.drop_duplicates(["backbone", "pretext"])[["backbone", "pretext", "weights", "linear_probe_acc",
                                                      "images_per_s"]]
    fast = fs[fs["images_per_s"].fillna(0) >= min_throughput]
    if fast.empty:
        raise BadInput(f"no feature set reaches {min_throughput:g} images/s; the fastest does "
                         f"{fs['images_per_s'].max():.1f}")
    fast = fast.sort_values(["linear_probe_acc", "images_per_s"], ascending=[False, False], na_position="last")
    top = fast.iloc[0]
    cand = ok[(ok["backbone"] == top["backbone"]) & (ok["pretext"] == top["pretext"])]
    by = "nmi" if cand["nmi"].notna().any() else "silhouette"
    cell = cand.sort_values(by, ascending=False, na_position="last").iloc[0]
    others = len(fs) - len(fast)
    why = (f"{top['backbone']}/{top['pretext']} has the best linear-probe accuracy "
           f"({top['linear_probe_acc']:.3f}) of the {len(fast)} feature sets at or above {min_throughput:g} images/s"
           + (f" ({others} slower ones left out)" if others else "")
           + f"; {cell['clusterer']} has its best {by} ({cell[by]:.3f}); extraction runs at "
           f"{top['images_per_s']:.0f} images/s")
    return Recommendation(cell, why, pareto_front(fs))


def diff_runs(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per cell present in either run: each score in a, in b, and b - a."""
    keys = ["backbone", "pretext", "clusterer", "seed"]
    a = a.assign(seed=pd.to_numeric(a["seed"], errors="coerce").fillna(0).astype(int))
    b = b.assign(seed=pd.to_numeric(b["seed"], errors="coerce").fillna(0).astype(int))
    left = a[keys + DIFF_SCORES + ["status"]].assign(_order_a=range(len(a)))
    right = b[keys + DIFF_SCORES + ["status"]].assign(_order_b=range(len(b)))
    m = left.merge(right, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    m = m.sort_values(["_order_a", "_order_b"], na_position="last").reset_index(drop=True)  # run a's grid order
    out = m[keys].copy()
    out["in"] = m["_merge"].map({"both": "both", "left_only": "a only", "right_only": "b only"}).astype(str)
    for s in DIFF_SCORES:
        va = pd.to_numeric(m[f"{s}_a"], errors="coerce")
        vb = pd.to_numeric(m[f"{s}_b"], errors="coerce")
        out[f"d_{s}"] = vb - va
    out["status"] = m["status_a"].fillna("-").astype(str) + " -> " + m["status_b"].fillna("-").astype(str)
    return out
