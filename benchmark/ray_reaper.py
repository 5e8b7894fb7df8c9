"""The reaper of a private Ray instance: ``python -m benchmark.ray_reaper DRIVER_PID MARKER TEMP_DIR``.

Started by the driver in a session of its own; when the driver is gone (finished, crashed, or killed with
SIGKILL, which no handler in the driver can see), it kills every process that carries the instance's marker
in its environment (the GCS, raylet, dashboard, agents and workers all inherit it) and removes the
instance's temp dir. Processes of other Ray instances on the machine carry other markers or none."""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

MARKER_ENV = "SSLBENCH_RAY_INSTANCE"


def marked_pids(marker: str) -> list[int]:
    """PIDs of the processes whose environment holds ``SSLBENCH_RAY_INSTANCE=marker``."""
    needle = f"{MARKER_ENV}={marker}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            out.append(int(entry.name))
    return out


def sweep(marker: str, exclude: set[int] | None = None, rounds: int = 3) -> int:
    """SIGKILL the instance's processes (a few rounds: a dying raylet may still start one). Returns how many."""
    killed: set[int] = set()
    for _ in range(rounds):
        pids = [p for p in marked_pids(marker) if p not in (exclude or set()) and p != os.getpid()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.2)
    return len(killed)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def main(argv: list[str]) -> int:
    driver, marker, temp_dir = int(argv[0]), argv[1], argv[2]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the driver's terminal is the driver's
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))  # the driver ended the instance itself
    while alive(driver) and not stop["now"]:
        time.sleep(0.5)
    if not stop["now"]:
        sweep(marker)
        shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
