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


def describe(pids: list[int]) -> list[str]:
    """One line per process for a failing assertion: pid, parent, state, whether it carries a private Ray
    instance's marker, and its command line (so a leftover says what it is and who should have ended it)."""
    lines = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            inst = b"SSLBENCH_RAY_INSTANCE=" in Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            lines.append(f"{pid} (gone)")
            continue
        lines.append(f"{pid} ppid={stat[1]} state={stat[0]} instance_marker={inst} {cmd[:160]}")
    return lines
