"""The reaper of a private Ray instance: ``python -m benchmark.executors.ray.reaper DRIVER_PID MARKER TEMP_DIR``.

Started by the driver in a session of its own; when the driver is gone (finished, crashed, or killed with
SIGKILL, which no handler in the driver can see), it kills every process that carries the instance's marker
in its environment (the GCS, raylet, dashboard, agents and workers all inherit it) and every process it saw
descend from the driver while the driver lived (a process whose environment lacks the marker, or one that
Ray's own fate-sharing orphaned), then removes the instance's temp dir. Processes of other Ray instances on
the machine carry other markers or none, and a PID reused by an unrelated process is told apart by its start
time. ``SSLBENCH_REAPER_LOG=FILE`` makes it append what it found and killed to FILE (for diagnosis)."""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

MARKER_ENV = "SSLBENCH_RAY_INSTANCE"
LOG_ENV = "SSLBENCH_REAPER_LOG"
SNAPSHOT_EVERY_S = 2.0  # how often the driver's process tree is read while it lives
SWEEP_LIMIT_S = 15.0  # the sweep gives up after this long (a process stuck in the kernel cannot be killed)


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


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state is [0], ppid [1], start time [19])."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(root: int) -> dict[int, str]:
    """The live processes below ``root`` in the process tree, each with its start time (to tell a reused PID)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            if pid not in found:
                found[pid] = start
                todo.append(pid)
    return found


def _still(pid: int, start: str) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z" and fields[19] == start


def sweep(marker: str, exclude: set[int] | None = None, known: dict[int, str] | None = None,
          limit_s: float = SWEEP_LIMIT_S) -> dict[int, str]:
    """SIGKILL the instance's processes (and the ``known`` PIDs still running with the same start time), round
    after round until a round finds none: a dying raylet may still have started one. Returns the PIDs
    killed with their command lines."""
    skip = (exclude or set()) | {os.getpid()}
    killed: dict[int, str] = {}
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        pids = {p for p in marked_pids(marker) if p not in skip}
        pids |= {p for p, start in (known or {}).items() if p not in skip and _still(p, start)}
        pids = {p for p in pids if alive(p)}
        if not pids:
            break
        for pid in sorted(pids):
            try:
                killed.setdefault(pid, _cmdline(pid))
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)
    return killed


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _log(line: str) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} reaper {os.getpid()}: {line}\n")


def main(argv: list[str]) -> int:
    driver, marker, temp_dir = int(argv[0]), argv[1], argv[2]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the driver's terminal is the driver's
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))  # the driver ended the instance itself
    known = descendants(driver)
    seen = time.monotonic()
    _log(f"watching driver {driver} ({len(known)} processes below it), instance {marker}")
    while alive(driver) and not stop["now"]:
        if time.monotonic() - seen >= SNAPSHOT_EVERY_S:
            known.update(descendants(driver))
            seen = time.monotonic()
        time.sleep(0.5)
    if stop["now"]:
        _log("the driver stopped the instance itself")
        return 0
    began = time.monotonic()
    killed = sweep(marker, known=known)
    shutil.rmtree(temp_dir, ignore_errors=True)
    left = [p for p in marked_pids(marker) if alive(p)]
    _log(f"driver gone; killed {len(killed)} in {time.monotonic() - began:.2f} s"
         + "".join(f"\n  {pid} {cmd}" for pid, cmd in sorted(killed.items()))
         + (f"\n  still alive: {left}" if left else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
