"""Fashion-MNIST from Debian's dataset-fashion-mnist (IDX files), --split, --limit, raw pixels in [0, 1]."""
import gzip
from pathlib import Path

import numpy as np
import pytest

from benchmark.interfaces import BadInput
from registry.datasets import fashion_mnist as fm
from registry.datasets import limit_listing, resolve_dataset

REAL = (fm.DEFAULT_ROOT / "t10k-images-idx3-ubyte.gz").is_file()


def _idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for part, n in (("train", 30), ("test", 20)):
        img, lab = fm.FILES[part]
        _idx(tmp_path / f"{img}.gz", rng.integers(0, 256, (n, 28, 28)))
        _idx(tmp_path / f"{lab}.gz", np.arange(n) % 10)
    monkeypatch.setenv(fm.ROOT_ENV, str(tmp_path))
    return tmp_path


def test_splits_read_the_idx_files_with_class_names(fake_root):
    sizes = {s: len(resolve_dataset("fashion_mnist", split=s).list().names) for s in ("train", "test", "all")}
    assert sizes == {"train": 30, "test": 20, "all": 50}
    lst = resolve_dataset("fashion_mnist").list()  # default: test
    assert len(lst.names) == 20 and lst.names[0] == "fashion_mnist/test/60000"
    assert lst.labels[:2] == ["T-shirt/top", "Trouser"] and lst.labels[9] == "Ankle boot"
    assert lst.pixels()[0].shape == (28, 28)
    assert lst.fingerprint != resolve_dataset("fashion_mnist", split="train").list().fingerprint


def test_missing_files_and_bad_splits_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(fm.ROOT_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(BadInput, match="install it: sudo apt-get install dataset-fashion-mnist"):
        resolve_dataset("fashion_mnist").list()
    with pytest.raises(BadInput, match="bad --split 'valid': allowed: train, test, all"):
        resolve_dataset("fashion_mnist", split="valid").list()
    with pytest.raises(BadInput, match="bad --split 'train' for data set 'digits': only fashion_mnist has splits"):
        resolve_dataset("digits", split="train")
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as fh:
        fh.write(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(BadInput, match="2 bytes for shape"):
        fm.read_idx(bad)


def test_limit_takes_a_seeded_subset_with_its_own_fingerprint(fake_root):
    full = resolve_dataset("fashion_mnist", split="all").list()
    sub = limit_listing(full, 12)
    assert len(sub.names) == 12 and sub.names == sorted(sub.names) and set(sub.names) <= set(full.names)
    assert limit_listing(full, 12).names == sub.names and sub.fingerprint != full.fingerprint
    px = dict(zip(full.names, full.pixels(), strict=False))
    assert all(np.array_equal(px[n], p) for n, p in zip(sub.names, sub.pixels(), strict=False))
    assert limit_listing(full, 500) is full


def test_raw_pixels_keep_the_datas_channels_in_0_1():
    import torch

    from registry.backbones import build_backbone
    from registry.pretexts import normalize

    x = torch.rand(2, 1, 28, 28).expand(2, 3, 28, 28).contiguous()
    gray = build_backbone("raw_pixels", 28, channels=1)
    f = gray.features(normalize(x))
    assert gray.dim == f.shape[1] == 784 and torch.allclose(f, x[:, 0].flatten(1), atol=1e-6)
    rgb = build_backbone("raw_pixels", 28)
    assert rgb.dim == rgb.features(normalize(x)).shape[1] == 3 * 784


@pytest.mark.skipif(not REAL, reason="dataset-fashion-mnist is not installed (make test installs it where apt-get can)")
def test_the_debian_package_holds_70000_images_of_10_balanced_classes():
    x, y = fm.load("all")
    assert x.shape == (70000, 28, 28) and np.bincount(y).tolist() == [7000] * 10
    assert fm.package_version()


def test_train_split_trains_on_one_split_and_clusters_the_other(fake_root, tmp_path):
    """--train-split train --split test: the pretext trains on the 30 training images, the rows, features
    and assignments are the 20 test images. With --knn-reference train the 30 training images' features (the
    same trained weights) are the neighbours of the 20 test images (knn_full_acc)."""
    import pandas as pd

    from benchmark.cli.main import main
    from benchmark.config.presets import spec_from_config
    from benchmark.driver.run import make_plan
    from benchmark.pipeline.plan import TrainTask
    from benchmark.store.artifacts import ArtifactStore

    args = ["--dataset", "fashion_mnist", "--split", "test", "--train-split", "train", "--backbones", "seed_conv_ae",
            "--pretexts", "autoencoder", "--clusterers", "kmeans", "--image-size", "28", "--max-steps", "2",
            "--batch-size", "8", "--k", "2", "--probe-k", "2", "--knn-reference", "train"]
    assert main(["run", "--preset", "quick", *args, "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"),
                 "--no-progress"]) == 0
    assign = pd.read_csv(tmp_path / "r" / "assignments.csv")
    assert len(assign) == 20 and assign.path.str.contains("/test/").all()
    cells = pd.read_csv(tmp_path / "r" / "cells.csv")
    assert 0 <= cells["knn_full_acc"].iloc[0] <= 1
    config = {"dataset": "fashion_mnist", "split": "test", "train_split": "train", "image_size": 28,
              "backbones": ["seed_conv_ae"], "pretexts": ["autoencoder"], "clusterers": ["kmeans"],
              "probe": {"knn_reference": "train"}}
    store = ArtifactStore(tmp_path / "c")
    plan_, _rec, _rt = make_plan(spec_from_config(config), store)
    train = [t for t in plan_.tasks if isinstance(t, TrainTask)]
    decodes = [t for t in plan_.tasks if t.kind == "decode"]
    assert len(decodes) == 2 and train[0].images_key != plan_.data.images_key == decodes[0].key
    assert plan_.data.knn_images_key == train[0].images_key  # the reference is the training split's decode
    extracts = [t for t in plan_.tasks if t.kind == "extract"]
    assert {t.images_key for t in extracts} == {d.key for d in decodes} and {t.train_key for t in extracts} == \
        {train[0].key}
    probe = store.get_record("probes", cells["probe_key"].iloc[0])
    assert (probe["knn_full_n_reference"], probe["knn_full_n_query"], probe["knn_full_k"]) == (30, 20, 30)
    with pytest.raises(BadInput, match="bad --knn-reference 'train': it shares 30 images with the scored split"):
        make_plan(spec_from_config({**config, "split": "all"}), store)
