"""The Ray executor from the command line, each run on its own Ray instance: the quick preset equals the
serial executor's cells.csv; SIGTERM and kill -9 of the driver leave no process of its private instance
behind and ``--resume`` finishes the run to a clean run's results; a two-node cluster (``ray start --head`` +
``ray start --address`` on this machine, each node its own --temp-dir) is used by one run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from benchmark.scoring.columns import timing_columns
from tests import ROOT
from tests.procs import describe, marked

pytest.importorskip("ray")
SMALL = ["--dataset", "digits", "--limit", "300", "--backbones", "resnet18,raw_pixels", "--pretexts", "none,rotation",
         "--clusterers", "kmeans,faiss_kmeans", "--image-size", "16", "--probe-k", "4", "--probe-draws", "2",
         "--seed", "0", "--device", "cpu"]


def start(args: list[str], marker: str, **env: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "benchmark", "run", *args, "--no-progress"]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "SSLBENCH_TEST_MARKER": marker, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    proc = start(args, uuid.uuid4().hex, **env)
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:  # never leave a driver computing behind a failed test
        proc.kill()  # its reaper ends the private Ray instance
        proc.communicate(timeout=60)
        raise
    assert proc.returncode == 0, err[-3000:]
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def cells(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "cells.csv").drop(columns=timing_columns())


def gone(marker: str, timeout: float = 30) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and marked(marker):
        time.sleep(0.2)
    return not marked(marker)


# the quick preset on 600 digits with two backbones, three pretexts and a centroid and a density clusterer:
# every stage kind (a trained pretext with options, UMAP's reduction) at a third of the full preset's time
QUICK_PART = ["--preset", "quick", "--limit", "600", "--backbones", "resnet18,raw_pixels",
              "--pretexts", "none,rotation,jigsaw", "--clusterers", "kmeans,hdbscan"]


def test_quick_preset_with_ray_equals_serial(tmp_path):
    run([*QUICK_PART, "--out", str(tmp_path / "serial"), "--cache-dir", str(tmp_path / "c1")])
    run([*QUICK_PART, "--executor", "ray", "--out", str(tmp_path / "ray"), "--cache-dir", str(tmp_path / "c2")])
    pd.testing.assert_frame_equal(cells(tmp_path / "ray"), cells(tmp_path / "serial"))
    info = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert info["executor"] == "ray" and info["executor_info"]["ray_version"]
    assert info["executor_info"]["address"] == "private local instance"
    computed = [p for p in info["task_placement"] if p["computed"]]
    assert computed and all(p["pid"] != info["driver_pid"] for p in computed)  # computed in worker processes
    assert info["computed"]["trained"] > 0  # separate caches: the Ray run computed, not read, its features


def rows(out: Path) -> int:
    try:
        return len(pd.read_csv(out / "cells.csv"))
    except (OSError, pd.errors.EmptyDataError):
        return 0


def test_sigterm_and_kill_9_of_the_driver_leave_no_ray_process_and_resume_finishes(tmp_path):
    out, args = tmp_path / "run", SMALL + ["--max-steps", "40", "--executor", "ray"]
    ref = tmp_path / "clean"
    run(SMALL + ["--max-steps", "40", "--out", str(ref), "--cache-dir", str(tmp_path / "c-clean")])
    args += ["--out", str(out), "--cache-dir", str(tmp_path / "cache")]

    # SIGTERM once the first cells are written: one line, exit 143, the private instance ends with the run
    marker = uuid.uuid4().hex
    proc = start(args, marker)
    deadline = time.time() + 300
    while rows(out) == 0 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    before = marked(marker)
    assert len(before) >= 4, before  # the driver, Ray's GCS and raylet, workers
    proc.send_signal(signal.SIGTERM)
    _o, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == f"terminated; finished cells are kept, resume with --resume --out {out}"
    assert gone(marker), f"processes of the terminated run: {describe(marked(marker))}"
    kept = rows(out)
    assert 0 < kept < 8

    # kill -9 of the resumed run's driver while its workers compute: the reaper ends the instance
    marker, reaper_log = uuid.uuid4().hex, tmp_path / "reaper.log"
    proc = start(args + ["--resume"], marker, SSLBENCH_REAPER_LOG=str(reaper_log))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (status(out) == "running" and busy_workers(marker)):
        time.sleep(0.05)
    time.sleep(1.0)
    assert proc.poll() is None, "the resumed run ended before it could be killed"
    assert len(marked(marker)) >= 4
    proc.kill()
    proc.wait(timeout=30)
    assert gone(marker), (f"processes of the killed run: {describe(marked(marker))}; the reaper's log: "
                          f"{reaper_log.read_text() if reaper_log.exists() else '(none)'}")
    assert "driver gone; killed" in reaper_log.read_text() and "still alive" not in reaper_log.read_text()
    assert status(out) == "running"  # it never got to say otherwise

    run(args + ["--resume"])
    pd.testing.assert_frame_equal(cells(out), cells(ref))


def status(out: Path) -> str:
    try:
        return json.loads((out / "run.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return ""


def busy_workers(marker: str) -> list[int]:
    """Ray workers of the run executing a task (an idle worker's title is ray::IDLE)."""
    busy = []
    for pid in marked(marker):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"ray::") and not title.startswith(b"ray::IDLE"):
            busy.append(pid)
    return busy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_started_with_ray_start_are_both_used(tmp_path):
    ray_cli = str(Path(sys.executable).with_name("ray"))
    marker, port = uuid.uuid4().hex, free_port()
    temps = [tempfile.mkdtemp(prefix="sslh-", dir="/tmp"), tempfile.mkdtemp(prefix="sslw-", dir="/tmp")]
    env = {**os.environ, "SSLBENCH_TEST_MARKER": marker, "RAY_AUTH_MODE": "token"}
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    try:
        subprocess.run([ray_cli, "start", "--head", "--port", str(port), "--temp-dir", temps[0],
                        "--include-dashboard=false", *common], env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([ray_cli, "start", "--address", f"127.0.0.1:{port}", "--temp-dir", temps[1], *common],
                       env=env, check=True, capture_output=True, timeout=120)
        out = tmp_path / "run"
        run(SMALL + ["--executor", "ray", "--ray-address", f"127.0.0.1:{port}", "--out", str(out),
                     "--cache-dir", str(tmp_path / "cache")], RAY_AUTH_MODE="token")
        info = json.loads((out / "run.json").read_text())
        nodes = info["executor_info"]["nodes"]
        assert len(nodes) == 2 and all(n["cpus"] == 1.0 for n in nodes)
        used = {p["node_id"] for p in info["task_placement"] if p["computed"]}
        assert used == {n["node_id"] for n in nodes}, used
        assert info["executor_info"]["address"] == f"127.0.0.1:{port}"
    finally:
        for pid in marked(marker):  # only the processes this test started (they carry its marker)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        assert gone(marker, 20)
        for t in temps:
            shutil.rmtree(t, ignore_errors=True)


def _refused(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", *args, "--no-progress"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    return proc, time.perf_counter() - t0


def test_an_unreachable_ray_address_is_one_line_within_its_timeout(tmp_path):
    """Nothing listening: refused at once. A port that accepts but never speaks Ray (Ray itself retries
    such an address for about 20 s whatever its settings): refused at --ray-timeout."""
    base = [*SMALL, "--executor", "ray", "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    proc, _ = _refused([*base, "--ray-address", f"127.0.0.1:{port}"])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], proc.stderr
    assert "nothing answers there" in lines[0]
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        addr = f"127.0.0.1:{silent.getsockname()[1]}"
        proc, wall = _refused([*base, "--ray-address", addr, "--ray-timeout", "2"])
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert f"bad --ray-address '{addr}'" in lines[0] and "within 2 s" in lines[0]
    t0 = time.perf_counter()  # what the process costs without any waiting: its imports and the listing
    subprocess.run([sys.executable, "-m", "benchmark", "plan", *SMALL, "--cache-dir", str(tmp_path / "c")],
                   cwd=ROOT, capture_output=True, timeout=120)
    assert wall < time.perf_counter() - t0 + 2 + 8  # the 2 s timeout, never Ray's own ~20 s of retries
    assert not (tmp_path / "o").exists()
