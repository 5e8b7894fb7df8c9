"""Device and precision selection: the GPU paths are chosen here, by pure functions testable on a CPU."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Runtime:
    """How tensors are placed and computed: device, autocast dtype, memory format, loader settings."""

    device: str  # "cpu" or "cuda"
    amp_dtype: torch.dtype | None  # autocast dtype, None for plain fp32
    channels_last: bool
    pin_memory: bool
    cudnn_benchmark: bool

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def autocast(self) -> torch.autocast:
        """An autocast context (disabled when amp_dtype is None)."""
        dtype = self.amp_dtype or torch.float32
        return torch.autocast(device_type=self.device, dtype=dtype, enabled=self.amp_dtype is not None)

    def describe(self) -> str:
        amp = str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "fp32"
        return f"{self.device} ({amp}{', channels_last' if self.channels_last else ''})"


def select_runtime(requested: str, cuda_available: bool, bf16_supported: bool) -> Runtime:
    """Pick the runtime for ``--device``. On CUDA: AMP (bf16 if supported, else fp16), channels_last,
    pinned memory with non-blocking copies and cudnn.benchmark. On CPU: plain fp32."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"bad device {requested!r}: allowed: auto, cpu, cuda")
    if requested == "cuda" and not cuda_available:
        raise ValueError("bad device 'cuda': no CUDA GPU is visible; allowed here: auto, cpu")
    use_cuda = requested == "cuda" or (requested == "auto" and cuda_available)
    if not use_cuda:
        return Runtime("cpu", None, False, False, False)
    return Runtime("cuda", torch.bfloat16 if bf16_supported else torch.float16, True, True, True)


def detect_runtime(requested: str) -> Runtime:
    """``select_runtime`` with this machine's facts; also applies the global cudnn setting."""
    cuda = torch.cuda.is_available()
    bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    rt = select_runtime(requested, cuda, bf16)
    if rt.device == "cuda":
        torch.backends.cudnn.benchmark = rt.cudnn_benchmark
    return rt


def describe_device(rt: Runtime) -> str:
    """Human-readable name of the compute device (GPU model, or the CPU model)."""
    if rt.device == "cuda":
        return torch.cuda.get_device_name(0)
    return cpu_model()


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
