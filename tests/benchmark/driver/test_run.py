"""End to end: every backbone x pretext x clusterer on a tiny folder; caching; failure isolation; resume."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.config.specs import ClusterSpec, GridSpec, ProbeSpec, TrainSpec
from benchmark.driver.run import run_grid
from benchmark.scoring import columns
from registry.backbones import BACKBONES, backbone_info
from registry.clusterers import CLUSTERERS, Clusterer
from registry.pretexts import PRETEXTS

TINY_TRAIN = TrainSpec(epochs=1, batch_size=8, max_steps=2)


def tiny_spec(folder: Path, **kw) -> GridSpec:
    base = dict(dataset=str(folder), backbones=("resnet18", "raw_pixels"), pretexts=("none", "rotation"),
                clusterers=("kmeans", "faiss_kmeans"), image_size=32, device="cpu", train=TINY_TRAIN,
                probe=ProbeSpec(k_per_class=4, draws=2), cluster=ClusterSpec(min_samples=3))
    base.update(kw)
    return GridSpec(**base)


FIXED_SIZE = {b for b in BACKBONES.names() if backbone_info(b).input_size}  # run at their declared size


GRID_BACKBONES = tuple(sorted(set(BACKBONES.names()) - FIXED_SIZE)) + ("timm:resnet10t",)


@pytest.mark.parametrize("backbone", GRID_BACKBONES)  # one backbone a test: the workers share the grid
def test_every_triple_runs_end_to_end(backbone, photo_folder, tmp_path, cache):
    spec = tiny_spec(photo_folder, backbones=(backbone,), pretexts=tuple(PRETEXTS.names()),
                     clusterers=tuple(CLUSTERERS.names()))
    res = run_grid(spec, tmp_path / "run", cache, progress=False)
    df = pd.read_csv(tmp_path / "run" / "cells.csv")
    assert len(df) == len(spec.pretexts) * len(spec.clusterers) and list(df.columns) == columns.names()
    assert set(df["status"]) <= {"ok", "degenerate", "skipped"}, df[df.status == "failed"][["backbone", "error"]]
    ok = df[df.status != "skipped"]
    assert ok["linear_probe_acc"].notna().all() and ok["nmi"].notna().all()
    assert ok["knn_acc"].between(0, 1).all() and (ok["knn_accuracies"].str.count(";") == 1).all()  # 2 draws
    km = df[df.clusterer.isin(["kmeans", "faiss_kmeans"]) & (df.status == "ok")]
    assert km["silhouette"].notna().all() and km["davies_bouldin"].notna().all()
    trained = df[(df.pretext != "none") & (df.backbone != "raw_pixels") & (df.status == "ok")]
    assert trained["pretext_loss"].notna().all()
    assert (df["weights"].isin(["random", "none"])).all()
    assign = pd.read_csv(tmp_path / "run" / "assignments.csv")
    init = "none" if backbone == "raw_pixels" else "random"
    assert len(assign) == 24 and f"{backbone}/{init}/none/kmeans/0" in assign.columns
    assert res.stats.trained == (0 if backbone == "raw_pixels" else len(spec.pretexts) - 1)
    if backbone == "raw_pixels":  # the easy synthetic classes are found by k-means on raw pixels
        raw = df[(df.pretext == "none") & (df.clusterer == "kmeans")].iloc[0]
        assert raw["nmi"] > 0.9 and raw["linear_probe_acc"] > 0.9


def test_every_triple_of_the_fixed_size_backbones_runs_at_their_size(photo_folder, tmp_path, cache):
    """The paper autoencoders (1 x 28 x 28) with every pretext and clusterer at 28 px: the autoencoder uses
    their own decoder; pretexts feeding smaller crops (or decoding a feature map dec_ae lacks) are skipped
    with the reason."""
    spec = tiny_spec(photo_folder, backbones=tuple(sorted(FIXED_SIZE)), pretexts=tuple(PRETEXTS.names()),
                     clusterers=tuple(CLUSTERERS.names()), image_size=28)
    run_grid(spec, tmp_path / "run", cache, progress=False)
    df = pd.read_csv(tmp_path / "run" / "cells.csv")
    assert set(df["status"]) <= {"ok", "degenerate", "skipped"}, df[df.status == "failed"][["backbone", "error"]]
    skipped = df[df.status == "skipped"]
    assert set(skipped.pretext) >= {"jigsaw", "relative_patch"}
    assert skipped.error.str.contains("not applicable").all()
    ae = df[(df.pretext == "autoencoder") & (df.status == "ok")]
    assert set(ae.backbone) == FIXED_SIZE and ae["pretext_loss"].notna().all()


def test_rerun_recomputes_nothing(photo_folder, tmp_path, cache):
    spec = tiny_spec(photo_folder)
    first = run_grid(spec, tmp_path / "a", cache, progress=False)
    assert first.stats.trained == 1 and first.stats.extracted == 3 and first.stats.decoded == 24
    second = run_grid(spec, tmp_path / "b", cache, progress=False)
    s = second.stats
    assert (s.decoded, s.trained, s.extracted, s.clustered) == (0, 0, 0, 0)
    cols = [c for c in columns.names() if c not in ("cluster_s",)]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "cells.csv")[cols],
                                  pd.read_csv(tmp_path / "b" / "cells.csv")[cols])


class Boom(Clusterer):
    def fit(self, X):
        raise RuntimeError("boom on purpose")


def test_a_failing_cell_is_recorded_and_the_others_finish(photo_folder, tmp_path, cache, monkeypatch):
    monkeypatch.setitem(CLUSTERERS._members, "boom", Boom)
    spec = tiny_spec(photo_folder, backbones=("raw_pixels",), pretexts=("none",),
                     clusterers=("boom", "kmeans", "dbscan"), cluster=ClusterSpec(eps=1e9, min_samples=3))
    run_grid(spec, tmp_path / "run", cache, progress=False)
    df = pd.read_csv(tmp_path / "run" / "cells.csv").set_index("clusterer")
    assert df.loc["boom", "status"] == "failed" and "boom on purpose" in df.loc["boom", "error"]
    assert df.loc["kmeans", "status"] == "ok"
    assert df.loc["dbscan", "status"] == "degenerate"  # one huge cluster: silhouette undefined
    assert "1 cluster found" in df.loc["dbscan", "error"] and np.isnan(df.loc["dbscan", "silhouette"])


def test_resume_keeps_finished_cells(photo_folder, tmp_path, cache):
    spec = tiny_spec(photo_folder)
    out = tmp_path / "run"
    run_grid(spec, out, cache, progress=False)
    before = pd.read_csv(out / "cells.csv")
    again = run_grid(spec, out, tmp_path / "empty_cache", resume=True, progress=False)
    assert again.stats.resumed_cells == len(before) and again.stats.extracted == 0
    pd.testing.assert_frame_equal(before, pd.read_csv(out / "cells.csv"))


def test_resume_refuses_another_configuration(photo_folder, tmp_path, cache):
    out = tmp_path / "run"
    run_grid(tiny_spec(photo_folder, pretexts=("none",)), out, cache, progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        run_grid(tiny_spec(photo_folder, pretexts=("none",), image_size=16), out, cache, resume=True, progress=False)


def test_colorization_on_grayscale_data_is_skipped_with_its_reason(tmp_path, cache):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "gray"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(8):
            arr = (rng.random((24, 24)) * (80 if cls == "a" else 255)).astype(np.uint8)
            Image.fromarray(arr, "L").save(root / cls / f"{i}.png")
    spec = tiny_spec(root, backbones=("resnet18", "raw_pixels"), pretexts=("none", "colorization"),
                     clusterers=("kmeans",), probe=ProbeSpec(k_per_class=3, draws=2))
    res = run_grid(spec, tmp_path / "run", cache, progress=False)
    df = pd.read_csv(tmp_path / "run" / "cells.csv")
    col = df[df.pretext == "colorization"]
    assert len(col) == 2 and (col.status == "skipped").all() and col.error.str.contains("grayscale").all()
    assert (df[df.pretext == "none"].status == "ok").all() and res.stats.trained == 0


def test_checkpoints_with_the_same_name_do_not_share_a_cache_entry(photo_folder, tmp_path, cache):
    import torch
    import torchvision

    feats = []
    for i in range(2):
        torch.manual_seed(i)
        ckpt = tmp_path / f"v{i}" / "model.pt"
        ckpt.parent.mkdir()
        torch.save(torchvision.models.resnet18().state_dict(), ckpt)
        spec = tiny_spec(photo_folder, backbones=("resnet18",), pretexts=("none",), clusterers=("kmeans",),
                         weights=str(ckpt))
        res = run_grid(spec, tmp_path / f"run{i}", cache, progress=False)
        assert res.stats.extracted == 1 and res.rows[0]["weights"].startswith("checkpoint:file/model.pt@sha256:")
        feats.append(res.rows[0]["feature_key"])
    assert feats[0] != feats[1]
