"""`export` a cell as a production recipe, and `predict` new photos with it.

An export folder holds: manifest.json (what, versions, scores, thresholds), backbone.pt (a state_dict, read
with ``weights_only=True``), preprocess.npz (standardization, and PCA for density clusterers) and the
clusterer: centroids.npz (k-means types), core.npz (DBSCAN: core points and eps) or hdbscan.pkl (HDBSCAN's
own approximate_predict; a pickle: load only exports you made)."""
from __future__ import annotations

import json
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.images import decode_many
from benchmark.recommend import recommend
from benchmark.reduce import Reduction, fit_reduction
from benchmark.report import load_run
from benchmark.results import environment
from benchmark.runtime import detect_runtime
from benchmark.specs import ClusterSpec
from benchmark.storage import atomic_write_bytes, write_json
from benchmark.train import extract_features
from registry.backbones import WeightsRequest, build_backbone
from registry.base import unknown_message
from registry.clusterers import build_clusterer
from registry.datasets import IMAGE_EXTENSIONS, list_images
from registry.pretexts import build_pretext


def export_cell(run_dir: Path, to: Path, cell: str | None = None) -> dict[str, Any]:
    """Write the recipe of ``cell`` ("backbone/pretext/clusterer"; default: the recommended one) to ``to``."""
    run = load_run(run_dir)
    df = run.cells
    ids = [f"{b}/{p}/{c}" for b, p, c in zip(df["backbone"], df["pretext"], df["clusterer"])]
    if cell is None:
        row = recommend(df).cell
    else:
        if cell not in ids:
            raise ValueError(unknown_message("cell", cell, ids))
        row = df.iloc[ids.index(cell)]
    cid = f"{row['backbone']}/{row['pretext']}/{row['clusterer']}"
    if row["status"] not in ("ok", "degenerate"):
        raise ValueError(f"bad cell {cid!r}: its status is {row['status']} ({row['error']}); export a finished cell")
    cfg = run.info["config"]
    got = run.features(row["feature_key"])
    if got is None:
        raise ValueError(f"the features of {cid} are not in the cache {run.cache} any more: re-run the grid first")
    feats, meta = got
    to.mkdir(parents=True, exist_ok=True)
    state_path = run.cache / "features" / f"{row['feature_key']}.pt"
    has_weights = state_path.is_file()
    if row["backbone"] != "raw_pixels":
        if not has_weights:
            raise ValueError(f"the trained weights of {cid} are not in the cache any more: re-run the grid first")
        atomic_write_bytes(to / "backbone.pt", state_path.read_bytes())
    cspec = ClusterSpec(**cfg["cluster"])
    k = int(run.info.get("k") or cspec.k or 2)
    clusterer = build_clusterer(row["clusterer"], k, cspec, int(cfg["seed"]))
    red, X, Xc = fit_reduction(feats, clusterer.density, cspec.density_dims, int(cfg["seed"]))
    np.savez(to / "preprocess.npz", **red.arrays())
    labels = clusterer.fit_predict(Xc)
    assign = run.assignments()
    same = bool(assign is not None and cid in assign and np.array_equal(assign[cid].to_numpy(), labels))
    extra: dict[str, Any] = {}
    if clusterer.uses_k:
        centroids = clusterer.centroids if hasattr(clusterer, "centroids") else clusterer.model.cluster_centers_
        dist = np.linalg.norm(Xc - centroids[labels], axis=1)
        np.savez(to / "centroids.npz", centroids=centroids)
        extra["outlier_distance"] = float(dist.max())  # farther than every training image -> -1
    elif row["clusterer"] == "dbscan":
        core = labels >= 0
        np.savez(to / "core.npz", points=Xc[core], labels=labels[core])
        extra["eps"] = float(clusterer.params["eps"])
    else:
        atomic_write_bytes(to / "hdbscan.pkl", pickle.dumps(clusterer.model))
    manifest = {
        "cell": cid, "backbone": row["backbone"], "pretext": row["pretext"], "clusterer": row["clusterer"],
        "weights": row["weights"], "image_size": int(cfg["image_size"]), "seed": int(cfg["seed"]),
        "feature_dim": int(feats.shape[1]), "k": k, "cluster_params": clusterer.params,
        "preprocess": {"resize": "whole image, bilinear, no crop", "exif_orientation": True,
                       "input": "lab_L" if row["pretext"] == "colorization" else "rgb_imagenet_normalized",
                       "standardize": True, "pca_dims": None if red.pca_components is None else int(Xc.shape[1])},
        "scores": {s: (None if row[s] is None or (isinstance(row[s], float) and np.isnan(row[s])) else row[s])
                   for s in ("nmi", "ari", "silhouette", "davies_bouldin", "linear_probe_acc", "images_per_s")},
        "labels_match_run": same, "source_run": str(run_dir), "environment": environment("cpu"), **extra,
        "pretext_options": cfg.get("pretext_opts", {}), "n_training_images": int(feats.shape[0]),
    }
    write_json(to / "manifest.json", manifest)
    return manifest


def _assign(folder: Path, manifest: dict[str, Any], X: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    with np.load(folder / "preprocess.npz") as pre:
        red = Reduction.from_arrays(dict(pre))
    Xs = red.cluster_space(red.standardize(X))
    if (folder / "centroids.npz").is_file():
        c = np.load(folder / "centroids.npz")["centroids"]
        d2 = (Xs ** 2).sum(1)[:, None] - 2 * Xs @ c.T + (c ** 2).sum(1)[None, :]
        lab = d2.argmin(1)
        dist = np.sqrt(np.maximum(d2[np.arange(len(lab)), lab], 0))
        lab = np.where(dist > manifest["outlier_distance"] * (1 + 1e-6), -1, lab)
        return lab.astype(np.int64), dist, "distance"
    if (folder / "core.npz").is_file():
        core = np.load(folder / "core.npz")
        from sklearn.neighbors import NearestNeighbors

        dist, idx = NearestNeighbors(n_neighbors=1).fit(core["points"]).kneighbors(Xs)
        lab = np.where(dist[:, 0] <= manifest["eps"], core["labels"][idx[:, 0]], -1)
        return lab.astype(np.int64), dist[:, 0], "distance"
    import hdbscan

    model = pickle.loads((folder / "hdbscan.pkl").read_bytes())
    lab, strength = hdbscan.approximate_predict(model, Xs.astype(np.float64))
    return np.asarray(lab, np.int64), np.asarray(strength), "confidence"


def predict(folder: Path, images: Path, out: Path, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Assign every image under ``images`` (a folder or one file) to the exported clusters; write ``out``."""
    if not (folder / "manifest.json").is_file():
        raise ValueError(f"bad export folder {str(folder)!r}: no manifest.json in it")
    manifest = json.loads((folder / "manifest.json").read_text())
    if images.is_dir():
        root, paths = images, list_images(images)
    elif images.is_file() and images.suffix.lower() in IMAGE_EXTENSIONS:
        root, paths = images.parent, [images]
    else:
        raise ValueError(f"bad images {str(images)!r}: give a folder or an image file ({', '.join(IMAGE_EXTENSIONS)})")
    t0 = time.perf_counter()
    size = int(manifest["image_size"])
    arr, kept, skipped, _gray = decode_many(paths, size, root, progress=progress)
    if not kept:
        raise ValueError(f"bad images {str(images)!r}: no decodable image among {len(paths)} files")
    rt = detect_runtime(device)
    torch.manual_seed(int(manifest["seed"]))
    backbone = build_backbone(manifest["backbone"], size, WeightsRequest(use_cache=False))
    if (folder / "backbone.pt").is_file():
        backbone.load_state_dict(torch.load(folder / "backbone.pt", map_location="cpu", weights_only=True))
    task = build_pretext(manifest["pretext"])
    feats, _ = extract_features(backbone, arr, rt, batch_size=128, progress=progress, pretext=task)
    labels, score, score_name = _assign(folder, manifest, feats)
    secs = time.perf_counter() - t0
    import pandas as pd

    df = pd.DataFrame({"path": [paths[i].relative_to(root).as_posix() for i in kept], "cluster": labels,
                       score_name: score})
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    if skipped:
        pd.DataFrame(skipped, columns=["path", "reason"]).to_csv(out.with_suffix(".skipped.csv"), index=False)
    return {"n": len(kept), "skipped": len(skipped), "seconds": secs, "images_per_s": len(kept) / secs,
            "outliers": int((labels < 0).sum()), "clusters": int(len(set(labels.tolist()) - {-1}))}
