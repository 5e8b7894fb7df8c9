"""Processes of a test's run, found by a marker the test put in its environment (every process the run
starts inherits it): the driver, decode workers, Ray's GCS, raylet and workers."""
from __future__ import annotations

from pathlib import Path


def marked(marker: str) -> list[int]:
    """PIDs of live (not zombie) processes whose environment holds ``marker``."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if marker.encode() in (d / "environ").read_bytes():
                if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    pids.append(int(d.name))
        except OSError:
            continue
    return pids
