"""Training checkpoints: a pretext training that dies (SIGTERM, kill -9, a lost Ray node) starts again from
its last saved step and ends with the same weights, losses and plateau decision as one that never stopped.

A checkpoint is one file under the artifact store (``checkpoints/<train key>.pt``): the model, head,
optimizer, schedule and grad-scaler states, every random generator's state, the per-step tallies and
the plateau rule's state. It is written at most every ``SSLBENCH_CHECKPOINT_EVERY_S`` seconds (default
60; 0 = at every sync window), atomically with a checksum, and deleted once the trained weights are
stored. Its key is the training's cache key, so any run of the same recipe resumes it."""
from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import torch

from benchmark.store.files import corrupt, load_checked_bytes, read_or_error, remove_partial_writes, save_checked_bytes

CHECKPOINT_VERSION = 1
DEFAULT_EVERY_S = 60.0
EVERY_ENV = "SSLBENCH_CHECKPOINT_EVERY_S"


class ResumedFromCheckpoint(UserWarning):
    """A training went on from its checkpoint (shown once, and written to run.log like every warning)."""


def checkpoint_every_s() -> float:
    """Seconds between checkpoints: ``SSLBENCH_CHECKPOINT_EVERY_S`` (a number >= 0), default 60."""
    raw = os.environ.get(EVERY_ENV, "")
    if not raw:
        return DEFAULT_EVERY_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also rejects nan
        raise ValueError(f"bad {EVERY_ENV} {raw!r}: allowed: a number of seconds >= 0 (0 = at every sync window)")
    return value


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


class Checkpoint:
    """Where one training's checkpoint lives and when the next one is due."""

    def __init__(self, path: Path | str, every_s: float | None = None) -> None:
        self.path = Path(path)
        self.every_s = checkpoint_every_s() if every_s is None else float(every_s)
        self._last = time.monotonic()
        self.saved = 0  # checkpoints written by this process

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, every_s={self.every_s})"

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_s

    def save(self, state: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(_to_cpu({**state, "version": CHECKPOINT_VERSION}), buf)
        save_checked_bytes(self.path, buf.getvalue())
        self._last = time.monotonic()
        self.saved += 1

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none (a damaged or older-format file counts as none)."""
        data = load_checked_bytes(self.path)
        if data is None:
            return None
        state, err = read_or_error(lambda: torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
        if err is not None:  # an unreadable checkpoint means training from the start
            corrupt(self.path, f"cannot be read ({type(err).__name__})")
            return None
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            return None
        return state

    def clear(self) -> None:
        """Delete the checkpoint and any half-written copy of it (a kill -9 during a save leaves its temporary
        file behind)."""
        self.path.unlink(missing_ok=True)
        remove_partial_writes(self.path)
