"""Split-brain autoencoder (Zhang, Isola & Efros 2017, "Split-Brain Autoencoders"): images to CIE Lab, split
into L and ab; one network predicts ab from L, the other L from ab, each a cross-entropy over quantized bins;
the features are both networks' pooled features concatenated.

Design (a generic harness, not the paper's AlexNet):

- The backbone is DOUBLED. The paper splits every layer's channels in half; an arbitrary timm / torchvision
  backbone cannot be halved, so ``wrap_backbone`` returns a ``SplitBrainBackbone`` of two full copies: ``net_L``
  (the given backbone) and ``net_ab`` (``copy.deepcopy`` of it). The copy keeps the same starting weights (the
  seeded random init or the pretrained ones): re-initialising it through ``reset_parameters`` would replace the
  family's own init (timm / torchvision schemes) with PyTorch's defaults and drop pretrained weights; the two
  halves differ from the first step since they see different inputs and predict different targets.
- Features are (B, 2D): [net_L pooled, net_ab pooled] (``feature_dim`` is 2D, the wrapper's ``dim`` too);
  ``forward`` returns both feature maps concatenated on channels (tokens: on the last dimension).
- Input (``feature_input``, the same in training and at extraction): (B,3,S,S) = [L / 100, a / 110, b / 110].
  net_L sees L repeated to 3 channels and ImageNet-normalized (as ``colorization`` feeds its backbone: a
  pretrained first layer stays meaningful); net_ab sees ab through a learned 1x1 convolution 2 -> 3 channels.
- Heads: a 1x1 convolution on net_L's feature map predicting the ab bin at each feature-map position, one on
  net_ab's map predicting the L bin; targets are the image's Lab averaged down to the feature map's size, as
  ``colorization`` pools ab before it quantizes. ab: the in-gamut 10 x 10 bins of ``colorization`` (266 here;
  the paper counts 313); L: ``l_bins`` equal bins over [0, 100] (100 by default, width 1: the paper
  classifies L over 100 bins, as the CIFAR re-implementation ysharma1126/Split-Brain-Autoencoder
  does). Hard nearest-bin targets, no class
  rebalancing; the loss is the sum of the two cross-entropies.
- Not applicable to grayscale data (no ab to predict) nor to backbones without a spatial feature map."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.interfaces import Constraint, Options, check_settings, setting
from registry.backbones import Backbone
from registry.decoders import feature_map_shape, to_spatial
from registry.pretexts import PRETEXTS, Pretext
from registry.pretexts.colorization import AB_RANGE, ab_bins, rgb_to_lab

L_MAX = 100.0


def scaled_lab(lab: torch.Tensor) -> torch.Tensor:
    """Lab (B,3,S,S) -> the network's input [L / 100, a / 110, b / 110]."""
    return torch.cat([lab[:, :1] / L_MAX, lab[:, 1:] / AB_RANGE], dim=1)


def lab_input(x: torch.Tensor) -> torch.Tensor:
    """RGB (B,3,S,S) in [0,1] -> the network's input (B,3,S,S) [L / 100, a / 110, b / 110] (float32)."""
    return scaled_lab(rgb_to_lab(x))


def ab_bin_index(ab: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """ab (B,2,h,w) -> index (B,h,w) of the nearest of ``bins`` (Q,2)."""
    b, _, h, w = ab.shape
    pix = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    return torch.cdist(pix, bins.to(ab.device)).argmin(dim=1).view(b, h, w)


def l_bin_index(L: torch.Tensor, n_bins: int) -> torch.Tensor:
    """L (B,h,w) in [0,100] -> bin index (B,h,w) of ``n_bins`` equal bins."""
    return (L * (n_bins / L_MAX)).floor().clamp(0, n_bins - 1).long()


class SplitBrainBackbone(Backbone):
    """Two copies of a backbone: ``net_L`` on L, ``net_ab`` on ab (input: ``lab_input``'s (B,3,S,S)).
    ``forward``: both feature maps concatenated on channels; ``pool``: (B, 2D) [net_L's, net_ab's]."""

    def __init__(self, net_L: Backbone, net_ab: Backbone, adapt_ab: nn.Module | None = None) -> None:
        super().__init__(net_L.name, nn.Identity(), 2 * net_L.dim, net_L.weights, trainable=net_L.trainable,
                         init=net_L.init)
        self.net_L = net_L
        self.net_ab = net_ab
        self.adapt_ab = adapt_ab if adapt_ab is not None else nn.Conv2d(2, 3, 1)  # ab -> the 3-channel input

    def halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(net_L's feature map of L, net_ab's of ab)."""
        L3 = self.net_L.normalize(x[:, :1].expand(-1, 3, -1, -1))  # the weight source's statistics
        return self.net_L(L3), self.net_ab(self.adapt_ab(x[:, 1:3]))

    @staticmethod
    def _axis(fmap: torch.Tensor) -> int:
        return 2 if fmap.dim() == 3 else 1  # tokens (B,L,C): the last; maps (B,C,h,w) and vectors: dim 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f_L, f_ab = self.halves(x)
        return torch.cat([f_L, f_ab], dim=self._axis(f_L))

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        f_L, f_ab = fmap.chunk(2, dim=self._axis(fmap))
        return torch.cat([self.net_L.pool(f_L), self.net_ab.pool(f_ab)], dim=1)

    def cut_at(self, layer: str, cut: Callable[[Backbone, str], Backbone]) -> Backbone:
        """Both copies cut after stage ``layer`` (``--feature-layer``), the adapter shared."""
        return SplitBrainBackbone(self.net_L.cut_at(layer, cut), self.net_ab.cut_at(layer, cut), self.adapt_ab)


class SplitBrainHead(nn.Module):
    """1x1 classifiers: ``to_ab`` on net_L's feature map, ``to_L`` on net_ab's."""

    def __init__(self, channels: int, ab_classes: int, l_classes: int) -> None:
        super().__init__()
        self.to_ab = nn.Conv2d(channels, ab_classes, 1)
        self.to_L = nn.Conv2d(channels, l_classes, 1)


@dataclass(frozen=True)
class SplitBrainOptions(Options):
    flag_prefix = "split"
    l_bins: int = setting(100, Constraint("int", 2, 1000), label="split-brain L bins",
                          help="equal bins of L over [0, 100] the ab network classifies into (100)")

    def __post_init__(self) -> None:
        check_settings(self)


@PRETEXTS.register("split_brain")
class SplitBrain(Pretext):
    """L -> ab and ab -> L cross-channel prediction by two copies of the backbone; features (B, 2D)."""

    name = "split_brain"
    needs_feature_map = True
    Options = SplitBrainOptions
    opts: SplitBrainOptions

    def __init__(self, opts: SplitBrainOptions | None = None) -> None:
        super().__init__(opts)
        self.bins = ab_bins()

    def not_applicable(self, grayscale: bool, backbone: str | None = None) -> str | None:
        if grayscale:
            return "split_brain not applicable: grayscale images have no ab channels to predict"
        return super().not_applicable(grayscale, backbone)

    def wrap_backbone(self, backbone: Backbone) -> Backbone:
        """Two copies (the second a deep copy: the same starting weights), the ab adapter freshly drawn."""
        if isinstance(backbone, SplitBrainBackbone):
            return backbone
        return SplitBrainBackbone(backbone, copy.deepcopy(backbone))

    def feature_dim(self, dim: int) -> int:
        return 2 * dim

    def feature_input(self, x: torch.Tensor) -> torch.Tensor:
        return lab_input(x)

    def build_head(self, backbone: Backbone, image_size: int) -> nn.Module:
        if not isinstance(backbone, SplitBrainBackbone):
            raise TypeError("split_brain trains the network its wrap_backbone(backbone) returns, not a bare backbone")
        c, _h, _w = feature_map_shape(backbone, image_size)
        return SplitBrainHead(c // 2, self.bins.shape[0], self.opts.l_bins)

    def make_batch(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,3,S,S) in [0,1] -> (the network's input, Lab (B,3,S,S): the targets before pooling)."""
        lab = rgb_to_lab(x)
        return scaled_lab(lab), lab

    def predict(self, backbone: Backbone, head: nn.Module, inputs: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ab logits (B,Q_ab,h,w) from L, L logits (B,Q_L,h,w) from ab)."""
        if not isinstance(backbone, SplitBrainBackbone) or not isinstance(head, SplitBrainHead):
            raise TypeError("split_brain trains the network its wrap_backbone(backbone) returns, with its build_head")
        f_L, f_ab = backbone.halves(inputs)
        return head.to_ab(to_spatial(f_L)), head.to_L(to_spatial(f_ab))

    def targets_at(self, lab: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Lab (B,3,S,S) averaged down to ``size`` -> (ab bin (B,h,w), L bin (B,h,w))."""
        small = F.adaptive_avg_pool2d(lab.float(), size)
        return ab_bin_index(small[:, 1:], self.bins), l_bin_index(small[:, 0], self.opts.l_bins)

    def loss(self, outputs: tuple[torch.Tensor, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        ab_logits, l_logits = outputs
        ab_idx, l_idx = self.targets_at(targets, (ab_logits.shape[-2], ab_logits.shape[-1]))
        return F.cross_entropy(ab_logits.float(), ab_idx) + F.cross_entropy(l_logits.float(), l_idx)
