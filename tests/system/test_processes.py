"""Processes: decode workers die with the run (even a kill -9 of it); Ctrl-C and SIGTERM end a run with one
line and exit codes 130 and 143, keeping what is finished."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import ROOT
from tests.procs import marked


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory) -> Path:
    """1,200 photos: more than the decode's POOL_MIN, so worker processes decode them, and enough that an
    idle 2-core machine is still decoding when the signal tests send theirs (400 could finish first)."""
    root = tmp_path_factory.mktemp("many") / "photos"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(600):
            Image.fromarray(rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def _start(folder: Path, tmp_path: Path, marker: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "benchmark", "run", "--dataset", str(folder), "--backbones", "raw_pixels",
           "--pretexts", "none", "--clusterers", "kmeans", "--image-size", "16", "--out", str(tmp_path / "out"),
           "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    env = {**os.environ, "SSLBENCH_TEST_MARKER": marker}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """The run starts with Ctrl-C's default action even when the tests do not have it: a shell starts a
    background job (``make test &``, nohup) with SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler, so the Ctrl-C test's run would go on to the end."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_workers(proc: subprocess.Popen, marker: str, timeout: float = 60) -> list[int]:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        children = [p for p in marked(marker) if p != proc.pid]
        if len(children) >= 2:
            return children
        time.sleep(0.02)
    raise AssertionError("the decode workers never started")


def test_kill_9_during_the_parallel_decode_leaves_no_process_behind(many_photos, tmp_path):
    marker = uuid.uuid4().hex
    proc = _start(many_photos, tmp_path, marker)
    _wait_for_workers(proc, marker)
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.time() + 20
    while time.time() < deadline and marked(marker):
        time.sleep(0.1)
    assert marked(marker) == [], "processes of the killed run are still alive"


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_and_sigterm_end_with_one_line_and_their_exit_code(sig, code, word, many_photos, tmp_path):
    marker = uuid.uuid4().hex
    proc = _start(many_photos, tmp_path, marker)
    _wait_for_workers(proc, marker)
    time.sleep(0.5)  # past the workers' start-up handshake (a signal inside it: see the README's known limits)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last == f"{word}; finished cells are kept, resume with --resume --out {tmp_path / 'out'}", err
    deadline = time.time() + 20
    while time.time() < deadline and marked(marker):
        time.sleep(0.1)
    assert marked(marker) == []
    import json

    info = json.loads((tmp_path / "out" / "run.json").read_text()) if (tmp_path / "out" / "run.json").exists() else None
    assert info is None or info["status"] == "interrupted"


def test_kill_9_during_training_resumes_from_the_checkpoint_and_ends_as_a_run_that_never_stopped(tmp_path):
    """A run killed while it trains keeps its training's last checkpoint; ``--resume`` goes on from it (the
    weights record says from which step), deletes it once the weights are stored, and its cells equal, in
    every column but the timings, those of a run that was never killed."""
    import pandas as pd

    from benchmark.scoring.columns import timing_columns
    from benchmark.store.artifacts import ArtifactStore

    base = [sys.executable, "-m", "benchmark", "run", "--dataset", "digits", "--limit", "128",
            "--backbones", "timm:resnet10t", "--pretexts", "rotation", "--clusterers", "kmeans", "--image-size",
            "16", "--epochs", "8", "--batch-size", "16", "--seed", "0", "--no-progress"]
    env = {**os.environ, "SSLBENCH_CHECKPOINT_EVERY_S": "0"}

    def args(name: str) -> list[str]:
        return base + ["--out", str(tmp_path / name), "--cache-dir", str(tmp_path / f"cache-{name}")]

    ref = subprocess.run(args("ref"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    ckpts = tmp_path / "cache-run" / "checkpoints"
    proc = subprocess.Popen(args("run"), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300
    while not (ckpts.is_dir() and any(ckpts.glob("*.pt"))) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before its first checkpoint"
    time.sleep(1.0)  # a few more sync windows: the checkpoint is past the first
    proc.kill()
    proc.communicate(timeout=60)
    assert not list((tmp_path / "cache-run").glob("weights/*.json")), "training finished before the kill"
    done = subprocess.run(args("run") + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (meta_file,) = (tmp_path / "cache-run").glob("weights/*.json")
    meta = ArtifactStore(tmp_path / "cache-run").get_weights_meta(meta_file.stem)
    assert meta["resumed_at_step"] and 0 < meta["resumed_at_step"] < meta["steps"] == 8 * 8
    assert not list(ckpts.glob("*")), "the checkpoint outlived the stored weights"
    (ref_meta_file,) = (tmp_path / "cache-ref").glob("weights/*.json")
    assert meta_file.name == ref_meta_file.name  # the same cache key
    assert meta["step_losses"] == ArtifactStore(tmp_path / "cache-ref").get_weights_meta(meta_file.stem)["step_losses"]
    cells = [pd.read_csv(tmp_path / name / "cells.csv").drop(columns=timing_columns()) for name in ("ref", "run")]
    pd.testing.assert_frame_equal(cells[0], cells[1])
