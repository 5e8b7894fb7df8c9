"""Device and precision selection: the GPU paths are chosen here, by pure functions testable on a CPU."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.interfaces import BadInput


@dataclass(frozen=True)
class Runtime:
    """How tensors are placed and computed: device, autocast dtype, memory format, loader settings."""

    device: str  # "cpu" or "cuda"
    amp_dtype: torch.dtype | None  # autocast dtype, None for plain fp32
    channels_last: bool  # for training steps
    pin_memory: bool
    cudnn_benchmark: bool
    channels_last_infer: bool = False  # for feature extraction
    deterministic: bool = False  # deterministic kernels (bit-identical reruns on CUDA; measured cost in README)
    compile: bool = False  # torch.compile the backbone's forward for training and extraction

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def autocast(self) -> torch.autocast:
        """An autocast context (disabled when amp_dtype is None)."""
        dtype = self.amp_dtype or torch.float32
        return torch.autocast(device_type=self.device, dtype=dtype, enabled=self.amp_dtype is not None)

    def describe(self) -> str:
        amp = str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "fp32"
        layout = {(True, True): ", channels_last",
                  (False, True): ", channels_last for inference and depthwise backbones' training"}.get(
            (self.channels_last, self.channels_last_infer), "")
        return f"{self.device} ({amp}{layout})"


def select_runtime(requested: str, cuda_available: bool, bf16_supported: bool, deterministic: bool = False,
                   compile: bool = False) -> Runtime:
    """Pick the runtime for ``--device``. On CUDA: AMP (bf16 if supported, else fp16), channels_last,
    pinned memory with copies on a side stream, and cudnn.benchmark OFF: its autotuner re-times every new
    input shape, which a grid of short runs keeps meeting (measured on an H100: one epoch of resnet18
    rotation on digits 7.46 s with it, 0.50 s without; mobilenetv3 36.3 s vs 8.6 s). On CPU: fp32,
    channels_last for inference (measured on 2 cores at 32 px, batch 64: inference 1.4x resnet18,
    1.4x resnet34, 1.6x vgg16, 3.7x mobilenetv3) and, per backbone, for the training steps of backbones with
    depthwise convolutions only (``train_channels_last``)."""
    if requested not in ("auto", "cpu", "cuda"):
        raise BadInput(f"bad device {requested!r}: allowed: auto, cpu, cuda")
    if requested == "cuda" and not cuda_available:
        raise BadInput("bad device 'cuda': no CUDA GPU is visible; allowed here: auto, cpu")
    use_cuda = requested == "cuda" or (requested == "auto" and cuda_available)
    if not use_cuda:
        return Runtime("cpu", None, False, False, False, channels_last_infer=True, deterministic=deterministic,
                       compile=compile)
    return Runtime("cuda", torch.bfloat16 if bf16_supported else torch.float16, True, True, False,
                   channels_last_infer=True, deterministic=deterministic, compile=compile)


def train_channels_last(device: str, channels_last: bool, depthwise: bool) -> bool:
    """The memory format of one backbone's training steps: ``channels_last`` (the runtime's choice: on CUDA
    for every backbone) or, on CPU, channels_last exactly for backbones with depthwise convolutions
    (``registry.backbones.has_depthwise``). Measured on 2 cores, 32 px, batch 64, fp32, channels_last vs NCHW
    training-step throughput (``benchmark bench --channels-last both``, 2026-12-07): efficientnet_lite0
    rotation 5.9x, jigsaw 6.5x, autoencoder 3.4x, simclr 3.9x; mobilenetv3_small_100 3.4x, 4.3x, 2.8x, 3.8x;
    but resnet18 1.08x, 1.15x, 0.75x, 0.93x (oneDNN's depthwise kernels are channels_last; plain convolutions
    gain little and the autoencoder's decoder loses), so plain-convolution backbones train NCHW on CPU."""
    return channels_last or (device == "cpu" and depthwise)


def detect_runtime(requested: str, deterministic: bool = False, compile: bool = False) -> Runtime:
    """``select_runtime`` with this machine's facts; also applies the global cudnn and determinism
    settings (deterministic: cuDNN's deterministic kernels, ``torch.use_deterministic_algorithms`` and the
    cuBLAS workspace setting it needs; an op without a deterministic kernel then fails loudly)."""
    cuda = torch.cuda.is_available()
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    rt = select_runtime(requested, cuda, bf16, deterministic, compile)
    apply_determinism(rt)
    if rt.device == "cuda":
        torch.backends.cudnn.benchmark = rt.cudnn_benchmark and not rt.deterministic
    return rt


def apply_determinism(rt: Runtime) -> None:
    import os

    if rt.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = rt.deterministic
    torch.use_deterministic_algorithms(rt.deterministic)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()
