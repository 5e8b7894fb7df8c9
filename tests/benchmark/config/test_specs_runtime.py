import pytest
import torch

from benchmark.config.specs import ClusterSpec, GridSpec, ProbeSpec, TrainSpec
from benchmark.runtime.device import select_runtime


@pytest.mark.parametrize("kwargs,match", [
    ({"epochs": -1}, "bad epochs -1"),
    ({"batch_size": 0}, "bad batch size 0"),
    ({"optimizer": "rmsprop"}, "bad optimizer 'rmsprop'.*sgd, adam"),
    ({"lr": 0}, "bad learning rate 0"),
])
def test_train_spec_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainSpec(**kwargs)


def test_other_specs_reject_bad_values():
    with pytest.raises(ValueError, match="bad k 1"):
        ClusterSpec(k=1)
    with pytest.raises(ValueError, match="bad probe k 1"):
        ProbeSpec(k_per_class=1)
    with pytest.raises(ValueError, match="bad image size 4"):
        GridSpec("digits", ("resnet18",), ("none",), ("kmeans",), image_size=4)
    with pytest.raises(ValueError, match="bad device 'tpu'"):
        GridSpec("digits", ("resnet18",), ("none",), ("kmeans",), device="tpu")
    with pytest.raises(ValueError, match="duplicate backbones"):
        GridSpec("digits", ("resnet18", "resnet18"), ("none",), ("kmeans",))


def test_runtime_selection_cpu_and_auto_without_gpu():
    for req in ("cpu", "auto"):
        rt = select_runtime(req, cuda_available=False, bf16_supported=False)
        assert rt.device == "cpu" and rt.amp_dtype is None and not rt.channels_last and not rt.pin_memory
        assert rt.channels_last_infer  # measured faster for inference on the CPU, slower for some training


def test_cpu_training_is_channels_last_exactly_for_depthwise_backbones():
    from benchmark.runtime.device import train_channels_last
    from registry.backbones import has_depthwise

    assert [has_depthwise(n, 32) for n in ("timm:efficientnet_lite0", "timm:mobilenetv3_small_100", "resnet18",
                                           "vgg16", "raw_pixels")] == [True, True, False, False, False]
    assert train_channels_last("cpu", False, depthwise=True)
    assert not train_channels_last("cpu", False, depthwise=False)  # resnet18's autoencoder: 0.75x channels_last
    assert train_channels_last("cuda", True, depthwise=False)  # CUDA: every backbone


def test_runtime_selection_on_cuda_picks_amp_channels_last_and_pinned_memory():
    rt = select_runtime("auto", cuda_available=True, bf16_supported=True)
    assert (rt.device, rt.amp_dtype, rt.channels_last, rt.pin_memory, rt.cudnn_benchmark, rt.channels_last_infer) == (
        "cuda", torch.bfloat16, True, True, False, True)  # cudnn.benchmark off: re-tuning per shape (README)
    assert select_runtime("cuda", True, False).amp_dtype == torch.float16
    rt = select_runtime("auto", True, True, deterministic=True, compile=True)
    assert rt.deterministic and rt.compile and not rt.cudnn_benchmark
    assert select_runtime("cpu", True, True).device == "cpu"  # an explicit cpu wins


def test_cuda_requested_without_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="bad device 'cuda': no CUDA GPU"):
        select_runtime("cuda", cuda_available=False, bf16_supported=False)


def test_deterministic_mode_sets_the_global_flags_and_is_undone():
    from benchmark.runtime.device import detect_runtime

    try:
        rt = detect_runtime("cpu", deterministic=True)
        assert rt.deterministic and torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        detect_runtime("cpu")
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic


def test_deterministic_and_compile_are_part_of_the_feature_key():
    from benchmark.pipeline.plan import RuntimeInfo, stable_hash

    base = RuntimeInfo("cpu", "fp32", False, True, 2)
    keys = {stable_hash([base]), stable_hash([RuntimeInfo("cpu", "fp32", False, True, 2, deterministic=True)]),
            stable_hash([RuntimeInfo("cpu", "fp32", False, True, 2, compile=True)])}
    assert len(keys) == 3
