"""Peak memory of a stage task, for run.json: the anonymous resident memory of the whole process tree that
runs it (the task's process and its children: decode workers included), sampled on a thread.

Anonymous memory (``RssAnon`` of /proc/<pid>/status) is what a task allocates: arrays, tensors, the
interpreter's heap. File-backed pages (memory-mapped features and images, shared libraries) are left out:
the kernel drops them under pressure and reads them again, so they are not what makes a machine run out.
Where /proc is not there (not Linux) nothing is sampled and the peak is None."""
from __future__ import annotations

import os
import threading
from pathlib import Path

INTERVAL_S = 0.05
PROC = Path("/proc")


def anon_bytes(pid: int) -> int:
    """RssAnon of one process in bytes (0 when it is gone or unreadable)."""
    try:
        with open(PROC / str(pid) / "status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's list: /proc/<pid>/task/<tid>/children)."""
    out: list[int] = []
    try:
        for task in (PROC / str(pid) / "task").iterdir():
            try:
                out += [int(x) for x in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
    except OSError:
        return out
    return out


def tree_anon_bytes(root: int) -> int:
    """Anonymous resident memory of ``root`` and all its descendants, in bytes."""
    seen: set[int] = set()
    todo, total = [root], 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += anon_bytes(pid)
        todo += children(pid)
    return total


class PeakMemory:
    """``with PeakMemory() as m: ...``: ``m.peak`` is the highest anonymous memory of this process's tree
    sampled every INTERVAL_S during the block (and at its start and end), in bytes; None without /proc."""

    def __init__(self, interval: float = INTERVAL_S, root: int | None = None) -> None:
        self.interval, self.root = interval, root if root is not None else os.getpid()
        self.available = (PROC / str(self.root) / "status").is_file()
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def _sample(self) -> None:
        self._peak = max(self._peak, tree_anon_bytes(self.root))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "PeakMemory":
        if self.available:
            self._sample()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()
            self._sample()

    @property
    def peak(self) -> int | None:
        return self._peak if self.available else None

    @property
    def peak_mib(self) -> float | None:
        return None if self.peak is None else round(self.peak / 2**20, 1)
