import numpy as np
import pytest
import torch

from benchmark.specs import TrainSpec
from benchmark.train import extract_features, train_pretext
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


def test_extract_features_shape_and_batches_agree(images, cpu):
    bb = build_backbone("resnet18", 32)
    f1, secs = extract_features(bb, images, cpu, batch_size=5, progress=False)
    f2, _ = extract_features(bb, images, cpu, batch_size=32, progress=False)
    assert f1.shape == (32, 512) and f1.dtype == np.float32 and secs > 0
    np.testing.assert_allclose(f1, f2, rtol=1e-4, atol=1e-5)
