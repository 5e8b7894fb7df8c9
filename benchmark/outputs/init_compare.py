"""The init dimension of a report: per backbone with more than one init, pretrained vs scratch vs fine-tuned.

Each row is one feature set (backbone x init x pretext) and clusterer of ``summarize``: its role (``scratch``:
random init, no pretext; ``scratch + <pretext>``; ``pretrained``: ImageNet or a checkpoint, no pretext;
``fine-tuned with <pretext>``), the ranking score and the pooled probe accuracy with their 95% intervals."""
from __future__ import annotations

import pandas as pd


def role(init: str, pretext: str) -> str:
    """What a feature set is: scratch, scratch + pretext, pretrained, fine-tuned with pretext, raw (no weights)."""
    start = "scratch" if init == "random" else ("raw" if init == "none" else "pretrained")
    if pretext == "none" or start == "raw":
        return start
    return f"scratch + {pretext}" if start == "scratch" else f"fine-tuned with {pretext}"


def _ci(m: float, lo: float, hi: float, seeds: int) -> str:
    if pd.isna(m):
        return "-"
    return f"{m:.3f}" if seeds < 2 or pd.isna(lo) else f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


def init_table(summary: pd.DataFrame) -> pd.DataFrame | None:
    """The comparison table (None when no backbone of the run has two inits)."""
    if summary.empty or "init" not in summary:
        return None
    several = [b for b, g in summary.groupby("backbone", sort=False) if g["init"].nunique() > 1]
    if not several:
        return None
    primary = summary.attrs.get("primary", "nmi")
    rows = []
    for b in several:
        g = summary[summary["backbone"] == b].sort_values(["clusterer", "init", "pretext"], kind="stable")
        for _, r in g.iterrows():
            rows.append({"backbone": b, "init": r["init"], "pretext": r["pretext"],
                         "role": role(r["init"], r["pretext"]),
                         "clusterer": r["clusterer"], "seeds": int(r["seeds"]),
                         primary: _ci(r[f"{primary}_mean"], r[f"{primary}_lo"], r[f"{primary}_hi"], int(r["seeds"])),
                         "probe": _ci(r["probe_pooled_mean"], r["probe_pooled_lo"], r["probe_pooled_hi"],
                                      int(r["seeds"])),
                         "weights": r.get("weights", "")})
    return pd.DataFrame(rows)


INIT_TEXT = ("Where training starts, per backbone with more than one init: scratch (random init), scratch + a pretext, "
             "pretrained (ImageNet or a checkpoint, used as it is) and fine-tuned (pretrained, then the pretext); "
             "mean [95% interval] over the seeds (the probe pooled over seeds x draws).")
