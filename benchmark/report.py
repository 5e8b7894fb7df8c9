"""`report`: one self-contained report.html (pictures embedded) and report.md (pictures in report_files/)."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.results import SORT_RULE, cell_id, leaderboard, sort_cells
from benchmark.runs import Run, load_run
from benchmark.storage import atomic_write_text

SCORES = [("nmi", "NMI (higher is better)"), ("silhouette", "silhouette (higher is better)"),
          ("davies_bouldin", "Davies-Bouldin (lower is better)"), ("linear_probe_acc", "linear probe accuracy")]


def best_cells(df: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    ok = df[df["status"].isin(["ok", "degenerate"])]
    return sort_cells(ok).head(n)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def heatmap_figs(df: pd.DataFrame) -> list[tuple[str, bytes]]:
    """Per clusterer: one heatmap per score over backbone x pretext."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    for clusterer in df["clusterer"].unique():
        sub = df[df["clusterer"] == clusterer]
        scores = [(c, t) for c, t in SCORES if pd.to_numeric(sub[c], errors="coerce").notna().any()]
        if not scores:
            continue
        fig, axes = plt.subplots(1, len(scores), figsize=(3.6 * len(scores) + 2.5, 0.5 * sub["backbone"].nunique() + 2),
                                 sharey=True, squeeze=False)
        for n, (ax, (col, title)) in enumerate(zip(axes[0], scores)):
            piv = sub.pivot_table(index="backbone", columns="pretext", values=col, aggfunc="first", sort=False)
            piv = piv.reindex(index=df["backbone"].unique(), columns=df["pretext"].unique())  # grid order
            vals = piv.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
            cmap = "viridis_r" if col == "davies_bouldin" else "viridis"
            ax.imshow(np.ma.masked_invalid(vals), cmap=cmap, aspect="auto")
            ax.set_xticks(range(piv.shape[1]), piv.columns, rotation=30, ha="right")
            if n == 0:
                ax.set_yticks(range(piv.shape[0]), piv.index)
            else:
                ax.tick_params(labelleft=False)
            for (i, j), v in np.ndenumerate(vals):
                ax.text(j, i, "-" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", color="w", fontsize=8)
            ax.set_title(title, fontsize=9)
        fig.suptitle(f"clusterer: {clusterer}")
        out.append((f"Scores over backbone x pretext, {clusterer}", _png(fig)))
    return out


def projection_fig(feats: np.ndarray, clusters: np.ndarray, labels: np.ndarray, title: str, seed: int = 0) -> bytes:
    """t-SNE of (a seeded sample of at most 1,000) features, coloured by cluster and by label."""
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(feats))[:1000])
    x = StandardScaler().fit_transform(feats[idx])
    if x.shape[1] > 50:
        x = PCA(min(50, x.shape[0]), random_state=seed).fit_transform(x)
    emb = TSNE(2, init="pca", random_state=seed, perplexity=float(min(30, max(2, (len(idx) - 1) // 3)))).fit_transform(x)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, colours, name in ((axes[0], clusters[idx], "cluster (-1 = noise, grey)"), (axes[1], labels[idx], "label")):
        noise = colours < 0
        ax.scatter(emb[noise, 0], emb[noise, 1], s=4, c="lightgrey")
        ax.scatter(emb[~noise, 0], emb[~noise, 1], s=4, c=colours[~noise], cmap="tab20")
        ax.set_title(f"coloured by {name}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"t-SNE of {title}")
    return _png(fig)


def montage_fig(images: np.ndarray, clusters: np.ndarray, title: str, per_cluster: int = 10,
                max_clusters: int = 12, seed: int = 0) -> bytes:
    """A row of sample images per cluster (largest clusters first; noise last)."""
    import matplotlib.pyplot as plt

    ids, counts = np.unique(clusters, return_counts=True)
    order = [c for c in ids[np.argsort(-counts)] if c >= 0][:max_clusters] + ([-1] if -1 in ids else [])
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(order), per_cluster, figsize=(per_cluster * 0.9, len(order) * 0.95), squeeze=False)
    for r, c in enumerate(order):
        members = np.flatnonzero(clusters == c)
        pick = rng.permutation(members)[:per_cluster]
        for j in range(per_cluster):
            ax = axes[r, j]
            ax.axis("off")
            if j < len(pick):
                ax.imshow(images[pick[j]].transpose(1, 2, 0))
        axes[r, 0].set_title(f"{'noise' if c < 0 else f'cluster {c}'} ({len(members)})", fontsize=7, loc="left")
    fig.suptitle(f"samples per cluster: {title}", fontsize=9)
    return _png(fig)


def curves_fig(curves: dict[str, list[float]]) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, losses in curves.items():
        y = np.asarray(losses, float)
        w = max(1, len(y) // 20)
        smooth = np.convolve(y, np.ones(w) / w, mode="valid")
        ax.plot(smooth / (y[0] if y[0] else 1), label=name, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss / first-step loss (smoothed)")
    ax.legend(fontsize=7)
    ax.set_title("pretext training curves")
    return _png(fig)


def throughput_fig(df: pd.DataFrame) -> bytes:
    import matplotlib.pyplot as plt

    fs = df.drop_duplicates(["backbone", "pretext"])
    from registry.backbones import backbone_info

    computes = fs["backbone"].map(lambda b: backbone_info(b).trainable)
    fs = fs[pd.to_numeric(fs["images_per_s"], errors="coerce").notna() & computes]
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(fs), 3) + 1))
    names = [f"{b} / {p}" for b, p in zip(fs["backbone"], fs["pretext"])]
    ax.barh(names, fs["images_per_s"].astype(float))
    ax.set_xlabel("feature extraction, images/s")
    ax.invert_yaxis()
    ax.set_title("throughput (parameter-free backbones left out: they do no compute)")
    return _png(fig)


def build_sections(run: Run, n_best: int = 3) -> list[tuple[str, str, bytes | None]]:
    """(title, text, png or None) sections shared by the HTML and Markdown reports."""
    df = run.cells
    secs: list[tuple[str, str, bytes | None]] = []
    cfg = run.info.get("config", {})
    env = run.info.get("environment", {})
    secs.append(("Run", f"data set {cfg.get('dataset')}, {run.info.get('n_images', '?')} images "
                 f"({run.info.get('n_labeled', '?')} labeled, {len(run.skipped)} skipped), image size "
                 f"{cfg.get('image_size')}, seeds {cfg.get('seeds', [cfg.get('seed')])}, device {env.get('device')} "
                 f"({run.info.get('runtime', '')}), wall {run.info.get('wall_s', 0):.0f} s, torch {env.get('torch')}, "
                 f"commit {str(env.get('git_commit'))[:10]}", None))
    secs.append(("Leaderboard", f"Sorted by: {SORT_RULE}.\n\n" + leaderboard(df.to_dict("records")), None))
    for title, png in heatmap_figs(df):
        secs.append((title, "", png))
    imgs = run.images()
    for _, cell in best_cells(df, n_best).iterrows():
        cid = cell_id(cell)
        got = run.features(cell.get("feature_key"))
        clusters = run.clusters_of(cell)
        if got is None or clusters is None:
            secs.append((f"Best cell {cid}", run.missing("features and assignments"), None))
            continue
        feats, _meta = got
        labels = imgs[1] if imgs is not None else np.full(len(clusters), -1)
        secs.append((f"Projection: {cid}", "", projection_fig(feats, clusters, labels, cid)))
        if imgs is not None:
            secs.append((f"Montage: {cid}", "", montage_fig(imgs[0], clusters, cid)))
    curves = {}
    for key, grp in df.groupby("feature_key", sort=False):
        meta = run.feature_meta(key)
        if meta and meta.get("step_losses"):
            curves[f"{grp.iloc[0]['backbone']}/{grp.iloc[0]['pretext']}"] = meta["step_losses"]
    if curves:
        secs.append(("Pretext training curves", "", curves_fig(curves)))
    secs.append(("Throughput", "", throughput_fig(df)))
    if len(run.skipped):
        counts = run.skipped["reason"].str.split(":").str[0].value_counts()
        text = "\n".join(f"- {n} × {r}" for r, n in counts.items()) + "\n\nEvery file is listed in skipped.csv."
    else:
        text = "No file was skipped."
    secs.append(("Skipped files", text, None))
    return secs


def write_report(run_dir: Path, n_best: int = 3) -> tuple[Path, Path]:
    """Write report.html (self-contained) and report.md (+ report_files/*.png) into ``run_dir``."""
    run = load_run(run_dir)
    secs = build_sections(run, n_best)
    files = run.folder.report_files
    files.mkdir(exist_ok=True)
    md = [f"# Report: {run_dir.name}\n"]
    body = []
    for i, (title, text, png) in enumerate(secs):
        md.append(f"## {title}\n")
        body.append(f"<h2>{html.escape(title)}</h2>")
        if text:
            md.append(text + "\n")
            body.append(f"<pre>{html.escape(text)}</pre>")
        if png is not None:
            name = f"fig{i:02d}.png"
            (files / name).write_bytes(png)
            md.append(f"![{title}](report_files/{name})\n")
            b64 = base64.b64encode(png).decode()
            body.append(f'<img alt="{html.escape(title)}" src="data:image/png;base64,{b64}">')
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Report {html.escape(run_dir.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}pre{{font-size:12px;overflow-x:auto}}
img{{max-width:100%;display:block;margin:1em 0}}</style></head>
<body><h1>Report: {html.escape(run_dir.name)}</h1>
{''.join(body)}
<script>window.addEventListener('load',()=>{{const i=[...document.images];
document.body.dataset.imagesTotal=i.length;
document.body.dataset.imagesOk=i.filter(x=>x.complete&&x.naturalWidth>0).length;}});</script>
</body></html>"""
    atomic_write_text(run.folder.report_html, page)
    atomic_write_text(run.folder.report_md, "\n".join(md))
    return run.folder.report_html, run.folder.report_md
