"""Collect the per-stage runs of run.sh into summary.csv and a Markdown table (printed)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.driver.summary import summarize

HERE = Path(__file__).parent
rows = []
for layer in ("blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6", "last"):
    cells = pd.read_csv(HERE / layer / "cells.csv")
    s = summarize(cells)
    for _, r in s.iterrows():
        if r["backbone"] == "raw_pixels" and layer != "last":
            continue
        rows.append({"features": "raw pixels" if r["backbone"] == "raw_pixels" else layer,
                     "dim": int(cells[cells.backbone == r["backbone"]]["feature_dim"].iloc[0]),
                     "nmi": r["nmi_mean"], "nmi_lo": r["nmi_lo"], "nmi_hi": r["nmi_hi"],
                     "probe": r["probe_pooled_mean"], "probe_lo": r["probe_pooled_lo"],
                     "probe_hi": r["probe_pooled_hi"], "knn": r["knn_pooled_mean"]})
df = pd.DataFrame(rows)
df.to_csv(HERE / "summary.csv", index=False, float_format="%.4f")
for _, r in df.iterrows():
    print(f"| {r['features']} | {r['dim']} | {r['nmi']:.3f} [{r['nmi_lo']:.3f}, {r['nmi_hi']:.3f}] | "
          f"{r['probe']:.3f} [{r['probe_lo']:.3f}, {r['probe_hi']:.3f}] | {r['knn']:.3f} |")
