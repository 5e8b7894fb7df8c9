"""``run.log`` in the run folder: every warning (shown above the progress bars too, which scroll them away),
every failed task with its traceback, and when the run started, resumed, finished or was interrupted."""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from tqdm.auto import tqdm


class RunLog:
    """While open, ``warnings.warn`` anywhere in this process prints one line to stderr and appends it here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: TextIO | None = None
        self._show: Any = None
        self.n_warnings = 0

    def __enter__(self) -> "RunLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        self._show = warnings.showwarning
        warnings.showwarning = self._on_warning
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        warnings.showwarning = self._show
        if self._fh:
            self._fh.close()
            self._fh = None

    def write(self, text: str) -> None:
        if self._fh:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            for line in text.rstrip("\n").splitlines() or [""]:
                self._fh.write(f"{stamp} {line}\n")
            self._fh.flush()

    def _on_warning(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    file: TextIO | None = None, line: str | None = None) -> None:
        text = f"warning: {message}"
        self.n_warnings += 1
        self.write(text)
        recording = getattr(warnings, "_showwarnmsg_impl", None) is not _PLAIN_IMPL  # catch_warnings(record=True)
        if recording or self._show is not _PLAIN_SHOW:  # someone else shows warnings: let them
            self._show(message, category, filename, lineno, file, line)
        else:
            tqdm.write(text, file=sys.stderr)  # one line, above the progress bars


_PLAIN_SHOW = warnings.showwarning
_PLAIN_IMPL = getattr(warnings, "_showwarnmsg_impl", None)
