"""GPU utilisation sampled while a stage runs (train, extract), for run.json: is the GPU kept busy?"""
from __future__ import annotations

import threading
from typing import Callable, TypeVar

INTERVAL_S = 0.1


def nvml_utilization() -> Callable[[], float | None]:
    """A reader of the current GPU's utilisation in percent (NVML through torch.cuda.utilization), or a
    reader that gives None where NVML is not available."""
    import torch

    def read() -> float | None:
        try:
            return float(torch.cuda.utilization())
        except Exception:  # noqa: BLE001  no pynvml / no driver: nothing to report
            return None

    return read


class Sampler:
    """``with Sampler(read) as s: ...`` samples ``read()`` every INTERVAL_S on a thread; ``s.mean`` is the
    mean of the samples (None without any)."""

    def __init__(self, read: Callable[[], float | None], interval: float = INTERVAL_S) -> None:
        self.read, self.interval = read, interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-util", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.read()
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.interval)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


T = TypeVar("T")


def sampled(device: str, fn: Callable[[], T]) -> tuple[T, float | None]:
    """Run fn; on CUDA sample the GPU's utilisation meanwhile. Returns (fn's result, mean % or None)."""
    if device != "cuda":
        return fn(), None
    with Sampler(nvml_utilization()) as s:
        out = fn()
    return out, s.mean
