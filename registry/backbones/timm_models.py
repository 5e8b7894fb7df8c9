"""Any timm model as ``timm:<name>``: timm's own features and pooling, its pretrained weights from the local
Hugging Face cache when present; its stages are its ``feature_info``."""
from __future__ import annotations

import functools
import os
from typing import Any, cast

import torch
import torch.nn as nn

from registry.backbones._base import TIMM_PREFIX, Backbone, BackboneInfo, WeightsRequest, load_checkpoint
from registry.base import UnknownNameError, unknown_message


class _TimmBody(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model: Any = model  # a timm model: forward_features, forward_head, ... are timm's, not nn.Module's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def _timm_cached(name: str) -> bool:
    """Whether timm's pretrained weights for ``name`` are already in the local Hugging Face cache."""
    try:
        import timm
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(name)
        repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if not repo:
            return False
        for fname in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(repo, fname)
            if isinstance(hit, str) and os.path.isfile(hit):
                return True
    except (ImportError, OSError, ValueError, KeyError, AttributeError, RuntimeError):  # no cache, no config
        return False
    return False


def timm_names() -> list[str]:
    import timm

    return timm.list_models()


def check_timm_name(name: str) -> None:
    """Raise UnknownNameError unless timm can create ``name``."""
    import timm

    if not timm.is_model(name):
        raise UnknownNameError(unknown_message("timm model", name, ["any name in timm.list_models()"],
                                               pool=timm_names()))


def build_timm(name: str, image_size: int, req: WeightsRequest) -> Backbone:
    import timm

    check_timm_name(name)
    pretrained = bool(req.use_cache and not req.path and _timm_cached(name))
    if pretrained:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are cached: never reach the network
    model: Any  # a timm model: forward_head and num_features are timm's API
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=0, img_size=image_size)
    except TypeError:  # CNNs take no img_size
        model = timm.create_model(name, pretrained=pretrained, num_classes=0)
    weights = "imagenet:timm" if pretrained else "random"
    if req.path:
        weights = load_checkpoint(model, req.path)

    dim = int(getattr(model, "head_hidden_size", None) or model.num_features)  # pre-logits width
    return Backbone(TIMM_PREFIX + name, _TimmBody(model), dim, weights, pool_fn=_TimmPool(model))


class _TimmPool:
    """timm's own pooling (``forward_head``: for some models with parameters, MobileNetV3's conv_head). An
    object, not a closure: ``copy.deepcopy`` of the backbone (a momentum encoder, split_brain's second copy)
    then pools with the copy's own head."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, f: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(f, pre_logits=True)


class _TimmStage(nn.Module):
    def __init__(self, model: nn.Module, index: int) -> None:
        super().__init__()
        self.model: Any = model  # a timm model (forward_intermediates)
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_intermediates(x, indices=[self.index], intermediates_only=True)[0]


@functools.lru_cache(maxsize=None)
def timm_stages(name: str) -> tuple[str, ...]:
    """The stage names of timm model ``timm:<name>`` (cached: the model is built to read them)."""
    import timm

    model = timm.create_model(name[len(TIMM_PREFIX):], pretrained=False, num_classes=0)
    return tuple(str(f["module"]) for f in getattr(model, "feature_info", []))


def _cut_timm(backbone: Backbone, layer: str) -> Backbone:
    model = cast(_TimmBody, backbone.body).model
    index = timm_stages(backbone.name).index(layer)
    dim = int(model.feature_info[index]["num_chs"])
    return Backbone(f"{backbone.name}@{layer}", _TimmStage(model, index), dim, backbone.weights)


TIMM_INFO = BackboneInfo(cut=_cut_timm)  # stages: timm_stages(name), read from the model
