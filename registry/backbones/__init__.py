"""Backbones, one module per family in this package (discovered): torchvision VGG16 / ResNets
(``torchvision_models``), any timm model as ``timm:<name>`` (``timm_models``), the raw-pixels baseline
(``raw_pixels``) and the clustering papers' autoencoders (``paper_autoencoders``); what they share is
``_base``. A family declares each member's ``BackboneInfo`` (stages and how to cut at one included)."""
from __future__ import annotations

import functools

import torch

from benchmark.interfaces import BadInput
from registry.backbones._base import (
    BACKBONES,
    TIMM_PREFIX,
    Backbone,
    BackboneFactory,
    BackboneInfo,
    WeightsRequest,
    describe,
    load_checkpoint,
)
from registry.backbones.raw_pixels import RAW_PIXELS_MAX, raw_pixels_note, raw_pixels_size
from registry.backbones.timm_models import TIMM_INFO, build_timm, check_timm_name, timm_stages
from registry.base import UnknownNameError, unknown_message
from registry.weights import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["BACKBONES", "IMAGENET_MEAN", "IMAGENET_STD", "TIMM_PREFIX", "Backbone", "BackboneFactory",
           "BackboneInfo", "WeightsRequest", "at_layer", "backbone_info", "backbone_names", "build_backbone",
           "check_backbone", "check_image_size", "describe", "feature_dim", "feature_layers", "has_depthwise",
           "load_checkpoint",
           "min_image_size", "RAW_PIXELS_MAX", "raw_pixels_note", "raw_pixels_size"]


def backbone_info(name: str) -> BackboneInfo:
    """Metadata of a registered backbone or ``timm:<model>``."""
    if name.startswith(TIMM_PREFIX):
        return TIMM_INFO
    return getattr(BACKBONES.get(name), "info", BackboneInfo())


def min_image_size(name: str) -> int:
    return backbone_info(name).min_image_size


def feature_layers(name: str) -> tuple[str, ...]:
    """The stage names ``--feature-layer`` accepts for backbone ``name`` (empty: none)."""
    return timm_stages(name) if name.startswith(TIMM_PREFIX) else backbone_info(name).stages


def at_layer(backbone: Backbone, layer: str) -> Backbone:
    """The same weights, cut after stage ``layer``: features are that stage's output, average-pooled."""
    allowed = feature_layers(backbone.name)
    cut = backbone_info(backbone.name).cut
    if layer not in allowed or cut is None:
        raise BadInput(f"bad --feature-layer {layer!r} for backbone {backbone.name!r}: allowed: "
                       f"{', '.join(allowed) or 'none (it has no stages)'}")
    return backbone.cut_at(layer, cut)


def check_image_size(name: str, image_size: int) -> None:
    """Raise BadInput when ``image_size`` is too small for backbone ``name``, or not the size it declares."""
    fixed = backbone_info(name).input_size
    if fixed is not None and image_size != fixed:
        raise BadInput(f"bad image size {image_size} for backbone {name!r}: it takes 1 x {fixed} x {fixed} input; "
                       f"use --image-size {fixed}")
    need = min_image_size(name)
    if image_size < need:
        raise BadInput(f"bad image size {image_size} for backbone {name!r}: it needs at least {need}")


def backbone_names() -> list[str]:
    """Registered names plus the timm pattern, for listings and error messages."""
    return BACKBONES.names() + [TIMM_PREFIX + "<name>"]


def check_backbone(name: str) -> None:
    """Validate a backbone name (registry member or timm model) without building it."""
    if name.startswith(TIMM_PREFIX):
        check_timm_name(name[len(TIMM_PREFIX):])
    elif name not in BACKBONES:
        raise UnknownNameError(unknown_message("backbone", name, backbone_names(), pool=BACKBONES.names()))


def build_backbone(name: str, image_size: int, req: WeightsRequest | None = None, channels: int = 3) -> Backbone:
    """Build a backbone by name: a registry member or ``timm:<model>``; ``channels``: the data's channels
    (1 for grayscale data), used by backbones that declare ``data_channels``."""
    req = req or WeightsRequest()
    check_backbone(name)
    if name.startswith(TIMM_PREFIX):
        return build_timm(name[len(TIMM_PREFIX):], image_size, req)
    if backbone_info(name).data_channels:
        return BACKBONES.get(name)(image_size, req, channels=channels)
    return BACKBONES.get(name)(image_size, req)


@functools.lru_cache(maxsize=128)
def _meta_build(name: str, image_size: int, channels: int = 3) -> Backbone | None:
    """Backbone ``name`` built with random init on torch's meta device (no weights allocated or loaded), for
    what can be read off its modules; None where that build fails. Cached: callers only read it."""
    try:
        with torch.device("meta"):
            return build_backbone(name, image_size, WeightsRequest(), channels)
    except (BadInput, RuntimeError, NotImplementedError, TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=128)
def feature_dim(name: str, image_size: int, layer: str | None = None, channels: int = 3) -> int | None:
    """The feature dimension of backbone ``name`` (cut at ``layer``) at ``image_size``, from its meta-device
    build; None where that build or the cut fails (an estimate: then no D)."""
    backbone = _meta_build(name, image_size, channels)
    if backbone is None:
        return None
    if layer:
        try:
            with torch.device("meta"):
                backbone = at_layer(backbone, layer)  # a new wrapper: the cached build is not changed
        except (BadInput, RuntimeError, NotImplementedError, TypeError, ValueError):
            return None
    return int(backbone.dim)


def has_depthwise(name: str, image_size: int) -> bool:
    """Whether backbone ``name`` has depthwise convolutions (a Conv2d with one group per input channel:
    MobileNets, EfficientNets, ConvNeXt), from its meta-device build; False where that build fails. The CPU
    runtime trains such backbones channels_last (``benchmark.runtime.device``)."""
    backbone = _meta_build(name, image_size)
    return backbone is not None and any(isinstance(m, torch.nn.Conv2d) and 1 < m.groups == m.in_channels
                                        for m in backbone.modules())
