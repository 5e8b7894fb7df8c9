"""The staged pipeline end to end: only what changed is recomputed; resume extends a run."""
import json
from dataclasses import replace

import pandas as pd

from benchmark.cli.main import main
from benchmark.config.specs import GridSpec, ProbeSpec, TrainSpec
from benchmark.driver.run import run_grid
from benchmark.interfaces import ClusterSpec
from registry.pretexts.jigsaw import JigsawOptions


def spec_for(folder, **kw):
    base = dict(dataset=str(folder), backbones=("resnet18", "raw_pixels"), pretexts=("none", "rotation", "jigsaw"),
                clusterers=("kmeans",), image_size=32, device="cpu", train=TrainSpec(batch_size=8, max_steps=2),
                probe=ProbeSpec(k_per_class=4, draws=2), cluster=ClusterSpec(min_samples=3))
    base.update(kw)
    return GridSpec(**base)


def snapshot(cache, kind):
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in (cache / kind).glob("*")}


def computed(out):
    return json.loads((out / "run.json").read_text())["computed"]


def test_changing_the_probe_recomputes_only_probes(photo_folder, tmp_path, cache):
    out = tmp_path / "run"
    spec = spec_for(photo_folder)
    run_grid(spec, out, cache, progress=False)
    before = pd.read_csv(out / "cells.csv")
    feats, weights = snapshot(cache, "features"), snapshot(cache, "weights")
    run_grid(replace(spec, probe=ProbeSpec(k_per_class=3, draws=2)), out, cache, resume=True, progress=False)
    c = computed(out)
    assert (c["trained"], c["extracted"], c["clustered"], c["decoded_images"]) == (0, 0, 0, 0)
    assert c["probed"] == 4  # resnet18 x 3 pretexts + raw pixels' one feature set
    assert snapshot(cache, "features") == feats and snapshot(cache, "weights") == weights  # none new or rewritten
    after = pd.read_csv(out / "cells.csv")
    same = [c for c in before.columns if c not in ("linear_probe_acc", "linear_probe_std", "probe_key", "notes")]
    pd.testing.assert_frame_equal(before[same], after[same])
    assert (before["probe_key"] != after["probe_key"]).all()


def test_changing_a_pretext_option_retrains_only_that_pretext(photo_folder, tmp_path, cache):
    spec = spec_for(photo_folder)
    run_grid(spec, tmp_path / "a", cache, progress=False)
    res = run_grid(replace(spec, pretext_options=(("jigsaw", JigsawOptions(gap=0.3)),)), tmp_path / "b", cache,
                   progress=False)
    assert (res.stats.trained, res.stats.extracted) == (1, 1)
    a, b = pd.read_csv(tmp_path / "a" / "cells.csv"), pd.read_csv(tmp_path / "b" / "cells.csv")
    changed = a["feature_key"] != b["feature_key"]
    assert set(a[changed]["pretext"]) == {"jigsaw"} and set(a[changed]["backbone"]) == {"resnet18"}


def test_resume_extends_a_run_with_more_clusterers_and_seeds(photo_folder, tmp_path, cache):
    out = tmp_path / "run"
    spec = spec_for(photo_folder, pretexts=("none",))
    run_grid(spec, out, cache, progress=False)
    first = pd.read_csv(out / "cells.csv")
    res = run_grid(replace(spec, clusterers=("kmeans", "faiss_kmeans"), seeds=(0, 1)), out, cache, resume=True,
                   progress=False)
    df = pd.read_csv(out / "cells.csv")
    assert len(df) == 8 and res.stats.resumed_cells == 2 and res.stats.extracted == 2  # seed 1 only
    kept = df[(df.clusterer == "kmeans") & (df.seed == 0)].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, first)
    assign = pd.read_csv(out / "assignments.csv")
    assert {"resnet18/random/none/faiss_kmeans/1", "raw_pixels/none/none/kmeans/0"} <= set(assign.columns)


def test_backbone_pretexts_limit_a_backbone_and_resume_keeps_the_earlier_pairs(photo_folder, tmp_path, cache):
    out = tmp_path / "run"
    spec = spec_for(photo_folder, pretexts=("none", "rotation"), backbone_pretexts="resnet18=none")
    run_grid(spec, out, cache, progress=False)
    first = pd.read_csv(out / "cells.csv")
    assert set(zip(first.backbone, first.pretext, strict=True)) == {("resnet18", "none"), ("raw_pixels", "none"),
                                                       ("raw_pixels", "rotation")}
    # resumed without the limit: extended by resnet18/rotation; then resumed with it again: every row kept
    run_grid(replace(spec, backbone_pretexts=None), out, cache, resume=True, progress=False)
    res = run_grid(spec, out, cache, resume=True, progress=False)
    df = pd.read_csv(out / "cells.csv")
    assert len(df) == 4 and res.stats.resumed_cells == 4
    assert ("resnet18", "rotation") in set(zip(df.backbone, df.pretext, strict=True))


def test_plan_command_and_dry_run_print_the_graph_without_computing(photo_folder, tmp_path, capsys):
    cache = tmp_path / "c"
    args = ["--dataset", str(photo_folder), "--backbones", "raw_pixels", "--pretexts", "none", "--clusterers",
            "kmeans", "--probe-k", "4", "--cache-dir", str(cache), "--seed", "0"]
    assert main(["plan", *args]) == 0
    text = capsys.readouterr().out
    assert "| decode  |       1 |        0 |            1 |" in text and "1 cells" in text
    assert main(["run", "--dry-run", "--out", str(tmp_path / "r"), *args]) == 0
    assert not (tmp_path / "r").exists() and not (cache / "images").exists()
    assert main(["run", "--no-progress", "--out", str(tmp_path / "r"), *args]) == 0
    capsys.readouterr()
    assert main(["plan", *args]) == 0
    assert "| cell    |       1 |        1 |            0 |" in capsys.readouterr().out


def test_cache_prune_frees_what_no_run_uses(photo_folder, tmp_path, capsys):
    cache, runs = tmp_path / "c", tmp_path / "runs"
    args = ["--dataset", str(photo_folder), "--backbones", "raw_pixels", "--pretexts", "none", "--probe-k", "4",
            "--cache-dir", str(cache), "--no-progress", "--seed", "0"]
    assert main(["run", "--clusterers", "kmeans", "--out", str(runs / "a"), *args]) == 0
    assert main(["run", "--clusterers", "faiss_kmeans", "--out", str(tmp_path / "elsewhere"), *args]) == 0
    n_cells = len(list((cache / "cells").glob("*.json")))
    assert main(["cache", "--cache-dir", str(cache), "--prune", "--runs", str(runs)]) == 0
    assert "freed" in capsys.readouterr().out
    assert len(list((cache / "cells").glob("*.json"))) == n_cells - 1
    assert main(["report", str(runs / "a")]) == 0  # what run a uses is still there


def test_adding_photos_decodes_only_the_new_ones_and_a_changed_photo_is_seen(photo_folder, tmp_path, cache):
    import numpy as np

    from tests.conftest import make_photo

    spec = spec_for(photo_folder, backbones=("raw_pixels",), pretexts=("none",))
    first = run_grid(spec, tmp_path / "a", cache, progress=False)
    assert first.stats.decoded == 24
    rng = np.random.default_rng(5)
    for i in range(3):
        make_photo(0, rng, (40, 40)).save(photo_folder / "stripes" / f"new_{i}.png")
    second = run_grid(spec, tmp_path / "b", cache, progress=False)
    assert second.stats.decoded == 3 and second.images.n == 27
    target = photo_folder / "checks" / "img_00.png"
    st = target.stat()
    make_photo(0, rng, (40, 40)).save(target)  # other pixels, then the old size and time put back
    import os

    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    third = run_grid(spec, tmp_path / "c", cache, progress=False)
    assert third.stats.decoded == 1  # the inode memo sees the rewrite; the content key decodes it again


def test_the_train_stage_trains_in_the_layout_its_task_was_planned_with(photo_folder, tmp_path, cache, monkeypatch):
    """The CPU trains depthwise backbones channels_last and plain ones NCHW: the stage follows the plan."""
    from benchmark.pipeline import stages

    layouts, real = {}, stages.train_pretext

    def spy(backbone, pretext, images, spec, rt, *a, **kw):
        layouts[backbone.name] = rt.channels_last
        return real(backbone, pretext, images, spec, rt, *a, **kw)

    monkeypatch.setattr(stages, "train_pretext", spy)
    run_grid(spec_for(photo_folder, backbones=("resnet18", "timm:mobilenetv3_small_100"), pretexts=("rotation",)),
             tmp_path / "run", cache, progress=False)
    assert layouts == {"resnet18": False, "timm:mobilenetv3_small_100": True}
