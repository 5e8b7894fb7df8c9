"""kill -9 of a MoCo and a DINO training after a checkpoint was written, then resuming it: the log says the
checkpoint was loaded, and the weights, the optimizer, the queue, the center and the teacher equal those of a
training that never stopped (bit for bit on the CPU)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.config.specs import TrainSpec
from benchmark.runtime.device import select_runtime
from benchmark.train import loop
from benchmark.train.checkpoint import Checkpoint, ResumedFromCheckpoint
from registry.backbones import build_backbone
from registry.pretexts import build_pretext, pretext_class
from tests import ROOT

SMALL = {"moco": {"dim": 16, "queue": 24}, "dino": {"hidden": 32, "bottleneck": 16, "prototypes": 32}}
SPEC = TrainSpec(batch_size=4, epochs=3)  # 16 images: 4 steps an epoch, 12 steps
SYNC = 2  # steps between sync windows (checkpoints), instead of 16: short trainings

CHILD = textwrap.dedent("""
    import sys, time, numpy as np, torch
    from benchmark.train import loop, checkpoint
    from tests.benchmark.train.test_resume_methods import train
    loop.SYNC_EVERY = int(sys.argv[3])
    save = checkpoint.Checkpoint.save
    def save_then_wait(self, state):  # the parent kills this process while it waits after its first save
        save(self, state)
        print("saved", state["step"], flush=True)
        time.sleep(600)
    checkpoint.Checkpoint.save = save_then_wait
    train(sys.argv[1], checkpoint.Checkpoint(sys.argv[2], every_s=0))
""")


class Recording(Checkpoint):
    """A checkpoint that also keeps every state it saves, by step."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, every_s=0)
        self.states: dict[int, dict] = {}

    def save(self, state: dict) -> None:
        super().save(state)
        self.states[int(state["step"])] = _copy(state)


def _copy(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy(v) for v in obj)
    return obj


def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (16, 3, 16, 16), dtype=np.uint8)


def train(name: str, checkpoint: Checkpoint):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    bb = build_backbone("resnet18", 16)
    task = build_pretext(name, pretext_class(name).Options(**SMALL[name]))
    rt = select_runtime("cpu", cuda_available=False, bf16_supported=False)
    res, head = loop.train_pretext(bb, task, images(), SPEC, rt, 0, progress=False, checkpoint=checkpoint)
    return res, bb, head


def assert_equal(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("name", ["moco", "dino"])
def test_kill_9_after_a_checkpoint_then_resume_equals_a_training_that_never_stopped(name, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "SYNC_EVERY", SYNC)
    ref_ckpt = Recording(tmp_path / "ref.pt")
    ref_res, ref_bb, ref_head = train(name, ref_ckpt)

    path = tmp_path / "run.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, name, str(path), str(SYNC)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    deadline = time.time() + 120
    while not line and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert line.startswith("saved"), proc.stderr.read() if proc.stderr else ""
    killed_at = int(line.split()[1])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert path.is_file() and 0 < killed_at < 12

    resumed = Recording(path)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        res, bb, head = train(name, resumed)
    notes = [str(w.message) for w in seen if issubclass(w.category, ResumedFromCheckpoint)]
    assert notes and f"after step {killed_at} of 12" in notes[0], notes  # what run.log shows
    assert res.resumed_at_step == killed_at and res.step_losses == ref_res.step_losses
    assert_equal(bb.state_dict(), ref_bb.state_dict(), "backbone")
    assert_equal(head.state_dict(), ref_head.state_dict(), "head")  # queue and pointer, center, teacher
    last = max(resumed.states)
    assert last > killed_at and last in ref_ckpt.states
    for part in ("backbone", "head", "opt", "sched", "gen"):  # the optimizer's momentum buffers included
        assert_equal(resumed.states[last][part], ref_ckpt.states[last][part], part)
    buffers = {"moco": ("queue", "ptr", "key_backbone.body.0.weight"),
               "dino": ("center", "teacher_temp", "teacher_backbone.body.0.weight")}[name]
    for key in buffers:
        assert key in head.state_dict()
