import numpy as np
import pytest
import torch

from benchmark.config.specs import TrainSpec
from benchmark.train.loop import extract_features, train_pretext
from registry.backbones import build_backbone
from registry.pretexts import build_pretext
from tests.conftest import make_photo


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    arr = [np.asarray(make_photo(i % 2, rng, (32, 32))).transpose(2, 0, 1) for i in range(32)]
    return np.stack(arr).astype(np.uint8)


def test_rotation_batch_holds_all_four_rotations():
    x = torch.rand(3, 3, 8, 8)
    inputs, targets = build_pretext("rotation").make_batch(x, torch.Generator())
    assert inputs.shape == (12, 3, 8, 8) and targets.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3


def test_rotation_loss_falls_and_accuracy_beats_chance(images, cpu):
    bb = build_backbone("timm:resnet10t", 32)
    spec = TrainSpec(epochs=15, batch_size=16, lr=0.05)
    res, _ = train_pretext(bb, build_pretext("rotation"), images, spec, cpu, seed=0, progress=False)
    assert res.steps == 30 and len(res.epoch_losses) == 15
    assert np.mean(res.epoch_losses[-3:]) < np.mean(res.epoch_losses[:3])
    assert res.final_acc > 0.25 + 0.15  # chance is 1/4


def test_training_is_seeded(images, cpu):
    spec = TrainSpec(epochs=1, batch_size=8, max_steps=3)
    losses = []
    for _ in range(2):
        torch.manual_seed(123)
        bb = build_backbone("resnet18", 32)
        res, _ = train_pretext(bb, build_pretext("rotation"), images, spec, cpu, seed=4, progress=False)
        losses.append(res.step_losses)
    assert res.steps == 3 and losses[0] == losses[1]


def test_channels_last_training_is_the_same_method_as_nchw(images, cpu):
    """The CPU trains depthwise backbones channels_last (a speed choice): the same seeded steps give the same
    losses and weights as NCHW up to float reordering."""
    from dataclasses import replace

    spec = TrainSpec(epochs=1, batch_size=8, max_steps=3)
    runs = []
    for layout in (False, True):
        torch.manual_seed(7)
        bb = build_backbone("timm:mobilenetv3_small_100", 32)
        res, _ = train_pretext(bb, build_pretext("rotation"), images, spec, replace(cpu, channels_last=layout),
                               seed=4, progress=False)
        runs.append((res.step_losses, {k: v.contiguous() for k, v in bb.state_dict().items()}))
    assert np.allclose(runs[0][0], runs[1][0], rtol=1e-4, atol=1e-5)
    assert all(torch.allclose(runs[0][1][k], runs[1][1][k], rtol=1e-3, atol=1e-4) for k in runs[0][1])


def test_extract_features_shape_and_batches_agree(images, cpu):
    bb = build_backbone("resnet18", 32)
    f1, secs = extract_features(bb, images, cpu, batch_size=5, progress=False)
    f2, _ = extract_features(bb, images, cpu, batch_size=32, progress=False)
    assert f1.shape == (32, 512) and f1.dtype == np.float32 and secs > 0
    np.testing.assert_allclose(f1, f2, rtol=1e-4, atol=1e-5)


def test_device_batches_equal_the_plain_conversion_for_a_memory_mapped_store(tmp_path):
    """The loader's CPU path (the CUDA path's equivalent): uint8 rows of a read-only memory map, by index
    arrays or slices, come out as float in [0, 1], channels_last when asked, in order."""
    import numpy as np
    import torch

    from benchmark.data.loader import batches, bytes_per_batch
    from benchmark.runtime.device import select_runtime

    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (10, 3, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "s.npy", data)
    store = np.load(tmp_path / "s.npy", mmap_mode="r")
    rt = select_runtime("cpu", False, False)
    index = [np.array([3, 1]), slice(5, 9), np.array([0])]
    got = list(batches(store, index, rt, channels_last=True))
    for idx, x in zip(index, got, strict=False):
        assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(x, torch.from_numpy(data[idx]).float().mul_(1.0 / 255.0))
    assert len(got) == 3 and bytes_per_batch(4, 8) == 4 * 3 * 64


def test_training_reads_the_loss_from_the_device_once_per_sync_window(monkeypatch):
    """No host sync per step: the loss is read every SYNC_EVERY steps (and at the end), and a diverging
    loss is still reported with the step where it happened."""
    import numpy as np

    from benchmark.config.specs import TrainSpec
    from benchmark.runtime.device import select_runtime
    from benchmark.train import loop as train_mod
    from registry.backbones import build_backbone
    from registry.pretexts import build_pretext

    reads = []
    real = train_mod._check_finite
    monkeypatch.setattr(train_mod, "_check_finite",
                        lambda losses, first, *a: reads.append(first) or real(losses, first, *a))
    monkeypatch.setattr(train_mod, "SYNC_EVERY", 4)
    images = np.random.default_rng(0).integers(0, 256, (40, 3, 16, 16), dtype=np.uint8)
    rt = select_runtime("cpu", False, False)
    res, _ = train_mod.train_pretext(build_backbone("timm:resnet10t", 16), build_pretext("rotation"), images,
                                     TrainSpec(epochs=3, batch_size=8), rt, seed=0, progress=False)
    assert res.steps == 15 and reads == [0, 4, 8, 12] and len(res.step_losses) == 15 and len(res.epoch_losses) == 3
    with pytest.raises(RuntimeError, match="diverged .* at step"):
        train_mod.train_pretext(build_backbone("timm:resnet10t", 16), build_pretext("rotation"), images,
                                TrainSpec(epochs=1, batch_size=8, lr=1e12), rt, seed=0, progress=False)


def test_compile_trains_and_extracts_the_same_numbers_and_times_compilation_apart(monkeypatch):
    """--compile (here with torch.compile's aot_eager backend: inductor takes ~40 s per model on 2 cores)
    gives the eager numbers, reports the compile time apart from the training/extraction seconds, and
    leaves the backbone's own forward in place afterwards."""
    from dataclasses import replace

    import numpy as np

    from benchmark.runtime.device import select_runtime
    from benchmark.train.loop import train_pretext

    monkeypatch.setenv("SSLBENCH_COMPILE_BACKEND", "aot_eager")
    images = np.random.default_rng(0).integers(0, 256, (24, 3, 16, 16), dtype=np.uint8)
    eager = select_runtime("cpu", False, False)
    comp = replace(eager, compile=True)
    results = []
    for rt in (eager, comp):
        bb = build_backbone("timm:resnet10t", 16)
        res, _ = train_pretext(bb, build_pretext("rotation"), images, TrainSpec(epochs=1, batch_size=8), rt, 0,
                               progress=False)
        timing = {}
        feats, secs = extract_features(bb, images, rt, batch_size=8, progress=False, timing=timing)
        assert "features" not in vars(bb) and secs > 0
        results.append((res, feats, timing))
    (r0, f0, t0), (r1, f1, t1) = results
    assert r0.compile_s == 0 and t0["compile_s"] == 0 and r1.compile_s > 0 and t1["compile_s"] > 0
    np.testing.assert_allclose(r0.step_losses, r1.step_losses, rtol=1e-4)
    np.testing.assert_allclose(f0, f1, rtol=1e-3, atol=1e-4)


def test_plateau_rule_stops_when_the_pretext_accuracy_stops_improving():
    """The training budget rule of the reproductions: epochs stop once the pretext's own accuracy has not
    improved by more than plateau_delta for plateau_patience epochs (it never looks at the probe); with a
    delta of 1 no epoch can improve, so it stops after the first epoch plus the patience."""
    from benchmark.runtime.device import select_runtime

    images = np.random.default_rng(0).integers(0, 256, (32, 3, 16, 16), dtype=np.uint8)
    rt = select_runtime("cpu", False, False)
    res, _ = train_pretext(build_backbone("timm:resnet10t", 16), build_pretext("rotation"), images,
                           TrainSpec(epochs=20, batch_size=16, plateau_patience=2, plateau_delta=1.0), rt, 0,
                           progress=False)
    assert res.stopped_at_epoch == 3 and res.steps == 3 * 2 and len(res.epoch_losses) == 3
    res, _ = train_pretext(build_backbone("timm:resnet10t", 16), build_pretext("rotation"), images,
                           TrainSpec(epochs=2, batch_size=16, lr_schedule="constant"), rt, 0, progress=False)
    assert res.stopped_at_epoch is None and res.steps == 4


class _Died(Exception):
    """Stands in for SIGKILL: the training stops right after a checkpoint is on disk."""


def _died_after(path, steps: int):
    from benchmark.train.checkpoint import Checkpoint

    class Dying(Checkpoint):
        def save(self, state):
            super().save(state)
            if state["step"] >= steps:
                raise _Died

    return Dying(path, every_s=0)


@pytest.mark.parametrize("pretext,plateau", [("rotation", 1), ("jigsaw", None)])
def test_a_training_resumed_from_its_checkpoint_ends_as_one_that_never_stopped(tmp_path, monkeypatch, pretext,
                                                                                plateau):
    """Killed after step 6 of 4-step epochs (mid epoch 2) and started again in a new model: the same weights,
    head, step losses, last accuracy and plateau decision, bit for bit, as one run straight through. With
    patience 1 and delta 1 the plateau rule stops after epoch 2 only if its state was restored (a fresh rule
    would count epoch 2 as an improvement); jigsaw draws its permutations and tile offsets from the seeded
    generator, whose state the checkpoint carries."""
    import benchmark.train.loop as train
    from benchmark.runtime.device import select_runtime
    from benchmark.train.checkpoint import Checkpoint

    monkeypatch.setattr(train, "SYNC_EVERY", 2)
    images = np.random.default_rng(0).integers(0, 256, (32, 3, 16, 16), dtype=np.uint8)
    rt = select_runtime("cpu", False, False)
    spec = TrainSpec(epochs=4, batch_size=8, plateau_patience=plateau, plateau_delta=1.0)

    def run(checkpoint):
        torch.manual_seed(0)
        bb = build_backbone("timm:resnet10t", 16)
        res, head = train_pretext(bb, build_pretext(pretext), images, spec, rt, 3, False, checkpoint)
        return res, bb.state_dict(), head.state_dict()

    ref, ref_bb, ref_head = run(None)
    path = tmp_path / "ck.pt"
    with pytest.raises(_Died):
        run(_died_after(path, 6))
    assert Checkpoint(path).load()["step"] == 6
    got, got_bb, got_head = run(Checkpoint(path, every_s=3600))
    assert got.resumed_at_step == 6 and ref.resumed_at_step is None
    assert got.steps == ref.steps == (8 if plateau else 16)
    assert got.stopped_at_epoch == ref.stopped_at_epoch == (2 if plateau else None)
    assert got.step_losses == ref.step_losses and got.epoch_losses == ref.epoch_losses
    assert got.final_acc == ref.final_acc and got.seconds > 0
    for want, have in ((ref_bb, got_bb), (ref_head, got_head)):
        assert want.keys() == have.keys()
        for k in want:
            assert torch.equal(want[k], have[k]), k


def test_checkpoints_are_written_when_due_and_a_damaged_one_means_starting_over(tmp_path, monkeypatch):
    import benchmark.train.loop as train
    from benchmark.runtime.device import select_runtime
    from benchmark.train.checkpoint import Checkpoint, checkpoint_every_s

    monkeypatch.setattr(train, "SYNC_EVERY", 2)
    images = np.random.default_rng(0).integers(0, 256, (16, 3, 16, 16), dtype=np.uint8)
    rt = select_runtime("cpu", False, False)
    spec = TrainSpec(epochs=3, batch_size=8)
    bb = build_backbone("timm:resnet10t", 16)
    never = Checkpoint(tmp_path / "never.pt", every_s=3600)
    res, _ = train_pretext(bb, build_pretext("rotation"), images, spec, rt, 0, False, never)
    assert res.checkpoints == 0 and not never.path.exists()
    every = Checkpoint(tmp_path / "every.pt", every_s=0)
    res, _ = train_pretext(build_backbone("timm:resnet10t", 16), build_pretext("rotation"), images, spec, rt, 0,
                           False, every)
    assert res.checkpoints == 2 and every.load()["step"] == 4  # sync windows after steps 2 and 4, not the last
    every.path.write_bytes(every.path.read_bytes()[:-5] + b"xxxxx")
    with pytest.warns(UserWarning, match="does not match its checksum"):
        assert every.load() is None
    with pytest.warns(UserWarning, match="does not match its checksum"):
        res, _ = train_pretext(build_backbone("timm:resnet10t", 16), build_pretext("rotation"), images, spec, rt,
                               0, False, Checkpoint(every.path, every_s=3600))
    assert res.resumed_at_step is None and res.steps == 6
    monkeypatch.setenv("SSLBENCH_CHECKPOINT_EVERY_S", "soon")
    with pytest.raises(ValueError, match="bad SSLBENCH_CHECKPOINT_EVERY_S 'soon': allowed: a number"):
        checkpoint_every_s()
    monkeypatch.setenv("SSLBENCH_CHECKPOINT_EVERY_S", "0")
    assert checkpoint_every_s() == 0.0
    (tmp_path / ".every.pt.abc123.tmp").write_bytes(b"half")  # what a kill -9 during a save leaves
    (tmp_path / ".other.pt.abc123.tmp").write_bytes(b"half")  # another training's: kept
    every.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.abc123.tmp"]


def test_features_written_into_a_memory_map_by_stages_equal_the_in_memory_ones(images, cpu, tmp_path, monkeypatch):
    from benchmark.train import loop

    bb = build_backbone("resnet18", 32)
    whole, _ = extract_features(bb, images, cpu, batch_size=3, progress=False)
    monkeypatch.setattr(loop, "STAGE_BATCHES", 2)  # 6 rows held at a time: several flushes and a short last one
    out = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float32, shape=whole.shape)
    got, _ = extract_features(bb, images, cpu, batch_size=3, progress=False, out=out)
    assert got is out
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), whole)
