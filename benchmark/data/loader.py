"""Feeding the device: uint8 batches gathered on a host thread into pinned buffers, copied to the GPU on a
side stream while the previous batch computes, and converted to float (and channels_last) on the device.

On CUDA the host gathers batch i+1 (numpy fancy indexing out of the memory-mapped store) and starts its
copy on a dedicated stream while the compute stream still runs batch i; the consumer's stream waits on an
event of that copy only, so the copy engine and the SMs overlap, and the uint8 bytes travel (4x fewer than
float32). On the CPU the same interface converts batches in the caller's thread (no copy to overlap)."""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

import numpy as np
import torch

from benchmark.runtime.device import Runtime

PREFETCH = 2  # batches in flight on CUDA (double buffering)


def to_float(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 (B,3,S,S) on its device -> float32 in [0, 1], in the requested memory format."""
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t.float().mul_(1.0 / 255.0)


def _host_batch(images: np.ndarray, idx: np.ndarray | slice) -> torch.Tensor:
    batch = images[idx]
    if not batch.flags.writeable:  # a slice of the memory-mapped store: torch wants writable memory
        batch = batch.copy()
    return torch.from_numpy(np.ascontiguousarray(batch))


def batches(images: np.ndarray, index: Iterable[np.ndarray | slice], rt: Runtime,
            channels_last: bool = False) -> Iterator[torch.Tensor]:
    """Device float batches of ``images[idx]`` for each idx of ``index``, in order (see the module doc)."""
    if rt.device != "cuda":
        for idx in index:
            yield to_float(_host_batch(images, idx), channels_last)
        return
    yield from _cuda_batches(images, index, rt, channels_last)


def _cuda_batches(images: np.ndarray, index: Iterable[np.ndarray | slice], rt: Runtime,
                  channels_last: bool) -> Iterator[torch.Tensor]:
    device = rt.torch_device
    copy_stream = torch.cuda.Stream(device=device)
    ready: queue.Queue = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def produce() -> None:
        try:
            for idx in index:
                if stop.is_set():
                    return
                host = _host_batch(images, idx).pin_memory()
                with torch.cuda.stream(copy_stream):
                    dev = host.to(device, non_blocking=True)
                    done = torch.cuda.Event()
                    done.record(copy_stream)
                ready.put((dev, done, host))  # host kept alive until the copy is consumed
            ready.put(None)
        except BaseException as exc:  # noqa: BLE001  handed to the consumer, which re-raises it
            ready.put(exc)

    worker = threading.Thread(target=produce, name="device-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            dev, done, _host = item
            compute = torch.cuda.current_stream(device)
            compute.wait_event(done)
            dev.record_stream(compute)  # the allocator must not reuse it before compute is done with it
            yield to_float(dev, channels_last)
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)


def bytes_per_batch(batch: int, image_size: int, channels: int = 3) -> int:
    """Bytes copied to the device per batch (uint8 pixels)."""
    return batch * channels * image_size * image_size
