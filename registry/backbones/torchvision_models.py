"""torchvision's VGG16 and ResNet-18/34/50, with ImageNet weights from the local torch hub cache when present.

Stages (``--feature-layer``): ``pool1``..``pool5`` of VGG16 (after each max-pool), ``layer1``..``layer4`` of
the ResNets (RotNet found its middle blocks best)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn as nn

from registry.backbones._base import BACKBONES, Backbone, BackboneFactory, WeightsRequest, describe, load_checkpoint

RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")  # positions 4..7 of the ResNet body
VGG_POOLS = {"pool1": (4, 64), "pool2": (9, 128), "pool3": (16, 256), "pool4": (23, 512), "pool5": (30, 512)}


def _torchvision_model(arch: str, req: WeightsRequest) -> tuple[Any, str]:
    """A torchvision model (its architecture's own attributes: ``features``, ``layer1``, ...) with cached
    ImageNet weights when present locally, else random init."""
    import torchvision.models as tvm

    if req.path:
        model = tvm.get_model(arch, weights=None)
        return model, load_checkpoint(model, req.path)
    if req.use_cache:
        weights = tvm.get_model_weights(arch).DEFAULT
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        if cached.is_file():
            model = tvm.get_model(arch, weights=None)
            model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
            return model, f"imagenet:{weights.name}"
    return tvm.get_model(arch, weights=None), "random"


def _cut_vgg(backbone: Backbone, layer: str) -> Backbone:
    end, dim = VGG_POOLS[layer]
    return Backbone(f"vgg16@{layer}", cast(nn.Sequential, backbone.body)[:end + 1], dim, backbone.weights)


def _cut_resnet(backbone: Backbone, layer: str) -> Backbone:
    i = RESNET_STAGES.index(layer)
    body = cast(nn.Sequential, backbone.body)
    block: Any = cast(nn.Sequential, body[4 + i])[-1]  # the stage's last block: conv3 (Bottleneck) or conv2
    dim = block.conv3.out_channels if hasattr(block, "conv3") else block.conv2.out_channels
    return Backbone(f"{backbone.name}@{layer}", body[:5 + i], dim, backbone.weights)


@BACKBONES.register("vgg16")
@describe(min_image_size=32, stages=tuple(VGG_POOLS), cut=_cut_vgg)  # five 2x2 max-pools
def vgg16(image_size: int, req: WeightsRequest) -> Backbone:
    model, w = _torchvision_model("vgg16", req)
    return Backbone("vgg16", model.features, 512, w)


def _resnet(arch: str, dim: int) -> BackboneFactory:
    @describe(stages=RESNET_STAGES, cut=_cut_resnet)
    def build(image_size: int, req: WeightsRequest) -> Backbone:
        model, w = _torchvision_model(arch, req)
        body = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                             model.layer1, model.layer2, model.layer3, model.layer4)
        return Backbone(arch, body, dim, w)

    return build


for _arch, _dim in (("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)):
    BACKBONES.register(_arch)(_resnet(_arch, _dim))
