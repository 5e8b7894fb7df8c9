"""The runner of each stage kind (``benchmark.pipeline.kinds`` dispatches to them):
``run_x(task, store) -> TaskResult``.

A task reads its inputs from the artifact store and writes its output there; only a small record
travels back (to the driver, the one writer of the run files), so a task can run in another process or
on another machine. A finished artifact is read, never recomputed (``computed`` False)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from benchmark.data.images import decode_listing, listing_fingerprint, open_image_set
from benchmark.interfaces import Status
from benchmark.pipeline.plan import CellTask, DecodeTask, ExtractTask, ProbeTask, ReduceTask, TrainTask
from benchmark.probe.knn import knn_full, knn_probe, shared_classes
from benchmark.probe.protocol import linear_probe
from benchmark.runtime.device import detect_runtime
from benchmark.runtime.gpu_monitor import sampled
from benchmark.runtime.threads import limit_threads, stage_threads
from benchmark.scoring import reduce as reduction
from benchmark.scoring.columns import CellFit, score_cell
from benchmark.scoring.metrics import stability
from benchmark.scoring.silhouette import silhouette_torch
from benchmark.scoring.streamed import Rows, blocks, small
from benchmark.store.artifacts import ArtifactStore
from benchmark.train.checkpoint import Checkpoint
from benchmark.train.loop import extract_features, train_pretext
from registry.backbones import WeightsRequest, at_layer, build_backbone
from registry.clusterers import build_clusterer, clusterer_class
from registry.datasets import limit_listing, resolve_dataset
from registry.pretexts import build_pretext


@dataclass
class TaskResult:
    """What a task reports: status (ok / skipped / failed), whether it computed (vs. found its artifact),
    seconds per stage, and a small info dict."""

    key: str
    kind: str
    status: str = Status.OK.value
    error: str = ""
    computed: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    pid: int = 0
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (category name, message) the task raised
    placement: dict[str, Any] = field(default_factory=dict)  # where it ran (node, GPUs; the Ray executor)
    peak_anon_mib: float | None = None  # peak anonymous memory of the process tree that ran it (runtime.memory)


def _backbone(task: TrainTask | ExtractTask, gray: bool = False):

    torch.manual_seed(task.seed)  # random init is part of the seeded recipe
    backbone = build_backbone(task.backbone, task.image_size, WeightsRequest(task.init),
                              channels=1 if gray else 3)
    return build_pretext(task.pretext, task.options).wrap_backbone(backbone)  # the network the method trains


def run_decode(task: DecodeTask, store: ArtifactStore, progress: bool) -> TaskResult:

    got = store.get_images(task.key)
    if got is not None:
        meta = got[1]
        return TaskResult(task.key, task.kind, info=_decode_info(meta))
    listing = limit_listing(resolve_dataset(task.dataset, task.labels_csv, task.split).list(), task.limit)
    t0 = time.perf_counter()
    _fp, shas = listing_fingerprint(listing, store)
    meta = decode_listing(listing, task.image_size, task.key, shas, store, progress, task.decoder)
    return TaskResult(task.key, task.kind, computed=True, seconds={"decode": time.perf_counter() - t0},
                      info={**_decode_info(meta), "decoded_now": meta["decoded_now"]})


def _decode_info(meta: dict[str, Any]) -> dict[str, Any]:
    return {"n": len(meta["names"]), "n_skipped": len(meta["skipped"]), "grayscale": meta["grayscale"]}


def _not_applicable(task: TrainTask | ExtractTask, store: ArtifactStore) -> str | None:

    got = store.get_images(task.images_key)
    gray = bool(got[1]["grayscale"]) if got else False
    return build_pretext(task.pretext, task.options).not_applicable(gray, task.backbone)


def run_train(task: TrainTask, store: ArtifactStore, progress: bool) -> TaskResult:

    reason = _not_applicable(task, store)
    if reason:
        return TaskResult(task.key, task.kind, status=Status.SKIPPED.value, error=reason)
    meta = store.get_verified_weights_meta(task.key)
    if meta is not None:
        return TaskResult(task.key, task.kind, info=meta)
    images = open_image_set(store, task.images_key, None)
    pretext = build_pretext(task.pretext, task.options)
    backbone = _backbone(task)
    rt = detect_runtime(task.runtime.device, task.runtime.deterministic, task.runtime.compile)
    rt = replace(rt, channels_last=task.runtime.channels_last)  # this backbone's training layout (the plan's)

    checkpoint = Checkpoint(store.checkpoint_file(task.key))
    (result, _head), util = sampled(rt.device, lambda: train_pretext(backbone, pretext, images.images, task.train,
                                                                      rt, task.seed, progress, checkpoint))
    meta = {"pretext_loss": result.final_loss, "pretext_acc": result.final_acc, "train_s": result.seconds,
            "step_losses": result.step_losses, "epoch_losses": result.epoch_losses, "steps": result.steps,
            "stopped_at_epoch": result.stopped_at_epoch, "resumed_at_step": result.resumed_at_step,
            "weights": backbone.weights, "train_compile_s": result.compile_s, "gpu_util": util}
    store.put_weights(task.key, backbone.state_dict(), meta)
    checkpoint.clear()  # the weights are stored: the checkpoint has done its job
    return TaskResult(task.key, task.kind, computed=True, info=meta,
                      seconds={"train": result.seconds, "compile": result.compile_s})


@dataclass
class Extractor:
    """What an extract task computes with: the backbone (trained weights loaded, cut at the feature layer),
    the image store, the runtime, the pretext whose feature input the backbone sees, the training meta."""

    backbone: Any
    images: Any  # benchmark.data.images.ImageSet
    rt: Any  # benchmark.runtime.device.Runtime
    pretext: Any
    train_meta: dict[str, Any]


def extractor(task: ExtractTask, store: ArtifactStore) -> Extractor:
    """Build what ``task`` extracts with (the same for one task or a Ray Data actor pool)."""

    images = open_image_set(store, task.images_key, None)
    backbone = _backbone(task, images.grayscale)
    train_meta: dict[str, Any] = {}
    if task.train_key:
        got = store.get_weights(task.train_key)
        if got is None:
            raise RuntimeError(f"trained weights {task.train_key} are missing from {store.root}")
        state, train_meta = got
        backbone.load_state_dict(state)
    rt = detect_runtime(task.runtime.device, task.runtime.deterministic, task.runtime.compile)
    pretext = build_pretext(task.pretext, task.options)
    if task.feature_layer:

        backbone = at_layer(backbone, task.feature_layer)
    return Extractor(backbone, images, rt, pretext, train_meta)


def extraction_meta(task: ExtractTask, feats: np.ndarray, secs: float, weights: str, trainable: bool,
                    train_meta: dict[str, Any], compile_s: float = 0.0, util: float | None = None) -> dict[str, Any]:
    """The features artifact's meta (the NaN check first: non-finite features fail the task)."""
    if not all(np.isfinite(feats[sl]).all() for sl in blocks(*feats.shape)):  # by blocks: a memory map
        raise RuntimeError(f"{task.backbone}/{task.pretext}: features contain NaN or inf")
    n = feats.shape[0]
    return {"weights": weights, "extract_s": secs, "images_per_s": n / secs if secs > 0 else None,
            "feature_dim": int(feats.shape[1]), "trainable": bool(trainable),
            "pretext_loss": train_meta.get("pretext_loss"), "pretext_acc": train_meta.get("pretext_acc"),
            "train_s": train_meta.get("train_s", 0.0), "train_key": task.train_key,
            "extract_compile_s": compile_s, "gpu_util": util}


def extraction_done(task: ExtractTask, store: ArtifactStore) -> TaskResult | None:
    """The result of an extract task that needs no compute: skipped (its pretext cannot apply) or cached."""
    reason = _not_applicable(task, store)
    if reason:
        return TaskResult(task.key, task.kind, status=Status.SKIPPED.value, error=reason)
    cached = store.get_array("features", task.key, mmap=True)
    return TaskResult(task.key, task.kind, info=cached[1]) if cached is not None else None


def run_extract(task: ExtractTask, store: ArtifactStore, progress: bool) -> TaskResult:

    done = extraction_done(task, store)
    if done is not None:
        return done
    ex = extractor(task, store)
    timing: dict[str, float] = {}
    with store.array_writer("features", task.key, (len(ex.images.images), ex.backbone.dim)) as out:
        (feats, secs), util = sampled(ex.rt.device, lambda: extract_features(
            ex.backbone, ex.images.images, ex.rt, batch_size=task.batch_size, progress=progress,
            pretext=ex.pretext, timing=timing, out=out))  # written as they come: never held whole
        meta = extraction_meta(task, feats, secs, ex.backbone.weights, ex.backbone.trainable, ex.train_meta,
                               timing.get("compile_s", 0.0), util)
    store.put_array_meta("features", task.key, meta)
    return TaskResult(task.key, task.kind, computed=True, info=meta,
                      seconds={"extract": secs, "compile": timing.get("compile_s", 0.0)})


def run_probe(task: ProbeTask, store: ArtifactStore, progress: bool) -> TaskResult:

    rec = store.get_record("probes", task.key)
    if rec is not None:
        return TaskResult(task.key, task.kind, info=rec)
    feats = _features(store, task.features_key)
    labels = open_image_set(store, task.images_key, task.labels_key).labels

    t0 = time.perf_counter()
    with limit_threads(task.blas_threads):
        probe = linear_probe(np.asarray(feats), labels, task.probe, task.seed, task.device)
        secs = time.perf_counter() - t0
        knn = knn_probe(np.asarray(feats), labels, task.probe, task.seed, task.device)
        full = _knn_full(task, store, feats) if task.reference_features_key else {}
    knn_s = time.perf_counter() - t0 - secs
    rec = {"probe_acc": probe.mean, "probe_std": probe.std, "accuracies": list(probe.accuracies),
           "probe_c": list(probe.chosen_c), "probe_k": probe.k_per_class, "n_test": probe.n_test,
           "probe_reason": probe.reason, "probe_s": secs, "probe_solver": task.probe.solver,
           "knn_acc": knn.mean, "knn_std": knn.std, "knn_accuracies": list(knn.accuracies), "knn_k": knn.k,
           "knn_t": task.probe.knn_t, "knn_s": knn_s, **full}
    store.put_record("probes", task.key, rec)
    return TaskResult(task.key, task.kind, computed=True, seconds={"probe": secs + knn_s}, info=rec)


def _knn_full(task: ProbeTask, store: ArtifactStore, feats: np.ndarray) -> dict[str, Any]:
    """The full-label kNN (``--knn-reference``): every labeled image of the reference split's features (the
    same trained weights) votes for every labeled image of the run's split."""
    assert task.reference_features_key and task.reference_images_key  # the planner sets all three
    ours = open_image_set(store, task.images_key, task.labels_key)
    ref = open_image_set(store, task.reference_images_key, task.reference_labels_key)
    ref_labels = shared_classes(ours.class_names, ref.class_names, ref.labels)
    acc, n_ref, n_query = knn_full(np.asarray(feats), ours.labels, _features(store, task.reference_features_key),
                                   ref_labels, task.probe.knn_full_k, task.probe.knn_full_t, task.device)
    return {"knn_full_acc": acc, "knn_full_k": min(task.probe.knn_full_k, n_ref), "knn_full_t": task.probe.knn_full_t,
            "knn_full_n_reference": n_ref, "knn_full_n_query": n_query, "knn_reference": task.probe.knn_reference,
            "knn_reference_keys": [task.reference_features_key, task.reference_images_key, task.reference_labels_key]}


def _features(store: ArtifactStore, key: str) -> np.ndarray:
    got = store.get_array("features", key, mmap=True)
    if got is None:
        raise RuntimeError(f"features {key} are missing from {store.root}")
    return got[0]


def run_reduce(task: ReduceTask, store: ArtifactStore, progress: bool) -> TaskResult:

    cached = store.get_array("reductions", task.key, mmap=True)
    if cached is not None:
        return TaskResult(task.key, task.kind, info=cached[1])
    t0 = time.perf_counter()
    feats = _features(store, task.features_key)  # memory-mapped: read in row blocks (scoring.streamed)
    with stage_threads("cell", feats.shape[0]):
        red, params = reduction.fit(feats, task.method, task.dims, task.seed)
        dims = reduction.space_dim(red, feats.shape[1])
        with store.array_writer("reductions", task.key, (feats.shape[0], dims)) as out:
            reduction.cluster_space(red, feats, out)
    secs = time.perf_counter() - t0
    meta = {"method": task.method, "dims": dims, "params": params, "reduce_s": secs}
    store.put_array_meta("reductions", task.key, meta)
    return TaskResult(task.key, task.kind, computed=True, seconds={"reduce": secs}, info=meta)


def common_space(store: ArtifactStore, task: CellTask, cluster_space: np.ndarray, method: str) -> Rows:
    """The standardized full-dimensional features every clusterer is scored in, read by rows: the
    reduction itself when it is the standardization, else the features standardized on the fly."""
    if method == "standardize":
        return Rows(cluster_space)
    return reduction.standardized(_features(store, task.features_key))


STABILITY_REPEATS = 3  # fits of a seeded clusterer on the same features (seeds s, s+1000, s+2000)


K_AUTO_MAX = 15
K_AUTO_STABLE = 0.8
K_AUTO_SAMPLE = 3000


def choose_k(task: CellTask, Xc: np.ndarray) -> tuple[int, list[list[float]]]:
    """``--k auto`` for clusterers that take k: for k = 2..min(15, N/10), the silhouette (in the clusterer's
    space, on a seeded sample of 3,000) and the stability (mean pairwise ARI of 3 seeds; 1 for unseeded
    clusterers); pick the best silhouette among k with stability >= 0.8 (all k when none is). No labels used.
    Returns (k, [[k, silhouette, stability], ...])."""

    if not clusterer_class(task.clusterer).uses_k:
        return 2, []
    n = len(Xc)
    rng = np.random.default_rng(task.seed)
    sample = np.sort(rng.permutation(n)[:K_AUTO_SAMPLE])
    curve: list[list[float]] = []
    for k in range(2, max(2, min(K_AUTO_MAX, n // 10)) + 1):
        runs = []
        for i in range(STABILITY_REPEATS if clusterer_class(task.clusterer).seeded else 1):
            runs.append(build_clusterer(task.clusterer, k, task.cluster, task.seed + 1000 * i).fit(Xc))
        lab = runs[0][sample]
        sil = silhouette_torch(Xc[sample], lab) if len(np.unique(lab[lab >= 0])) >= 2 else float("nan")
        curve.append([k, round(float(sil), 6), round(stability(runs)[0], 6)])
    stable = [c for c in curve if c[2] >= K_AUTO_STABLE and np.isfinite(c[1])] or \
        [c for c in curve if np.isfinite(c[1])] or curve
    return int(max(stable, key=lambda c: c[1])[0]), curve


def run_cell(task: CellTask, store: ArtifactStore, progress: bool) -> TaskResult:
    import json

    cached = store.get_cell(task.key)
    if cached is not None:
        return TaskResult(task.key, task.kind, info=cached[0])
    got = store.get_array("reductions", task.reduce_key, mmap=True)
    if got is None:
        raise RuntimeError(f"reduction {task.reduce_key} is missing from {store.root}")
    Xc, red_meta = got
    if small(*Xc.shape):
        Xc = np.array(Xc)  # a small cluster space in memory, writable (as the clusterers were always given)
    X = common_space(store, task, Xc, str(red_meta.get("method")))
    labels = open_image_set(store, task.images_key, task.labels_key).labels

    k, k_curve = task.k, None
    with limit_threads(task.blas_threads):
        if k == 0:
            k, k_curve = choose_k(task, Xc)
    clusterer = build_clusterer(task.clusterer, k, task.cluster, task.seed, use_gpu=task.device == "cuda")
    with limit_threads(task.blas_threads):
        t0 = time.perf_counter()
        assign = clusterer.fit(Xc)
        cluster_s = time.perf_counter() - t0
        repeats = [assign]
        if clusterer.seeded:  # the notebook's test: repeat it, do you get the same pattern?
            for i in range(1, task.cluster.stability_repeats):
                again = build_clusterer(task.clusterer, k, task.cluster, task.seed + 1000 * i,
                                        use_gpu=task.device == "cuda")
                repeats.append(again.fit(Xc))
        t0 = time.perf_counter()
        fit = CellFit(X, Xc, assign, labels, repeats, clusterer.seeded, task.cluster.silhouette_max_n, task.seed,
                      task.device)
        rec = score_cell(fit)
        score_s = time.perf_counter() - t0
    params = {**clusterer.params, **(red_meta.get("params") or {})}
    if k_curve is not None:
        params.update(k=k, k_from="auto: the best silhouette among k with stability >= 0.8", k_curve=k_curve)
    rec.update(reduce=red_meta.get("method"), cluster_s=cluster_s, cluster_params=json.dumps(params, sort_keys=True),
               status=fit.status.value, error=fit.internal.reason)
    store.put_cell(task.key, rec, assign)
    return TaskResult(task.key, task.kind, computed=True, seconds={"cluster": cluster_s, "score": score_s}, info=rec)
