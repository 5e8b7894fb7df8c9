"""The private Ray instance's reaper without Ray: a stand-in driver with a marked child, an unmarked child
and an unmarked grandchild is killed with SIGKILL; the reaper ends all three (the marker for the one, the
process tree it read while the driver lived for the others) and leaves an unrelated process alone, also when
that process's PID is in the tree it read but its start time differs (a reused PID)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from benchmark.executors.ray.reaper import LOG_ENV, MARKER_ENV, alive, sweep
from tests import ROOT

DRIVER = """
import os, subprocess, sys
env = {k: v for k, v in os.environ.items() if k != sys.argv[1]}
a = subprocess.Popen(["sleep", "600"], env={**env, sys.argv[1]: sys.argv[2]})
b = subprocess.Popen(["sh", "-c", "sleep 600 & echo $!; wait"], env=env, stdout=subprocess.PIPE, text=True)
d = int(b.stdout.readline())
print(a.pid, b.pid, d, flush=True)
sys.stdin.read()
"""


def test_reaper_ends_marked_and_descendant_processes_of_a_killed_driver_and_nothing_else(tmp_path):
    marker, log = "reapertest0001", tmp_path / "reaper.log"
    other = subprocess.Popen(["sleep", "600"])  # not the driver's, not marked
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, MARKER_ENV, marker], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    reaper = None
    try:
        a, b, d = (int(x) for x in driver.stdout.readline().split())
        reaper = subprocess.Popen([sys.executable, "-m", "benchmark.executors.ray.reaper", str(driver.pid), marker,
                                   str(tmp_path / "instance-temp")], cwd=ROOT, env={**os.environ, LOG_ENV: str(log)},
                                  start_new_session=True)
        (tmp_path / "instance-temp").mkdir()
        deadline = time.time() + 60
        while time.time() < deadline and "watching" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.05)
        assert "(3 processes below it)" in log.read_text(), log.read_text()
        assert all(alive(p) for p in (a, b, d))

        driver.kill()
        driver.wait(timeout=10)
        assert reaper.wait(timeout=30) == 0
        text = log.read_text()
        assert "driver gone; killed 3" in text and "still alive" not in text, text
        assert not any(alive(p) for p in (a, b, d)), text
        assert alive(other.pid)
        assert not (tmp_path / "instance-temp").exists()

        # a PID in the tree the reaper read whose start time differs is another process now: left alone
        assert sweep("no-such-marker", known={other.pid: "1"}, limit_s=2) == {}
        assert alive(other.pid)
    finally:
        for proc in (driver, reaper, other):
            if proc is not None and proc.poll() is None:
                proc.kill()
        for pid in locals().get("a", 0), locals().get("b", 0), locals().get("d", 0):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def test_a_reaper_told_to_stop_by_the_driver_kills_nothing(tmp_path):
    marker, log = "reapertest0002", tmp_path / "reaper.log"
    child = subprocess.Popen(["sleep", "600"], env={**os.environ, MARKER_ENV: marker})
    reaper = subprocess.Popen([sys.executable, "-m", "benchmark.executors.ray.reaper", str(os.getpid()), marker,
                               str(tmp_path)], cwd=ROOT, env={**os.environ, LOG_ENV: str(log)})
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not log.exists():
            time.sleep(0.05)
        reaper.terminate()
        assert reaper.wait(timeout=30) == 0
        assert "stopped the instance itself" in log.read_text()
        assert alive(child.pid) and tmp_path.exists()
    finally:
        child.kill()
        if reaper.poll() is None:
            reaper.kill()
