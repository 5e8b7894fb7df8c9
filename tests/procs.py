"""Processes of a test's run, found by the marker the test put in its environment as
``SSLBENCH_TEST_MARKER`` (every process the run starts inherits it): the driver, decode workers, Ray's GCS,
raylet and workers."""
from __future__ import annotations

from pathlib import Path


def marked(marker: str) -> list[int]:
    """PIDs of live (not zombie) processes whose environment has ``SSLBENCH_TEST_MARKER=<marker>``."""
    entry = f"SSLBENCH_TEST_MARKER={marker}".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if entry in (d / "environ").read_bytes().split(b"\0"):
                if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    pids.append(int(d.name))
        except OSError:
            continue
    return pids
