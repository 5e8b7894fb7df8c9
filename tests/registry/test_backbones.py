
import pytest
import torch
import torchvision

from registry.backbones import BACKBONES, WeightsRequest, build_backbone, check_backbone, check_image_size
from registry.base import UnknownNameError

NAMES = BACKBONES.names() + ["timm:resnet10t", "timm:mobilenetv3_small_100", "timm:vit_tiny_patch16_224"]


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_pool_give_declared_dim(name):
    from registry.backbones import backbone_info

    size = backbone_info(name).input_size or 32  # the paper autoencoders take 28 x 28 only
    bb = build_backbone(name, size, WeightsRequest())
    bb.eval()
    with torch.no_grad():
        x = torch.randn(2, 3, size, size)
        feats = bb.features(x)
    assert feats.shape == (2, bb.dim)
    assert torch.isfinite(feats).all()
    assert bb.weights in ("random", "none")


def test_unknown_backbones_and_timm_names_are_rejected_with_closest_match():
    with pytest.raises(UnknownNameError, match="did you mean 'resnet18'"):
        check_backbone("resnet19")
    with pytest.raises(UnknownNameError, match="did you mean 'resnet10t'"):
        check_backbone("timm:resnet10tt")
    check_backbone("timm:efficientnet_b0")  # any timm model is accepted


def test_paper_autoencoders_take_their_declared_size_and_bring_their_decoder():
    for name, dim in (("dec_ae", 10), ("seed_conv_ae", 512)):
        with pytest.raises(ValueError, match=f"bad image size 32 for backbone '{name}': it takes 1 x 28 x 28"):
            check_image_size(name, 32)
        check_image_size(name, 28)
        bb = build_backbone(name, 28)
        code = bb(torch.rand(3, 3, 28, 28))
        out = bb.make_decoder()(code)
        assert bb.features(torch.rand(3, 3, 28, 28)).shape == (3, dim) and out.shape == (3, 1, 28, 28)


def test_vgg16_needs_32_pixels():
    with pytest.raises(ValueError, match="at least 32"):
        check_image_size("vgg16", 16)
    check_image_size("resnet18", 16)


def test_local_checkpoint_is_loaded_and_recorded(tmp_path):
    ref = torchvision.models.resnet18()
    path = tmp_path / "my_resnet18.pt"
    torch.save(ref.state_dict(), path)
    bb = build_backbone("resnet18", 32, WeightsRequest.checkpoint(str(path)))
    assert bb.weights == "checkpoint:my_resnet18.pt"
    assert torch.equal(bb.body[0].weight, ref.conv1.weight)


def test_checkpoint_that_matches_nothing_is_an_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"foo.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="does not match ResNet: 122 missing"):
        build_backbone("resnet18", 32, WeightsRequest.checkpoint(str(path)))


@pytest.mark.parametrize("name,layer,dim", [("resnet18", "layer2", 128), ("resnet50", "layer3", 1024),
                                            ("vgg16", "pool3", 256), ("timm:resnet10t", "layer1", 64)])
def test_feature_layer_gives_the_pooled_output_of_that_stage(name, layer, dim):
    from registry.backbones import at_layer

    bb = build_backbone(name, 32)
    cut = at_layer(bb, layer)
    assert cut.dim == dim and cut.features(torch.rand(2, 3, 32, 32)).shape == (2, dim)
    assert cut.name == f"{name}@{layer}"


def test_bad_feature_layers_are_one_line_errors():
    from benchmark.config.specs import GridSpec
    from benchmark.interfaces import BadInput
    from benchmark.pipeline.plan import validate_names
    from registry.backbones import at_layer

    with pytest.raises(BadInput, match="bad --feature-layer 'layer9' for backbone 'resnet18': allowed: layer1, layer2"):
        at_layer(build_backbone("resnet18", 32), "layer9")
    with pytest.raises(BadInput, match="allowed: pool1, pool2, pool3, pool4, pool5"):
        validate_names(GridSpec("digits", ("vgg16", "raw_pixels"), ("none",), ("kmeans",), feature_layer="layer2"))
    validate_names(GridSpec("digits", ("resnet18", "raw_pixels"), ("none",), ("kmeans",), feature_layer="layer2"))


def test_raw_pixels_are_area_averaged_to_32_px_above_it_and_kept_below():
    import torch.nn.functional as F

    from registry.backbones import RAW_PIXELS_MAX, build_backbone, feature_dim, raw_pixels_note
    from registry.pretexts import normalize

    x = torch.rand(2, 3, 64, 64)
    big = build_backbone("raw_pixels", 64)
    assert big.dim == 3 * RAW_PIXELS_MAX ** 2 == 3072 == feature_dim("raw_pixels", 64)
    feats = big.features(normalize(x))
    torch.testing.assert_close(feats, F.avg_pool2d(x, 2).flatten(1), atol=1e-6, rtol=0)  # each 2x2 block's mean
    small = build_backbone("raw_pixels", 28, channels=1)
    assert small.dim == 784 and small.features(normalize(torch.rand(1, 3, 28, 28))).shape == (1, 784)
    assert raw_pixels_note(28) == "" and "64 px to 32 px" in raw_pixels_note(64)


def test_feature_dim_builds_on_the_meta_device_without_weights():
    from registry.backbones import feature_dim

    assert feature_dim("resnet18", 64) == 512 and feature_dim("resnet18", 64, "layer2") == 128
    assert feature_dim("no_such_backbone", 64) is None
