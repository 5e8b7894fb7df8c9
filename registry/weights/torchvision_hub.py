"""torchvision's ImageNet weights: the architecture's weights enum (``get_model_weights(arch).DEFAULT``), its file
in the torch hub cache (``<torch.hub.get_dir()>/checkpoints/<file of the enum's url>``), whose name carries the
first hex digits of its sha256 (``resnet18-f37072fd.pth``). Downloaded with ``torch.hub.download_url_to_file``
(which checks that prefix while downloading) only where downloads are allowed; the harness hashes the cached
file itself before every use. Normalisation: the enum's own transforms (mean/std)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from registry.weights._base import SOURCES, Expected, WeightSource

ARCHS = ("vgg16", "resnet18", "resnet34", "resnet50")
_PREFIX = re.compile(r"-([0-9a-f]{6,64})\.[a-z]+$")


def download(url: str, dst: str, hash_prefix: str | None) -> None:
    """torch.hub's download (a test replaces this function: no test reaches the network)."""
    import torch.hub

    torch.hub.download_url_to_file(url, dst, hash_prefix=hash_prefix, progress=True)


def _enum(arch: str) -> Any:
    import torchvision.models as tvm

    return tvm.get_model_weights(arch).DEFAULT


@SOURCES.register("torchvision")
class TorchvisionHub(WeightSource):
    name = "torchvision"

    def offers(self, backbone: str) -> bool:
        return backbone in ARCHS

    def expected(self, backbone: str) -> Expected:
        import torch.hub

        url = _enum(backbone).url
        file = os.path.basename(url)
        m = _PREFIX.search(file)
        return Expected(file, str(Path(torch.hub.get_dir()) / "checkpoints"), m.group(1) if m else "", True)

    def fetch(self, backbone: str) -> Path:
        exp = self.expected(backbone)
        Path(exp.folder).mkdir(parents=True, exist_ok=True)
        dst = Path(exp.folder) / exp.file
        download(_enum(backbone).url, str(dst), exp.sha256 or None)
        return dst

    def stats(self, backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        tf = _enum(backbone).transforms()
        return tuple(float(v) for v in tf.mean), tuple(float(v) for v in tf.std)
