"""The grid runner: image store -> (backbone x pretext) feature sets -> (feature set x clusterer) cells.

Every expensive stage is cached by content key; cells.csv is rewritten atomically after each cell, so a
run that dies loses nothing already computed, and ``--resume`` skips finished cells."""
from __future__ import annotations

import json
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.images import ImageSet, cached_image_set
from benchmark.metrics import external_scores, internal_scores
from benchmark.probe import linear_probe
from benchmark.reduce import fit_reduction
from benchmark.results import (COLUMNS, COPY_NOTE, SORT_RULE, cell_id, environment, read_assignments, read_cells,
                               write_assignments, write_cells, write_skipped)
from benchmark.runtime import Runtime, describe_device, detect_runtime
from benchmark.specs import GridSpec, stable_hash
from benchmark.storage import load_arrays, read_json, save_arrays, save_state, write_json
from benchmark.train import extract_features, train_pretext
from registry.backbones import WeightsRequest, build_backbone
from registry.clusterers import build_clusterer
from registry.datasets import resolve_dataset
from registry.pretexts import build_pretext

FEATURE_VERSION = 2  # 2: extraction in channels_last on the CPU too
CELL_VERSION = 3  # bump when clustering or scoring changes, so cached cells are not reused


@dataclass
class RunStats:
    """What a run computed (vs. read from caches) and how long each stage took, in seconds."""

    decoded: int = 0
    trained: int = 0
    extracted: int = 0
    clustered: int = 0
    resumed_cells: int = 0
    stage_s: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in
                                                               ("decode", "train", "extract", "probe", "cluster", "score")})


@dataclass
class FeatureSet:
    backbone: str
    pretext: str
    weights: str
    key: str
    feats: np.ndarray | None
    meta: dict[str, Any]
    status: str = "ok"  # ok / failed / skipped
    error: str = ""


@dataclass
class RunResult:
    out: Path
    rows: list[dict[str, Any]]
    stats: RunStats
    images: ImageSet
    wall_s: float


def _feature_set(spec: GridSpec, images: ImageSet, backbone_name: str, pretext_name: str, rt: Runtime,
                 cache_dir: Path, stats: RunStats, progress: bool) -> FeatureSet:
    """Train (if the pretext trains), extract and probe one backbone x pretext, or read it from the cache."""
    pretext = build_pretext(pretext_name, spec.pretext_opts)
    torch.manual_seed(spec.seed)  # random init is part of the seeded recipe
    backbone = build_backbone(backbone_name, spec.image_size, WeightsRequest(path=spec.weights))
    reason = pretext.not_applicable(images.grayscale)
    if reason:
        return FeatureSet(backbone_name, pretext_name, backbone.weights, "", None, {"notes": reason}, "skipped", reason)
    notes = ""
    if pretext.trains and not backbone.trainable:  # raw pixels: no parameters, the pretext changes nothing
        notes = f"{pretext_name} has nothing to train in {backbone_name}; {COPY_NOTE}"
        pretext = build_pretext("none", spec.pretext_opts)
    train_cfg = [asdict(spec.train), asdict(spec.pretext_opts)] if pretext.trains else None
    key = stable_hash(["features", FEATURE_VERSION, images.key, backbone_name, backbone.weights,
                       file_digest(spec.weights) if spec.weights else None, pretext.name, train_cfg, spec.seed,
                       asdict(spec.probe)])
    path = cache_dir / "features" / f"{key}.npz"
    cached = load_arrays(path)
    if cached is not None:
        meta = json.loads(str(cached["meta"]))
        meta["notes"] = notes
        return FeatureSet(backbone_name, pretext_name, backbone.weights, key, cached["feats"], meta)
    meta: dict[str, Any] = {"pretext_loss": None, "pretext_acc": None, "train_s": 0.0, "step_losses": []}
    if pretext.trains:
        result, _head = train_pretext(backbone, pretext, images.images, spec.train, rt, spec.seed, progress)
        stats.trained += 1
        stats.stage_s["train"] += result.seconds
        meta.update(pretext_loss=result.final_loss, pretext_acc=result.final_acc, train_s=result.seconds,
                    step_losses=result.step_losses, epoch_losses=result.epoch_losses, steps=result.steps)
    feats, ext_s = extract_features(backbone, images.images, rt, batch_size=max(spec.train.batch_size, 128),
                                    progress=progress, pretext=pretext)
    stats.extracted += 1
    stats.stage_s["extract"] += ext_s
    if not np.isfinite(feats).all():
        raise RuntimeError(f"{backbone_name}/{pretext_name}: features contain NaN or inf")
    t0 = time.perf_counter()
    probe = linear_probe(feats, images.labels, spec.probe, spec.seed)
    stats.stage_s["probe"] += time.perf_counter() - t0
    meta.update(extract_s=ext_s, images_per_s=images.n / ext_s if ext_s > 0 else None,
                probe_acc=probe.mean, probe_std=probe.std, probe_k=probe.k_per_class, probe_c=probe.chosen_c,
                probe_reason=probe.reason, feature_dim=int(feats.shape[1]))
    if backbone.trainable:  # the weights behind these features, for `export` (loaded with weights_only=True)
        save_state(cache_dir / "features" / f"{key}.pt", backbone)
    save_arrays(path, feats=feats, meta=np.array(json.dumps(meta)))
    meta["notes"] = notes
    return FeatureSet(backbone_name, pretext_name, backbone.weights, key, feats, meta)


def file_digest(path: str) -> str:
    """Content hash of a checkpoint, so two files with one name never share a cache entry."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _warn_small_classes(images: ImageSet, k: int) -> None:
    """The probe needs k labeled images per class plus one to test on; say which classes fall short."""
    names, counts = np.unique(images.labels[images.labels >= 0], return_counts=True)
    short = [f"{images.class_names[c]} ({n})" for c, n in zip(names, counts) if n < k + 1]
    if short:
        warnings.warn(f"labels: {len(short)} classes have fewer than {k + 1} labeled images, e.g. {short[0]}; "
                      f"the probe uses k = {max(int(counts.min()) - 1, 0)} per class")


def _n_clusters(spec: GridSpec, images: ImageSet) -> int:
    if spec.cluster.k is not None:
        return spec.cluster.k
    if images.n_classes >= 2:
        return images.n_classes
    raise ValueError("no labels to take the number of clusters from: pass --k")


def _cell(spec: GridSpec, images: ImageSet, fs: FeatureSet, clusterer_name: str, k: int, rt: Runtime,
          cache_dir: Path, stats: RunStats) -> tuple[dict[str, Any], np.ndarray | None]:
    """Cluster one feature set and score it. Returns (row, assignments)."""
    row = _base_row(spec, images, fs, clusterer_name)
    if fs.status != "ok":
        row.update(status=fs.status, error=fs.error)
        return row, None
    key = stable_hash(["cell", CELL_VERSION, fs.key, clusterer_name, k, asdict(spec.cluster), spec.seed])
    path = cache_dir / "cells" / f"{key}.npz"
    cached = load_arrays(path)
    if cached is not None:
        row.update(json.loads(str(cached["row"])))
        return row, cached["assign"]
    try:
        clusterer = build_clusterer(clusterer_name, k, spec.cluster, spec.seed, use_gpu=rt.device == "cuda")
        _red, X, Xc = fit_reduction(fs.feats, clusterer.density, spec.cluster.density_dims, spec.seed)
        t0 = time.perf_counter()
        assign = clusterer.fit_predict(Xc)
        cluster_s = time.perf_counter() - t0
        stats.clustered += 1
        stats.stage_s["cluster"] += cluster_s
        t0 = time.perf_counter()
        inner = internal_scores(X, assign, spec.cluster.silhouette_max_n, spec.seed, device=rt.device)
        outer = external_scores(images.labels, assign)
        stats.stage_s["score"] += time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001  a failing cell is recorded, the others go on
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
        return row, None
    params = dict(clusterer.params)
    if Xc is not X:
        params["pca_dims"] = int(Xc.shape[1])
    found = dict(n_clusters=inner.n_clusters, noise_fraction=inner.noise_fraction, silhouette=inner.silhouette,
                 davies_bouldin=inner.davies_bouldin, calinski_harabasz=inner.calinski_harabasz,
                 silhouette_sample=inner.silhouette_sample, cluster_s=cluster_s,
                 cluster_params=json.dumps(params, sort_keys=True),
                 status="ok" if not inner.reason else "degenerate", error=inner.reason)
    if outer is not None:
        found.update(nmi=outer.nmi, ari=outer.ari, cluster_acc=outer.cluster_acc)
    save_arrays(path, assign=assign, row=np.array(json.dumps(found)))
    row.update(found)
    return row, assign


def _base_row(spec: GridSpec, images: ImageSet, fs: FeatureSet, clusterer_name: str) -> dict[str, Any]:
    m = fs.meta
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(dataset=spec.dataset, backbone=fs.backbone, weights=fs.weights, pretext=fs.pretext,
               clusterer=clusterer_name, seed=spec.seed, image_size=spec.image_size, n_images=images.n,
               n_labeled=images.n_labeled, linear_probe_acc=m.get("probe_acc"), linear_probe_std=m.get("probe_std"),
               pretext_loss=m.get("pretext_loss"), pretext_acc=m.get("pretext_acc"), train_s=m.get("train_s"),
               extract_s=m.get("extract_s"), images_per_s=m.get("images_per_s"), feature_dim=m.get("feature_dim"),
               notes="; ".join(x for x in (m.get("notes", ""), m.get("probe_reason", "")) if x), status="ok", error="",
               feature_key=fs.key)
    return row


def run_grid(spec: GridSpec, out: Path, cache_dir: Path, resume: bool = False, progress: bool = True) -> RunResult:
    """Run every backbone x pretext x clusterer cell of ``spec``; write results under ``out``."""
    t_start = time.perf_counter()
    rt = detect_runtime(spec.device)
    source = resolve_dataset(spec.dataset, spec.labels)
    out.mkdir(parents=True, exist_ok=True)
    config = asdict(spec)
    previous = read_json(out / "run.json")
    if previous and resume and stable_hash(previous.get("config")) != stable_hash(json.loads(json.dumps(config))):
        raise ValueError(f"bad --resume: {out} holds a run with another configuration; use a new --out")
    done: dict[str, dict[str, Any]] = {}
    previous_assign: dict[str, np.ndarray] = {}
    if resume:  # finished cells are kept: their rows from cells.csv, their clusters from assignments.csv
        previous_assign = read_assignments(out / "assignments.csv")
        done = {cell_id(r): r for r in read_cells(out / "cells.csv")
                if r["status"] in ("skipped",) or (r["status"] in ("ok", "degenerate") and cell_id(r) in previous_assign)}
    run_info: dict[str, Any] = {"config": config, "environment": environment(describe_device(rt)),
                                "sort_rule": SORT_RULE, "status": "running", "cache_dir": str(cache_dir)}
    write_json(out / "run.json", run_info)
    stats = RunStats()
    t0 = time.perf_counter()
    images, hit = cached_image_set(source.fingerprint(), spec.image_size, cache_dir,
                                   lambda: source.load(spec.image_size, progress))
    if not hit:
        stats.decoded = images.n
        stats.stage_s["decode"] += time.perf_counter() - t0
    write_skipped(out / "skipped.csv", images.skipped)
    run_info["images_key"] = images.key
    write_json(out / "run.json", run_info)
    k = _n_clusters(spec, images)
    _warn_small_classes(images, spec.probe.k_per_class)
    rows: list[dict[str, Any]] = []
    assignments: dict[str, np.ndarray] = {}
    total = len(spec.backbones) * len(spec.pretexts) * len(spec.clusterers)
    bar = tqdm(total=total, desc="grid", unit="cell", disable=not progress)
    for bname in spec.backbones:
        for pname in spec.pretexts:
            todo = [c for c in spec.clusterers if f"{bname}/{pname}/{c}" not in done]
            fs = None
            if todo:
                bar.set_description(f"grid: {bname}/{pname}")
                try:
                    fs = _feature_set(spec, images, bname, pname, rt, cache_dir, stats, progress)
                except Exception as exc:  # noqa: BLE001  a failing feature set fails its cells only
                    err = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                    fs = FeatureSet(bname, pname, "", "", None, {"traceback": traceback.format_exc()}, "failed", err)
            for cname in spec.clusterers:
                cid = f"{bname}/{pname}/{cname}"
                if cid in done:
                    row, assign = done[cid], previous_assign.get(cid)
                    stats.resumed_cells += 1
                else:
                    bar.set_description(f"grid: {cid}")
                    row, assign = _cell(spec, images, fs, cname, k, rt, cache_dir, stats)  # type: ignore[arg-type]
                rows.append(row)
                if assign is not None:
                    assignments[cid] = assign
                # assignments first: a row in cells.csv always has its clusters on disk
                write_assignments(out / "assignments.csv", images.names, images.labels, images.class_names,
                                  assignments)
                write_cells(out / "cells.csv", rows)
                bar.update(1)
    bar.close()
    wall = time.perf_counter() - t_start
    stage_sum = sum(stats.stage_s.values())
    run_info.update(status="finished", wall_s=wall, stage_s=stats.stage_s, stage_sum_s=stage_sum,
                    overhead_ratio=wall / stage_sum if stage_sum > 0 else None,
                    computed={"decoded_images": stats.decoded, "trained": stats.trained, "extracted": stats.extracted,
                              "clustered": stats.clustered, "resumed_cells": stats.resumed_cells},
                    n_images=images.n, n_labeled=images.n_labeled, n_skipped=len(images.skipped), k=k,
                    images_key=images.key,
                    runtime=rt.describe())
    write_json(out / "run.json", run_info)
    return RunResult(out, rows, stats, images, wall)
