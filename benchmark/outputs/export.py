"""`export` a cell as a production recipe, and `predict` new photos with it.

An export folder holds: manifest.json (what, versions, scores), backbone.pt (a state_dict, read with
``weights_only=True``), preprocess.npz (the cell's --reduce step: standardization, PCA or UMAP as arrays) and the
clusterer's own ``save`` (clusterer.npz arrays + clusterer.json). Nothing in it is a pickle."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from benchmark.config.checks import check_empty_target, check_writable_file
from benchmark.config.reduction import parse_reduce
from benchmark.config.specs import default_reduction, parse_inits
from benchmark.data.decode import decode_many
from benchmark.driver.results import cell_id, environment, row_init
from benchmark.interfaces import BadInput, ClusterSpec, Status, escape_name
from benchmark.outputs.recommend import recommend
from benchmark.outputs.run_folder import Run, load_run
from benchmark.pipeline.plan import parse_cell_id
from benchmark.runtime.device import detect_runtime
from benchmark.scoring import columns
from benchmark.scoring.reduce import Reduction, fit_reduction
from benchmark.store.files import (
    DIR_MODE,
    INTEGRITY,
    atomic_write_bytes,
    check_record,
    read_json,
    save_arrays,
    write_record,
)
from benchmark.train.loop import extract_features
from registry.backbones import WeightsRequest, backbone_info, build_backbone
from registry.base import unknown_message
from registry.clusterers import Clusterer, build_clusterer
from registry.datasets import IMAGE_EXTENSIONS, list_images
from registry.pretexts import build_pretext, pretext_class
from registry.weights import IMAGENET_MEAN, IMAGENET_STD, NONE, RANDOM, Init, resolve

MANIFEST = "manifest.json"
BACKBONE = "backbone.pt"
PREPROCESS = "preprocess.npz"


def _pick_row(run: Run, cell: str | None) -> Any:
    df = run.cells
    if cell is None:
        return recommend(df).cell
    ids = [cell_id(r) for _, r in df.iterrows()]
    b, init, p, c, seed = parse_cell_id(cell)
    hits = []
    for i, x in enumerate(ids):  # without a seed: the run's first seed of that cell
        xb, xi, xp, xc, xs = parse_cell_id(x)
        if (xb, xp, xc) == (b, p, c) and init in (None, xi) and seed in (None, xs):
            hits.append(i)
    inits = sorted({parse_cell_id(ids[i])[1] or "" for i in hits})
    if init is None and len(inits) > 1:  # an old 4-part id where the backbone has several inits
        raise BadInput(f"bad cell {cell!r}: backbone {b!r} has {len(inits)} inits in this run ({', '.join(inits)}); "
                       f"write backbone/init/pretext/clusterer[/seed], e.g. {b}/{inits[0]}/{p}/{c}")
    if hits:
        return df.iloc[hits[0]]
    raise BadInput(unknown_message("cell", cell, ids))


def _init_of(run: Run, row: Any) -> Init:
    """The init a cell's backbone started from, resolved again from this machine's files and checked against
    the row's weights identity (a file replaced since the run is refused)."""
    label, cfg = row_init(row), run.info["config"]
    if label in ("random", "none"):
        return RANDOM if label == "random" else NONE
    if label.startswith("imagenet"):
        init = resolve(row["backbone"], label)
    else:
        given, shared = parse_inits(str(cfg.get("init") or cfg.get("weights") or ""), tuple(cfg["backbones"]))
        paths = [v for v in given.get(row["backbone"], shared) if os.path.isfile(v)]
        found = [resolve(row["backbone"], v) for v in paths]
        hit = next((i for i in found if i.identity == row["weights"]), found[0] if found else None)
        if hit is None:
            raise BadInput(f"bad cell {cell_id(row)!r}: the checkpoint it started from is not on this machine; "
                           "export it where the run was made")
        init = hit
    if init.identity != row["weights"] and str(row["weights"]).count("@sha256:"):
        raise BadInput(f"bad cell {cell_id(row)!r}: its weights {row['weights']} are not on this machine (found "
                       f"{init.identity}); export it where the run was made")
    return init


def _backbone_state(run: Run, row: Any, seed: int, size: int, init: Init) -> bytes | None:
    """The state_dict bytes behind a cell's features: trained weights from the store, or ``init`` (seeded)."""
    if not backbone_info(row["backbone"]).trainable:
        return None
    meta = run.store.get_meta("features", str(row["feature_key"])) or {}
    if meta.get("train_key"):
        path = run.store.weights_file(meta["train_key"])
        if path is None:
            raise BadInput(run.missing(f"trained weights of {cell_id(row)}"))
        return path.read_bytes()
    import io

    torch.manual_seed(seed)
    backbone = build_backbone(row["backbone"], size, WeightsRequest(init))
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in backbone.state_dict().items()}, buf)
    return buf.getvalue()


def _channels(backbone: str, dim: int, size: int) -> int:
    """The data's channels a backbone was built for (1 for grayscale data where it keeps them)."""
    return dim // (size * size) if backbone_info(backbone).data_channels else 3


def export_cell(run_dir: Path, to: Path, cell: str | None = None, force: bool = False) -> dict[str, Any]:
    """Write the recipe of ``cell`` ("backbone/init/pretext/clusterer[/seed]"; default: the recommended one) to the
    folder ``to``: refused when it is not empty unless ``force``; it is written beside ``to`` and renamed into
    place, so ``to`` holds either its old content or the whole new export, never a mix."""
    run = load_run(run_dir)
    check_empty_target(to, "--to", force, replaceable=MANIFEST, keep=(run_dir, run.store.root))
    row = _pick_row(run, cell)
    if row["status"] not in (Status.OK, Status.DEGENERATE):
        raise BadInput(f"bad cell {cell_id(row)!r}: its status is {row['status']} ({row['error']}); export a "
                       "finished cell")
    with _staged_folder(to) as stage:
        manifest = _write_export(run, run_dir, stage, row)
    return manifest


@contextmanager
def _staged_folder(to: Path) -> Iterator[Path]:
    """A fresh folder beside ``to``; when the block succeeds it replaces ``to`` whole (the old one, if any,
    is renamed aside first and removed after), else it is removed."""
    to = to.absolute()
    made = [p for p in [to.parent, *to.parent.parents] if not p.exists()]
    to.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{to.name}.", suffix=".export-tmp", dir=to.parent))
    ok = False
    try:
        yield stage
        os.chmod(stage, DIR_MODE)
        old = None
        if to.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{to.name}.", suffix=".export-old", dir=to.parent))
            os.replace(to, old / "previous")
        os.replace(stage, to)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        ok = True
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
        for p in made if not ok else []:  # the folders made for it, when nothing came of it
            with contextlib.suppress(OSError):
                p.rmdir()


def _write_export(run: Run, run_dir: Path, to: Path, row: Any) -> dict[str, Any]:
    cid = cell_id(row)
    cfg = run.info["config"]
    seed, size = int(row["seed"]), int(cfg["image_size"])
    got = run.features(row["feature_key"])
    if got is None:
        raise BadInput(run.missing(f"features of {cid}"))
    feats = np.asarray(got[0])
    init = _init_of(run, row)  # resolved once: the state's init and the manifest's normalisation
    state = _backbone_state(run, row, seed, size, init)
    written: list[Path] = []
    if state is not None:
        atomic_write_bytes(to / BACKBONE, state)
        written.append(to / BACKBONE)
    cspec = ClusterSpec(**cfg["cluster"])
    chosen = json.loads(row["cluster_params"]).get("k") if isinstance(row.get("cluster_params"), str) else None
    k = int(chosen or (run.info.get("k") if run.info.get("k") != "auto" else 0) or 2)
    clusterer = build_clusterer(row["clusterer"], k, cspec, seed)
    method, dims = parse_reduce(str(cfg.get("reduce") or ""), tuple(cfg["clusterers"])).get(row["clusterer"]) \
        or default_reduction(row["clusterer"])
    red, _X, Xc, _params = fit_reduction(feats, method, dims, seed)
    save_arrays(to / PREPROCESS, **red.arrays())
    labels = clusterer.fit(Xc)
    files = clusterer.save(to)
    written += [to / PREPROCESS, *files]
    ran = run.clusters_of(row)
    same = bool(ran is not None and np.array_equal(ran, labels))
    manifest = {
        "cell": cid, "backbone": row["backbone"], "pretext": row["pretext"], "clusterer": row["clusterer"],
        "init": row_init(row), "weights": row["weights"], "image_size": size,
        "normalize": {"mean": list(init.mean), "std": list(init.std)},
        "seed": seed, "feature_dim": int(feats.shape[1]), "k": k,
        "channels": _channels(row["backbone"], int(feats.shape[1]), size),
        "cluster_params": clusterer.params, "clusterer_files": [f.name for f in files],
        "preprocess": {"resize": "whole image, bilinear, no crop", "exif_orientation": True,
                       "input": "what pretext " + str(row["pretext"]) + " showed the backbone",
                       "reduce": method, "reduce_dims": int(Xc.shape[1])},
        "scores": {s: (None if row.get(s) is None or (isinstance(row[s], float) and np.isnan(row[s])) else row[s])
                   for s in [c.name for c in columns.shown_in("export")]},
        "labels_match_run": same, "source_run": str(run_dir), "environment": environment("cpu"),
        "pretext_options": (cfg.get("pretext_options") or {}).get(row["pretext"], {}),
        "n_training_images": int(feats.shape[0]),
    }
    write_record(to / MANIFEST, manifest, {p.name: p for p in written})  # with the sha256 of every file
    return manifest


def verify_export(folder: Path) -> dict[str, Any]:
    """The manifest of an export folder after every file it lists matched its sha256 (nothing is loaded
    before). BadInput names the damaged or tampered file; nothing in an export is ever unpickled anyway."""
    path = folder / MANIFEST
    if not path.is_file():
        raise BadInput(f"bad export folder {str(folder)!r}: no {MANIFEST} in it")
    raw = read_json(path)
    listed = ((raw or {}).get(INTEGRITY) or {}).get("files") if isinstance(raw, dict) else None
    if not isinstance(listed, dict):
        raise BadInput(f"bad export folder {str(folder)!r}: {MANIFEST} is unreadable or has no checksums (damaged "
                       "or tampered, or written by an older version); export the cell again")
    manifest, problem = check_record(path, {name: folder / Path(name).name for name in listed})
    if manifest is None:
        raise BadInput(f"bad export folder {str(folder)!r}: {problem} (damaged or tampered); export the cell again")
    needed = {PREPROCESS, *manifest.get("clusterer_files", [])}
    if backbone_info(manifest["backbone"]).trainable:
        needed.add(BACKBONE)
    if needed - set(listed):
        raise BadInput(f"bad export folder {str(folder)!r}: {MANIFEST} lists no checksum for "
                       f"{', '.join(sorted(needed - set(listed)))}; export the cell again")
    return {**manifest, "listed_files": sorted(listed)}


def _load_recipe(folder: Path, manifest: dict[str, Any]) -> tuple[Any, Reduction, Clusterer]:
    """Backbone (its state_dict read weights-only), preprocessing and clusterer of a verified export. A file
    that passed its checksum but still cannot be loaded (hand-made, other version) is a BadInput."""
    try:
        torch.manual_seed(int(manifest["seed"]))
        norm = manifest.get("normalize") or {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}  # older exports: ImageNet's
        stats = Init(mean=tuple(float(v) for v in norm["mean"]), std=tuple(float(v) for v in norm["std"]))
        backbone = build_backbone(manifest["backbone"], int(manifest["image_size"]), WeightsRequest(),
                                  channels=int(manifest.get("channels", 3)))
        backbone.init = stats  # the weights come from backbone.pt; the normalisation is the source's
        backbone = _pretext_of(manifest).wrap_backbone(backbone)  # the network trained (split_brain: two copies)
        if BACKBONE in manifest.get("listed_files", ()):  # only what the manifest lists (and verify_export checked)
            backbone.load_state_dict(torch.load(folder / BACKBONE, map_location="cpu", weights_only=True))
        with np.load(folder / PREPROCESS, allow_pickle=False) as pre:
            red = Reduction.from_arrays(dict(pre))
        return backbone, red, Clusterer.load(folder)
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001  whatever a damaged or foreign file raises
        raise BadInput(f"bad export folder {str(folder)!r}: cannot load it ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); export the cell again") from None


def _pretext_of(manifest: dict[str, Any]):

    cls = pretext_class(manifest["pretext"])
    return build_pretext(manifest["pretext"], cls.Options(**manifest.get("pretext_options", {})))


def predict(folder: Path, images: Path, out: Path, device: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Assign every image under ``images`` (a folder or one file) to the exported clusters; write ``out``."""
    manifest = verify_export(folder)
    check_writable_file(out, "--out", inputs=(folder, *([images] if images.is_file() else [])))
    if images.is_dir() and out.suffix.lower() in IMAGE_EXTENSIONS and out.absolute().resolve().is_relative_to(
            images.absolute().resolve()):
        raise BadInput(f"bad --out {str(out)!r}: an image path inside the images to predict; write the CSV elsewhere")
    if images.is_dir():
        root, paths = images, list_images(images)
    elif images.is_file() and images.suffix.lower() in IMAGE_EXTENSIONS:
        root, paths = images.parent, [images]
    else:
        raise BadInput(f"bad images {str(images)!r}: give a folder or an image file ({', '.join(IMAGE_EXTENSIONS)})")
    t0 = time.perf_counter()
    size = int(manifest["image_size"])
    backbone, red, clusterer = _load_recipe(folder, manifest)
    arr, kept, skipped, _gray = decode_many(paths, size, root, progress=progress)
    if not kept:
        raise BadInput(f"bad images {str(images)!r}: no decodable image among {len(paths)} files")
    rt = detect_runtime(device)
    feats, _ = extract_features(backbone, arr, rt, batch_size=128, progress=progress, pretext=_pretext_of(manifest))
    labels, score = clusterer.predict(red.transform(feats))
    secs = time.perf_counter() - t0
    import pandas as pd

    df = pd.DataFrame({"path": [escape_name(paths[i].relative_to(root).as_posix()) for i in kept], "cluster": labels,
                       clusterer.score_name: score})
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    if skipped:
        pd.DataFrame([(escape_name(p), escape_name(r)) for p, r in skipped],
                     columns=["path", "reason"]).to_csv(out.with_suffix(".skipped.csv"), index=False)
    return {"n": len(kept), "skipped": len(skipped), "seconds": secs, "images_per_s": len(kept) / secs,
            "outliers": int((labels < 0).sum()), "clusters": int(len(set(labels.tolist()) - {-1}))}
