"""The planner: a task graph from a grid, checked without computing anything."""
import pickle

import pytest

from benchmark.config.presets import load_preset, preset_names, spec_from_config
from benchmark.config.specs import GridSpec, ProbeSpec, TrainSpec
from benchmark.interfaces import ClusterSpec
from benchmark.pipeline.plan import (
    CellTask,
    DataInfo,
    DecodeTask,
    ExtractTask,
    ProbeTask,
    ReduceTask,
    RuntimeInfo,
    TrainTask,
    parse_cell_id,
    plan,
)
from registry.base import UnknownNameError
from registry.pretexts.jigsaw import JigsawOptions

DATA = DataInfo("digits", None, "img0", "lab0", 1797, 10)
RT = RuntimeInfo("cpu", "fp32", False, True, 2)


def grid(**kw):
    base = dict(dataset="digits", backbones=("resnet18", "raw_pixels"), pretexts=("none", "rotation", "jigsaw"),
                clusterers=("kmeans", "dbscan"), train=TrainSpec(max_steps=2))
    base.update(kw)
    return GridSpec(**base)


def keys_by_kind(p):
    out = {}
    for t in p.tasks:
        out.setdefault(t.kind, []).append(t.key)
    return out


def test_the_task_graph_of_a_grid():
    p = plan(grid(), DATA, RT)
    kinds = keys_by_kind(p)
    # raw pixels have nothing to train: their rotation/jigsaw features are the 'none' features (one task)
    assert len(kinds["decode"]) == 1 and len(kinds["train"]) == 2 and len(kinds["extract"]) == 4
    assert len(kinds["probe"]) == 4 and len(kinds["reduce"]) == 8 and len(kinds["cell"]) == 8
    assert len(p.cells) == 2 * 3 * 2 and p.k == 10
    seen = set()
    for t in p.tasks:  # topological order, every dependency planned, one task per key
        assert t.key not in seen and all(d in seen for d in t.deps)
        seen.add(t.key)
    types = {DecodeTask, TrainTask, ExtractTask, ProbeTask, ReduceTask, CellTask}
    assert {type(t) for t in p.tasks} == types
    assert pickle.loads(pickle.dumps(p.tasks)) == p.tasks  # picklable: tasks can travel to other processes
    raw = [s for s in p.cells if s.backbone == "raw_pixels" and s.clusterer == "kmeans"]
    assert len({s.features_key for s in raw}) == 1 and "features = pretext none" in raw[1].notes
    dense = p.by_key[[s for s in p.cells if s.clusterer == "dbscan"][0].cell_key]
    assert p.by_key[dense.reduce_key].method == "umap"


def test_keys_hold_only_their_own_inputs():
    base = plan(grid(), DATA, RT)
    probe = plan(grid(probe=ProbeSpec(k_per_class=5)), DATA, RT)
    assert keys_by_kind(base)["extract"] == keys_by_kind(probe)["extract"]
    assert keys_by_kind(base)["cell"] == keys_by_kind(probe)["cell"]
    assert set(keys_by_kind(base)["probe"]).isdisjoint(keys_by_kind(probe)["probe"])
    gap = plan(grid(pretext_options=(("jigsaw", JigsawOptions(gap=0.3)),)), DATA, RT)
    changed = {t.key for t in gap.tasks} - {t.key for t in base.tasks}
    trains = [gap.by_key[k] for k in changed if gap.by_key[k].kind == "train"]
    assert trains and all(t.pretext == "jigsaw" for t in trains)
    extracts = [gap.by_key[k] for k in changed if gap.by_key[k].kind == "extract"]
    assert extracts and all(t.pretext == "jigsaw" for t in extracts)
    eps = plan(grid(cluster=ClusterSpec(eps=0.5)), DATA, RT)
    assert keys_by_kind(eps)["extract"] == keys_by_kind(base)["extract"]
    assert keys_by_kind(eps)["probe"] == keys_by_kind(base)["probe"]
    labels = plan(grid(), DataInfo("digits", None, "img0", "lab1", 1797, 10), RT)
    assert keys_by_kind(labels)["extract"] == keys_by_kind(base)["extract"]  # labels never change features
    assert set(keys_by_kind(labels)["cell"]).isdisjoint(keys_by_kind(base)["cell"])
    threads = plan(grid(), DATA, RuntimeInfo("cpu", "fp32", False, True, 1))
    assert set(keys_by_kind(threads)["extract"]).isdisjoint(keys_by_kind(base)["extract"])


def test_a_backbones_training_layout_is_in_its_train_key_only():
    """On CPU depthwise backbones train channels_last (benchmark.runtime.device.train_channels_last): their
    train tasks carry it (and so their keys); plain-convolution backbones keep the runtime's NCHW, and
    extraction keeps the runtime as it is."""
    p = plan(grid(backbones=("resnet18", "timm:mobilenetv3_small_100"), pretexts=("none", "rotation")), DATA, RT)
    trains = {t.backbone: t for t in p.tasks if isinstance(t, TrainTask)}
    assert trains["timm:mobilenetv3_small_100"].runtime == RuntimeInfo("cpu", "fp32", True, True, 2)
    assert trains["resnet18"].runtime == RT
    assert all(t.runtime == RT for t in p.tasks if isinstance(t, ExtractTask))
    cuda = RuntimeInfo("cuda", "bf16", True, True, 2)
    assert all(t.runtime == cuda for t in plan(grid(), DATA, cuda).tasks if isinstance(t, TrainTask))


def test_seeds_are_a_grid_axis():
    p = plan(grid(seeds=(0, 1, 2)), DATA, RT)
    assert len(p.cells) == 3 * 12 and len(keys_by_kind(p)["train"]) == 6
    assert {s.id.rsplit("/", 1)[1] for s in p.cells} == {"0", "1", "2"}
    assert parse_cell_id("timm:resnet10t/random/none/kmeans/2") == ("timm:resnet10t", "random", "none", "kmeans", 2)
    assert parse_cell_id("timm:resnet10t/none/kmeans/2") == ("timm:resnet10t", None, "none", "kmeans", 2)  # old ids
    assert parse_cell_id("timm:resnet10t/imagenet/none/kmeans") == ("timm:resnet10t", "imagenet", "none", "kmeans",
                                                                    None)


def test_names_are_validated_by_the_planner_before_any_compute():
    with pytest.raises(UnknownNameError, match="did you mean 'kmeans'"):
        plan(grid(clusterers=("kmean",)), DATA, RT)
    with pytest.raises(ValueError, match="pass --k"):
        plan(grid(), DataInfo("x", None, "i", "l", 10, 0), RT)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_is_a_typed_grid_file_that_plans(name):
    spec = spec_from_config(load_preset(name))
    p = plan(spec, DATA, RT)
    per_backbone = sum(len(spec.inits_for(b)) * len(spec.pretexts_for(b)) for b in spec.backbones)
    assert len(p.cells) == per_backbone * len(spec.clusterers) * len(spec.seeds)


def test_backbone_pretexts_cross_some_backbones_with_some_pretexts_only():
    spec = grid(backbones=("resnet18", "timm:mobilenetv3_small_100", "raw_pixels"),
                backbone_pretexts="timm:mobilenetv3_small_100=rotation+none,timm:efficientnet_lite0=jigsaw")
    p = plan(spec, DATA, RT)  # an item for a backbone outside the grid (a preset's) is ignored
    pairs = {(s.backbone, s.pretext) for s in p.cells}
    assert {pt for b, pt in pairs if b == "timm:mobilenetv3_small_100"} == {"none", "rotation"}
    assert {pt for b, pt in pairs if b == "resnet18"} == {"none", "rotation", "jigsaw"}
    assert spec.pretexts_for("timm:mobilenetv3_small_100") == ("none", "rotation")  # in --pretexts' order
    assert len(p.cells) == (3 + 2 + 3) * 2
    narrowed = grid(backbone_pretexts="resnet18=colorization+jigsaw")  # a pretext --pretexts left out: ignored
    assert narrowed.pretexts_for("resnet18") == ("jigsaw",)
    assert grid(backbone_pretexts="resnet18=colorization").pretexts_for("resnet18") == ("none", "rotation", "jigsaw")
    for bad, match in (("resnet18=rotaton", "'rotaton' is not a pretext"),
                       ("resnet18", "write backbone=PRETEXT"), ("vgg17=none", "'vgg17' is not a backbone of the grid"),
                       ("resnet18=none,resnet18=rotation", "given twice")):
        with pytest.raises(ValueError, match=f"bad --backbone-pretexts item .*{match}"):
            grid(backbone_pretexts=bad)


def test_a_preset_with_an_unknown_setting_is_refused():
    cfg = load_preset("quick")
    cfg["train"]["epoch"] = 3
    with pytest.raises(ValueError, match="bad setting train.epoch"):
        spec_from_config(cfg)


def test_raw_pixels_above_32_px_carry_their_cap_in_the_notes_and_the_feature_key():
    def raw_slots(size):
        p = plan(grid(image_size=size, pretexts=("none",), clusterers=("kmeans",)), DATA, RT)
        return [s for s in p.cells if s.backbone == "raw_pixels"], [s for s in p.cells if s.backbone == "resnet18"]

    (raw64,), (res64,) = raw_slots(64)
    (raw32,), (res32,) = raw_slots(32)
    assert "area-averaged from 64 px to 32 px" in raw64.notes and raw32.notes == "" and res64.notes == ""
    # the cap is an input of the raw-pixels features at 64 px only: other keys are those of before
    assert raw64.features_key != raw32.features_key
