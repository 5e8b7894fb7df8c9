"""timm's ImageNet weights: the model's default pretrained config (``timm.models.get_pretrained_cfg``), its file
on the Hugging Face hub (``hf_hub_id``) through huggingface_hub's cache, where a file's blob is named by its
sha256 (the harness hashes the blob and compares). Fetched with ``hf_hub_download`` only where downloads are
allowed. Normalisation: the pretrained config's mean/std."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from registry.weights._base import SOURCES, Expected, WeightSource

PREFIX = "timm:"
FILES = ("model.safetensors", "pytorch_model.bin")
_SHA = re.compile(r"^[0-9a-f]{64}$")


def hf_download(repo_id: str, filename: str) -> str:
    """huggingface_hub's download into its cache (a test replaces this function)."""
    from huggingface_hub import hf_hub_download

    return str(hf_hub_download(repo_id, filename))


def _cfg(backbone: str) -> Any:
    import timm

    name = backbone[len(PREFIX):]
    return timm.models.get_pretrained_cfg(name) if timm.is_model(name) else None


def _repo(backbone: str) -> str | None:
    cfg = _cfg(backbone) if backbone.startswith(PREFIX) else None
    return getattr(cfg, "hf_hub_id", None) or None


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


@SOURCES.register("timm")
class TimmHub(WeightSource):
    name = "timm"

    def offers(self, backbone: str) -> bool:
        return _repo(backbone) is not None

    def _file(self, backbone: str) -> str:
        return str(getattr(_cfg(backbone), "hf_hub_filename", None) or FILES[0])

    def expected(self, backbone: str) -> Expected:
        repo = _repo(backbone)
        folder = os.path.join(_cache_dir(), "models--" + str(repo).replace("/", "--"))
        return Expected(self._file(backbone), folder, "", True, f"huggingface repo {repo}")

    def cached(self, backbone: str) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        repo = _repo(backbone)
        for fname in (self._file(backbone),) + FILES:
            hit = try_to_load_from_cache(str(repo), fname, cache_dir=_cache_dir())
            if isinstance(hit, str) and os.path.isfile(hit):
                return Path(hit)
        return None

    def fetch(self, backbone: str) -> Path:
        return Path(hf_download(str(_repo(backbone)), self._file(backbone)))

    def verify_against(self, backbone: str, path: Path) -> str:
        blob = os.path.basename(os.path.realpath(path))  # the cache's blobs are named by their sha256
        return blob if _SHA.match(blob) else ""

    def stats(self, backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        cfg = _cfg(backbone)
        return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)
