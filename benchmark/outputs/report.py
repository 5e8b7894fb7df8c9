"""`report`: one self-contained report.html (pictures embedded) and report.md (pictures in report_files/)."""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.config.checks import check_writable_dir
from benchmark.driver.results import cell_id
from benchmark.driver.summary import SORT_RULE, leaderboard_header, summarize
from benchmark.outputs.init_compare import INIT_TEXT, init_table
from benchmark.outputs.run_folder import Run, load_run
from benchmark.scoring import columns
from benchmark.store.artifacts import RunFolder
from benchmark.store.files import atomic_write_text
from registry.backbones import backbone_info


def best_cells(df: pd.DataFrame, summary: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """The best ``n`` cells of distinct feature sets (backbone x init x pretext), rankable ones first, each at its
    first seed, from ``summarize(df)``: the projections and montages never show one feature set twice."""
    if summary.empty:
        return df.head(0)
    picked, seen = [], set()
    for _, r in summary.iterrows():
        if (r["backbone"], r["init"], r["pretext"]) in seen:
            continue
        seen.add((r["backbone"], r["init"], r["pretext"]))
        rows = df[(df["backbone"] == r["backbone"]) & (df["init"] == r["init"]) & (df["pretext"] == r["pretext"])
                  & (df["clusterer"] == r["clusterer"])].sort_values("seed")
        picked.append(rows.index[0])
        if len(picked) == n:
            break
    return df.loc[picked]


def summary_table(s: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard (``summarize``) as a table: one row per cell over seeds, mean [95% interval], ties,
    stability."""
    if s.empty:
        return s
    primary = s.attrs["primary"]
    out = pd.DataFrame({"#": range(1, len(s) + 1), "backbone": s["backbone"], "init": s["init"],
                        "pretext": s["pretext"],
                        "clusterer": s["clusterer"], "seeds": s["seeds"]})
    for col in dict.fromkeys([primary] + [c.name for c in columns.shown_in("leaderboard")]):
        if s[f"{col}_mean"].notna().any():
            out[col] = s[f"{col}_mean"].round(4)
            if s["seeds"].max() > 1:
                out[f"{col} 95%"] = [f"[{lo:.3f}, {hi:.3f}]" if not pd.isna(lo) else "-"
                                     for lo, hi in zip(s[f"{col}_lo"], s[f"{col}_hi"], strict=False)]
    out["probe"] = s["probe_pooled_mean"].round(4)
    out["knn"] = s["knn_pooled_mean"].round(4)
    out["clusters"] = s["n_clusters_mean"].round(1)
    out["noise"] = s["noise_fraction_mean"].round(3)
    out["stability"] = s["stability_mean"].round(3)
    out["images/s"] = s["images_per_s"].round(0)
    out["rankable"] = ["yes" if r else f"no: {why}" for r, why in zip(s["rankable"], s["rank_reason"], strict=False)]
    out["vs leader"] = s["tied_with_leader"].map({"leader": "leader", "tied": "tied", "no": ""}).fillna("")
    return out


def confusion_table(clusters: np.ndarray, labels: np.ndarray, class_names: list[str]) -> pd.DataFrame | None:
    """Cluster x class counts of the labeled images (None without labels); -1 is noise."""
    m = labels >= 0
    if not m.any():
        return None
    names = [class_names[i] if i < len(class_names) else str(i) for i in labels[m]]
    t = pd.crosstab(pd.Series(clusters[m], name="cluster"), pd.Series(names, name="label"))
    return t.reset_index()


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def heatmap_figs(df: pd.DataFrame) -> list[tuple[str, bytes]]:
    """Per clusterer: one heatmap per score over backbone (with its init where a backbone has several) x pretext."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    several = df.groupby("backbone")["init"].nunique() > 1
    df = df.assign(backbone=[f"{b} ({i})" if several.get(b, False) else b for b, i in zip(df["backbone"], df["init"],
                                                                                        strict=False)])
    for clusterer in df["clusterer"].unique():
        sub = df[df["clusterer"] == clusterer]
        scores = [(c.name, c.title) for c in columns.shown_in("heatmap")
                  if pd.to_numeric(sub.get(c.name), errors="coerce").notna().any()]
        if not scores:
            continue
        fig, axes = plt.subplots(1, len(scores), figsize=(3.6 * len(scores) + 2.5, 0.5 * sub["backbone"].nunique() + 2),
                                 sharey=True, squeeze=False)
        for n, (ax, (col, title)) in enumerate(zip(axes[0], scores, strict=False)):
            piv = sub.pivot_table(index="backbone", columns="pretext", values=col, aggfunc="first", sort=False)
            piv = piv.reindex(index=df["backbone"].unique(), columns=df["pretext"].unique())  # grid order
            vals = piv.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
            cmap = "viridis_r" if columns.column(col).better == "lower" else "viridis"
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
    perplexity = float(min(30, max(1, (len(idx) - 1) // 3), len(idx) - 1))  # t-SNE needs perplexity < n
    emb = TSNE(2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(x)
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


def k_curve_fig(df: pd.DataFrame, limit: int = 8) -> bytes | None:
    """Silhouette and stability against k for the cells that chose k (``--k auto``)."""
    import json

    import matplotlib.pyplot as plt

    curves = []
    for _, r in df.iterrows():
        try:
            params = json.loads(r["cluster_params"]) if isinstance(r["cluster_params"], str) else {}
        except ValueError:
            continue
        if params.get("k_curve"):
            curves.append((cell_id(r), params["k_curve"], params.get("k")))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    tab10: Any = plt.cm.tab10  # a ListedColormap: its ``colors`` are ten RGB tuples (the stub says Colormap)
    for (cid, curve, k), color in zip(curves[:limit], tab10.colors, strict=False):
        c = np.asarray(curve, float)
        ax.plot(c[:, 0], c[:, 1], "-o", color=color, ms=3, label=f"{cid} (k={k})")
        ax.plot(c[:, 0], c[:, 2], "--", color=color, alpha=0.6)
    ax.set_xlabel("k")
    ax.set_ylabel("silhouette / stability")
    ax.legend(fontsize=7)
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

    fs = df.drop_duplicates(["backbone", "init", "pretext"])

    computes = fs["backbone"].map(lambda b: backbone_info(b).trainable)
    fs = fs[pd.to_numeric(fs["images_per_s"], errors="coerce").notna() & computes]
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(fs), 3) + 1))
    names = [f"{b} / {i} / {p}" for b, i, p in zip(fs["backbone"], fs["init"], fs["pretext"], strict=False)]
    ax.barh(names, fs["images_per_s"].astype(float))
    ax.set_xlabel("feature extraction, images/s")
    ax.invert_yaxis()
    ax.set_title("throughput (parameter-free backbones left out: they do no compute)")
    return _png(fig)


@dataclass(frozen=True)
class Section:
    """One section of a report: a title, text, and a picture (PNG bytes) or a table where it has one."""

    title: str
    text: str = ""
    png: bytes | None = None
    table: pd.DataFrame | None = None


def _peaks(info: dict[str, Any]) -> str:
    """The peak anonymous memory of each stage's tasks (run.json), as one clause of the run's line."""
    peaks = info.get("peak_anon_mib") or {}
    if not isinstance(peaks, dict) or not peaks:
        return ""
    parts = [f"{k} {float(v):.0f}" for k, v in peaks.items() if isinstance(v, (int, float))]
    return f"; peak memory per stage (MiB, the task's process tree, anonymous): {', '.join(parts)}"


def build_sections(run: Run, n_best: int = 3) -> list[Section]:
    """The sections shared by the HTML and Markdown reports."""

    df = run.cells
    summary = summarize(df)
    secs: list[Section] = []
    cfg = run.info.get("config", {})
    env = run.info.get("environment", {})
    secs.append(Section("Run", f"data set {cfg.get('dataset')}, {run.info.get('n_images', '?')} images "
                 f"({run.info.get('n_labeled', '?')} labeled, {len(run.skipped)} skipped), image size "
                 f"{cfg.get('image_size')}, seeds {cfg.get('seeds', [cfg.get('seed')])}, device {env.get('device')} "
                 f"({run.info.get('runtime', '')}), wall {run.info.get('wall_s', 0):.0f} s, torch {env.get('torch')}, "
                 f"commit {str(env.get('git_commit'))[:10]}{_peaks(run.info)}", None, None))
    head = leaderboard_header(summary) if not summary.empty else "No finished cells."
    secs.append(Section("Leaderboard", f"{head} Sorted: {SORT_RULE}; click a column header to sort.", None,
                 summary_table(summary)))
    inits = init_table(summary)
    if inits is not None:
        secs.append(Section("Initialisation: pretrained vs scratch vs fine-tuned", INIT_TEXT, None, inits))
    for title, png in heatmap_figs(df):
        secs.append(Section(title, "", png, None))
    imgs = run.images()
    for _, cell in best_cells(df, summary, n_best).iterrows():
        cid = cell_id(cell)
        got = run.features(cell.get("feature_key"))
        clusters = run.clusters_of(cell)
        if got is None or clusters is None:
            secs.append(Section(f"Best cell {cid}", run.missing("features and assignments"), None, None))
            continue
        feats, _meta = got
        labels = imgs[1] if imgs is not None else np.full(len(clusters), -1)
        secs.append(Section(f"Projection: {cid}", "", projection_fig(feats, clusters, labels, cid), None))
        if imgs is not None:
            secs.append(Section(f"Montage: {cid}", "", montage_fig(imgs[0], clusters, cid), None))
        table = confusion_table(clusters, labels, run.class_names()) if imgs is not None else None
        if table is not None:
            secs.append(Section(f"Clusters x labels: {cid}", "Images per cluster (rows; -1 = noise) and label.", None,
                         table))
    kfig = k_curve_fig(df)
    if kfig is not None:
        secs.append(Section("Choosing k (--k auto)", "Silhouette (solid) and stability (dashed) per k for each cell "
                            "that chose its k; the chosen k is the best silhouette among k with stability >= 0.8.",
                            kfig, None))
    curves = {}
    for key, grp in df.groupby("feature_key", sort=False):
        meta = run.feature_meta(key)
        if meta and meta.get("step_losses"):
            curves[f"{grp.iloc[0]['backbone']}/{grp.iloc[0]['init']}/{grp.iloc[0]['pretext']}"] = meta["step_losses"]
    if curves:
        secs.append(Section("Pretext training curves", "", curves_fig(curves), None))
    secs.append(Section("Throughput", "", throughput_fig(df), None))
    if len(run.skipped):
        counts = run.skipped["reason"].str.split(":").str[0].value_counts()
        text = "\n".join(f"- {n} × {r}" for r, n in counts.items()) + "\n\nEvery file is listed in skipped.csv."
    else:
        text = "No file was skipped."
    secs.append(Section("Skipped files", text, None, None))
    return secs


def html_table(df: pd.DataFrame) -> str:
    """A sortable table (click a header), sticky header, numbers right-aligned; leader and ties marked."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        mark = str(r.get("vs leader", ""))
        cls = "leader" if mark == "leader" else "tied" if mark == "tied" else ""
        if str(r.get("rankable", "yes")).startswith("no"):
            cls = "unrankable"
        cells = []
        for v in r:
            num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            text = "-" if num and pd.isna(v) else str(v)
            cells.append(f'<td class="num" data-v="{text}">{text}</td>' if num else f"<td>{html.escape(text)}</td>")
        rows.append(f'<tr class="{cls}">{"".join(cells)}</tr>')
    return (f'<div class="tbl"><table class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def write_report(run_dir: Path, n_best: int = 3) -> tuple[Path, Path]:
    """Write report.html (self-contained) and report.md (+ report_files/*.png) into ``run_dir``."""
    run = load_run(run_dir)
    check_writable_dir(run_dir, "run folder")  # the report goes into it: said before the pictures are drawn
    return write_pages(run_dir, f"Report: {run_dir.name}", build_sections(run, n_best))


def write_pages(folder: Path, heading: str, secs: list[Section]) -> tuple[Path, Path]:
    """report.html (pictures embedded) and report.md (pictures in report_files/) of ``secs`` in ``folder``."""

    rf = RunFolder(folder)
    files = rf.report_files
    files.mkdir(parents=True, exist_ok=True)
    md = [f"# {heading}\n"]
    body = []
    for i, sec in enumerate(secs):
        title, text, png, table = sec.title, sec.text, sec.png, sec.table
        md.append(f"## {title}\n")
        body.append(f"<h2>{html.escape(title)}</h2>")
        if text:
            md.append(text + "\n")
            body.append(f"<pre>{html.escape(text)}</pre>")
        if table is not None:
            from tabulate import tabulate

            md.append(tabulate(table, headers="keys", tablefmt="github", showindex=False) + "\n")
            body.append(html_table(table))
        if png is not None:
            name = f"fig{i:02d}.png"
            (files / name).write_bytes(png)
            md.append(f"![{title}](report_files/{name})\n")
            b64 = base64.b64encode(png).decode()
            body.append(f'<img alt="{html.escape(title)}" src="data:image/png;base64,{b64}">')
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(heading)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}pre{{font-size:12px;overflow-x:auto}}
img{{max-width:100%;display:block;margin:1em 0}}
.tbl{{max-height:70vh;overflow:auto;margin:1em 0}}table{{border-collapse:collapse;font-size:12px}}
th,td{{border-bottom:1px solid #ddd;padding:3px 8px;white-space:nowrap}}
th{{position:sticky;top:0;background:#f4f4f4;cursor:pointer}}\
td.num{{text-align:right;font-variant-numeric:tabular-nums}}
tr.tied td{{background:#fff7d6}}tr.leader td{{background:#e3f4e3;font-weight:bold}}\
tr.unrankable td{{color:#999}}</style></head>
<body><h1>{html.escape(heading)}</h1>
{''.join(body)}
<script>document.querySelectorAll('table.sortable th').forEach((th,col)=>th.addEventListener('click',()=>{{
const body=th.closest('table').tBodies[0];const up=th.dataset.dir!=='asc';th.dataset.dir=up?'asc':'desc';
const key=r=>{{const t=r.cells[col].dataset.v??r.cells[col].textContent;const n=parseFloat(t);return isNaN(n)?t:n;}};
[...body.rows].sort((a,b)=>{{const x=key(a),y=key(b);return (x>y?1:x<y?-1:0)*(up?1:-1);}})\
.forEach(r=>body.appendChild(r));}}));
window.addEventListener('load',()=>{{const i=[...document.images];
document.body.dataset.imagesTotal=i.length;
document.body.dataset.imagesOk=i.filter(x=>x.complete&&x.naturalWidth>0).length;}});</script>
</body></html>"""
    atomic_write_text(rf.report_html, page)
    atomic_write_text(rf.report_md, "\n".join(md))
    return rf.report_html, rf.report_md
