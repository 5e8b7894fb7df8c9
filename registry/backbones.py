"""Backbones: torchvision VGG16 / ResNets, any timm model (``timm:<name>``) and the raw-pixels baseline.

A backbone maps (B,3,S,S) normalized images to a feature map (B,C,h,w) (or tokens (B,L,C) for
transformers) and ``pool`` turns that into (B,D)."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from benchmark.interfaces import BadInput
from registry.base import Registry, UnknownNameError, unknown_message

TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class WeightsRequest:
    """Where pretrained weights may come from: a local checkpoint path, or the local caches only."""

    path: str | None = None
    use_cache: bool = True  # torchvision / timm caches; never downloads


class Backbone(nn.Module):
    """Feature extractor with a declared feature dimension and a pooling to (B, D)."""

    def __init__(self, name: str, body: nn.Module, dim: int, weights: str,
                 pool_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 trainable: bool = True, make_decoder: Callable[[], nn.Module] | None = None) -> None:
        super().__init__()
        self.name = name
        self.body = body
        self.dim = dim
        self.weights = weights  # "random", "imagenet (torchvision cache)", a checkpoint path, ...
        self.trainable = trainable
        self._pool_fn = pool_fn
        self.make_decoder = make_decoder  # its own decoder (paper autoencoders): the autoencoder pretext uses it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) -> feature map (B,C,h,w) or tokens (B,L,C)."""
        return self.body(x)

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """Feature map -> (B, D) float features."""
        if self._pool_fn is not None:
            return self._pool_fn(fmap)
        if fmap.dim() == 4:
            return fmap.mean(dim=(2, 3))
        if fmap.dim() == 3:
            return fmap.mean(dim=1)
        return fmap.flatten(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward(x))


BackboneFactory = Callable[[int, WeightsRequest], Backbone]
BACKBONES: Registry[BackboneFactory] = Registry("backbone")


@dataclass(frozen=True)
class BackboneInfo:
    """What the harness may know about a backbone without building it."""

    trainable: bool = True  # False: no parameters, a pretext has nothing to train (raw pixels)
    min_image_size: int = 8  # smaller inputs vanish in the network
    uses_weights: bool = True  # False: --weights does not apply
    data_channels: bool = False  # True: built for the data's channels (1 for grayscale data, else 3)
    input_size: int | None = None  # the one image size it takes (paper autoencoders: 28 for 1 x 28 x 28)
    spatial: bool = True  # False: its output is a vector (no feature map for a generic decoder)
    own_decoder: bool = False  # True: it brings the decoder the autoencoder pretext uses


def describe(**info: object) -> Callable[[BackboneFactory], BackboneFactory]:
    """Attach ``BackboneInfo`` fields to a factory: ``@describe(min_image_size=32)``."""

    def deco(factory: BackboneFactory) -> BackboneFactory:
        factory.info = BackboneInfo(**info)  # type: ignore[attr-defined, arg-type]
        return factory

    return deco


def backbone_info(name: str) -> BackboneInfo:
    """Metadata of a registered backbone or ``timm:<model>`` (timm models: the defaults)."""
    if name.startswith(TIMM_PREFIX):
        return BackboneInfo()
    return getattr(BACKBONES.get(name), "info", BackboneInfo())


def min_image_size(name: str) -> int:
    return backbone_info(name).min_image_size


def _load_checkpoint(model: nn.Module, path: str) -> str:
    """Load a local state_dict (``weights_only``: no code in the file runs) that matches the model exactly.
    Returns the weights description; BadInput names the file and what is wrong with it."""
    if not os.path.isfile(path):
        raise BadInput(f"bad weights path {path!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  pickles with code, text, truncated zips: many types
        why = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"bad weights file {path!r}: not a weights-only state_dict ({why})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput(f"bad weights file {path!r}: need a state_dict (parameter name -> tensor), "
                       f"got {type(state).__name__}")
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shape = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or extra or shape:
        what = (f"{len(missing)} missing (e.g. {missing[0]})" if missing else
                f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else
                f"{len(shape)} of another shape (e.g. {shape[0]}: {tuple(state[shape[0]].shape)} vs "
                f"{tuple(want[shape[0]].shape)})")
        raise BadInput(f"bad weights file {path!r}: it does not match {type(model).__name__}: {what} tensors")
    model.load_state_dict(state, strict=True)
    return f"checkpoint:{Path(path).name}"


def _torchvision_model(arch: str, req: WeightsRequest) -> tuple[nn.Module, str]:
    """A torchvision model with cached ImageNet weights when present locally, else random init."""
    import torchvision.models as tvm

    if req.path:
        model = tvm.get_model(arch, weights=None)
        return model, _load_checkpoint(model, req.path)
    if req.use_cache:
        weights = tvm.get_model_weights(arch).DEFAULT
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        if cached.is_file():
            model = tvm.get_model(arch, weights=None)
            model.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True))
            return model, f"imagenet:{weights.name}"
    return tvm.get_model(arch, weights=None), "random"


@BACKBONES.register("vgg16")
@describe(min_image_size=32)  # five 2x2 max-pools
def vgg16(image_size: int, req: WeightsRequest) -> Backbone:
    model, w = _torchvision_model("vgg16", req)
    return Backbone("vgg16", model.features, 512, w)


def _resnet(arch: str, dim: int) -> BackboneFactory:
    def build(image_size: int, req: WeightsRequest) -> Backbone:
        model, w = _torchvision_model(arch, req)
        body = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                             model.layer1, model.layer2, model.layer3, model.layer4)
        return Backbone(arch, body, dim, w)

    return build


for _arch, _dim in (("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)):
    BACKBONES.register(_arch)(_resnet(_arch, _dim))


# ImageNet statistics: registry.pretexts.normalize applies them, the raw-pixels baseline undoes them
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _RawPixels(nn.Module):
    """Normalized (B,3,S,S) input back to pixels in [0, 1], keeping the data's channels (1 for gray)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x * self.std.to(x.dtype) + self.mean.to(x.dtype)).clamp_(0, 1)
        return x[:, :1] if self.channels == 1 else x


@BACKBONES.register("raw_pixels")
@describe(trainable=False, uses_weights=False, data_channels=True)
def raw_pixels(image_size: int, req: WeightsRequest, channels: int = 3) -> Backbone:
    """The baseline: the pixels in [0, 1] (C x S x S, C the data's channels: 784-D for 28 px grayscale),
    flattened. No parameters, nothing to train."""
    return Backbone("raw_pixels", _RawPixels(channels), channels * image_size * image_size, "none",
                    pool_fn=lambda x: x.flatten(1), trainable=False)


class _TimmBody(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

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
    except Exception:
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
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=0, img_size=image_size)
    except TypeError:  # CNNs take no img_size
        model = timm.create_model(name, pretrained=pretrained, num_classes=0)
    weights = "imagenet:timm" if pretrained else "random"
    if req.path:
        weights = _load_checkpoint(model, req.path)
    pool = lambda f: model.forward_head(f, pre_logits=True)  # noqa: E731  timm's own pooling
    dim = int(getattr(model, "head_hidden_size", None) or model.num_features)  # pre-logits width
    return Backbone(TIMM_PREFIX + name, _TimmBody(model), dim, weights, pool_fn=pool)


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
        return BACKBONES.get(name)(image_size, req, channels=channels)  # type: ignore[call-arg]
    return BACKBONES.get(name)(image_size, req)


class _GrayUnit(nn.Module):
    """Normalized (B,3,S,S) input back to one channel of pixels in [0, 1] (the mean of RGB: the gray value
    of grayscale data), as the clustering papers feed their autoencoders (pixels / 255)."""

    def __init__(self) -> None:
        super().__init__()
        self.unit = _RawPixels(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit(x).mean(dim=1, keepdim=True)


@BACKBONES.register("dec_ae")
@describe(input_size=28, spatial=False, own_decoder=True)
def dec_ae(image_size: int, req: WeightsRequest) -> Backbone:
    """The dense autoencoder of DEC (Xie et al. 2016) as in XifengGuo/DEC-keras: encoder 784-500-500-2000-10
    (ReLU, linear 10-D code), decoder 10-2000-500-500-784 (ReLU, linear output); 1 x 28 x 28 input in
    [0, 1]. Features: the 10-D code."""
    dims = [784, 500, 500, 2000, 10]

    def mlp(sizes: list[int]) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU(inplace=True))
        return layers

    body = nn.Sequential(_GrayUnit(), nn.Flatten(), *mlp(dims))
    decoder = lambda: nn.Sequential(*mlp(dims[::-1]), nn.Unflatten(1, (1, 28, 28)))  # noqa: E731
    bb = Backbone("dec_ae", body, 10, "random", pool_fn=lambda z: z, make_decoder=decoder)
    return bb if not req.path else _with_checkpoint(bb, req.path)


@BACKBONES.register("seed_conv_ae")
@describe(input_size=28, own_decoder=True)
def seed_conv_ae(image_size: int, req: WeightsRequest) -> Backbone:
    """The founding case's convolutional autoencoder: encoder Conv(1,32,3,s2,p1)-SiLU-Conv(32,128,3,s2,p1)-SiLU-
    Conv(128,512,7) (a 512-D code), decoder ConvT(512,128,7)-SiLU-ConvT(128,32,3,s2,p1,op1)-SiLU-
    ConvT(32,1,3,s2,p1,op1)-Sigmoid; 1 x 28 x 28 input in [0, 1]."""
    body = nn.Sequential(_GrayUnit(), nn.Conv2d(1, 32, 3, 2, 1), nn.SiLU(), nn.Conv2d(32, 128, 3, 2, 1), nn.SiLU(),
                         nn.Conv2d(128, 512, 7))
    decoder = lambda: nn.Sequential(  # noqa: E731
        nn.ConvTranspose2d(512, 128, 7), nn.SiLU(), nn.ConvTranspose2d(128, 32, 3, 2, 1, output_padding=1), nn.SiLU(),
        nn.ConvTranspose2d(32, 1, 3, 2, 1, output_padding=1), nn.Sigmoid())
    bb = Backbone("seed_conv_ae", body, 512, "random", make_decoder=decoder)
    return bb if not req.path else _with_checkpoint(bb, req.path)


def _with_checkpoint(bb: Backbone, path: str) -> Backbone:
    """A local state_dict of the encoder (``body``), checked and loaded weights-only."""
    bb.weights = _load_checkpoint(bb.body, path)
    return bb


# --feature-layer: the pooled output of an intermediate stage (RotNet found its middle blocks best)
_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")  # positions 4..7 of the ResNet body
_VGG_POOLS = {"pool1": (4, 64), "pool2": (9, 128), "pool3": (16, 256), "pool4": (23, 512), "pool5": (30, 512)}


@functools.lru_cache(maxsize=None)
def feature_layers(name: str) -> tuple[str, ...]:
    """The stage names ``--feature-layer`` accepts for backbone ``name`` (empty: none); cached: a timm model is
    built to read them."""
    if name in ("resnet18", "resnet34", "resnet50"):
        return _RESNET_STAGES
    if name == "vgg16":
        return tuple(_VGG_POOLS)
    if name.startswith(TIMM_PREFIX):
        import timm

        model = timm.create_model(name[len(TIMM_PREFIX):], pretrained=False, num_classes=0)
        return tuple(str(f["module"]) for f in getattr(model, "feature_info", []))
    return ()


class _TimmStage(nn.Module):
    def __init__(self, model: nn.Module, index: int) -> None:
        super().__init__()
        self.model, self.index = model, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_intermediates(x, indices=[self.index], intermediates_only=True)[0]


def at_layer(backbone: Backbone, layer: str) -> Backbone:
    """The same weights, cut after stage ``layer``: features are that stage's output, average-pooled."""
    allowed = feature_layers(backbone.name)
    if layer not in allowed:
        raise BadInput(f"bad --feature-layer {layer!r} for backbone {backbone.name!r}: allowed: "
                       f"{', '.join(allowed) or 'none (it has no stages)'}")
    if backbone.name.startswith(TIMM_PREFIX):
        model = backbone.body.model
        index = allowed.index(layer)
        dim = int(model.feature_info[index]["num_chs"])
        return Backbone(f"{backbone.name}@{layer}", _TimmStage(model, index), dim, backbone.weights)
    if backbone.name == "vgg16":
        end, dim = _VGG_POOLS[layer]
        return Backbone(f"vgg16@{layer}", backbone.body[:end + 1], dim, backbone.weights)
    stage = backbone.body[4 + _RESNET_STAGES.index(layer)]
    dim = stage[-1].conv3.out_channels if hasattr(stage[-1], "conv3") else stage[-1].conv2.out_channels
    return Backbone(f"{backbone.name}@{layer}", backbone.body[:5 + _RESNET_STAGES.index(layer)], dim,
                    backbone.weights)
