"""torchvision's VGG16 and ResNet-18/34/50 (random, ImageNet — torchvision's weights enum file, resolved and verified
by ``registry.weights.torchvision_hub`` — or a checkpoint), and ResNet-18 with the small-image (CIFAR) stem,
``resnet18_small`` (random or a checkpoint).

Stages (``--feature-layer``): ``pool1``..``pool5`` of VGG16 (after each max-pool), ``layer1``..``layer4`` of
the ResNets (RotNet found its middle blocks best)."""
from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn as nn

from benchmark.interfaces import BadInput
from registry.backbones._base import (
    BACKBONES,
    Backbone,
    BackboneFactory,
    WeightsRequest,
    describe,
    identity,
    load_checkpoint,
    no_imagenet,
    with_checkpoint,
)

RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")  # positions 4..7 of the ResNet body
VGG_POOLS = {"pool1": (4, 64), "pool2": (9, 128), "pool3": (16, 256), "pool4": (23, 512), "pool5": (30, 512)}


def _torchvision_model(arch: str, req: WeightsRequest) -> tuple[Any, str]:
    """A torchvision model (its architecture's own attributes: ``features``, ``layer1``, ...) with the weights
    of ``req``: the verified ImageNet file of the architecture's weights enum, a checkpoint, or random init."""
    import torchvision.models as tvm

    model = tvm.get_model(arch, weights=None)
    if req.init.kind == "imagenet":
        if req.init.source != "torchvision" or not req.init.path:
            raise BadInput(f"bad --init {req.init.label} for backbone {arch!r}: allowed: imagenet (torchvision's)")
        model.load_state_dict(torch.load(req.init.path, map_location="cpu", weights_only=True), strict=True)
        return model, req.init.identity
    if req.path:
        load_checkpoint(model, req.path)
        return model, identity(req, req.path)
    return model, "random"


def _cut_vgg(backbone: Backbone, layer: str) -> Backbone:
    end, dim = VGG_POOLS[layer]
    return Backbone(f"vgg16@{layer}", cast(nn.Sequential, backbone.body)[:end + 1], dim, backbone.weights,
                    init=backbone.init)


def _cut_resnet(backbone: Backbone, layer: str) -> Backbone:
    i = RESNET_STAGES.index(layer)
    body = cast(nn.Sequential, backbone.body)
    block: Any = cast(nn.Sequential, body[4 + i])[-1]  # the stage's last block: conv3 (Bottleneck) or conv2
    dim = block.conv3.out_channels if hasattr(block, "conv3") else block.conv2.out_channels
    return Backbone(f"{backbone.name}@{layer}", body[:5 + i], dim, backbone.weights, init=backbone.init)


@BACKBONES.register("vgg16")
@describe(min_image_size=32, stages=tuple(VGG_POOLS), cut=_cut_vgg)  # five 2x2 max-pools
def vgg16(image_size: int, req: WeightsRequest) -> Backbone:
    model, w = _torchvision_model("vgg16", req)
    return Backbone("vgg16", model.features, 512, w, init=req.init)


def _resnet(arch: str, dim: int) -> BackboneFactory:
    @describe(stages=RESNET_STAGES, cut=_cut_resnet)
    def build(image_size: int, req: WeightsRequest) -> Backbone:
        model, w = _torchvision_model(arch, req)
        body = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                             model.layer1, model.layer2, model.layer3, model.layer4)
        return Backbone(arch, body, dim, w, init=req.init)

    return build


for _arch, _dim in (("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)):
    BACKBONES.register(_arch)(_resnet(_arch, _dim))


def _small_stem(model: Any) -> nn.Sequential:
    """The CIFAR stem every small-image SSL recipe uses (solo-learn ``solo/backbones/resnet``, lightly's CIFAR-10
    benchmark, the MoCo CIFAR-10 demo): a 3x3 stride-1 convolution instead of the 7x7 stride-2 one and no
    max-pool, so a 32 px image leaves layer4 at 4 x 4 rather than 1 x 1 (lightly issue 1419)."""
    conv = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's ResNet
    return nn.Sequential(conv, model.bn1, model.relu, nn.Identity(),
                         model.layer1, model.layer2, model.layer3, model.layer4)


@BACKBONES.register("resnet18_small")
@describe(stages=RESNET_STAGES, cut=_cut_resnet)
def resnet18_small(image_size: int, req: WeightsRequest) -> Backbone:
    """torchvision's ResNet-18 with the small-image stem (random init: ImageNet weights are for the 7x7 stem;
    ``--weights`` takes a checkpoint of this architecture)."""
    import torchvision.models as tvm

    no_imagenet("resnet18_small", req)
    body = _small_stem(tvm.get_model("resnet18", weights=None))
    return with_checkpoint(Backbone("resnet18_small", body, 512, "random"), req)
