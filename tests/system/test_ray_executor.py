"""The Ray executor in this process against one Ray session (4 logical CPUs, 2 declared GPUs): results equal
the serial executor's, a worker killed mid-task is retried (checked through Ray's state API), Ray Data
extraction and sharded decode give the serial path's arrays, GPU placement follows the declared GPUs.
The pure parts (executor options, resources) need no Ray."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.config.specs import GridSpec, ProbeSpec, TrainSpec
from benchmark.driver.run import run_grid
from benchmark.executors.base import ExecutorSpec
from benchmark.executors.ray.resources import SHARED_GPU, choose_extraction, task_resources
from benchmark.interfaces import BadInput, ClusterSpec
from benchmark.pipeline.plan import CellTask, ProbeTask, RuntimeInfo, TrainTask
from benchmark.runtime.threads import ThreadProfile
from benchmark.scoring.columns import timing_columns
from benchmark.store.artifacts import ArtifactStore
from registry.weights import RANDOM

PROFILE = ThreadProfile(torch_threads=2, blas_threads=2, cpus=2)
SHAPE = {"cpus": 4.0, "gpus": 2.0, "max_node_cpus": 2.0, "max_node_memory": 8 * 2**30, "nodes": [{}]}


def small_spec(**kw) -> GridSpec:
    base = dict(dataset="digits", limit=300, backbones=("resnet18", "raw_pixels"), pretexts=("none", "rotation"),
                clusterers=("kmeans",), image_size=16, device="cpu", seeds=(0,),
                train=TrainSpec(epochs=1, batch_size=32, max_steps=5), probe=ProbeSpec(k_per_class=4, draws=2))
    base.update(kw)
    return GridSpec(**base)


def cells(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "cells.csv").drop(columns=timing_columns())


def run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


# ---- no Ray needed ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,words", [
    (dict(name="dask"), ["--executor", "'dask'", "serial, ray"]),
    (dict(name="ray", gpus_per_task=0), ["--gpus-per-task", "0"]),
    (dict(name="ray", gpus_per_task=1.5), ["--gpus-per-task", "1.5"]),
    (dict(name="ray", extract_with="spark"), ["--extract-with", "'spark'", "ray-data"]),
    (dict(name="ray", num_cpus=0), ["--ray-num-cpus", ">= 1"]),
    (dict(name="ray", data_batch_size=0), ["--ray-batch-size"]),
    (dict(address="auto"), ["--ray-address", "needs --executor ray"]),
    (dict(extract_with="ray-data"), ["--extract-with ray-data", "needs --executor ray"]),
])
def test_executor_options_are_checked_before_any_compute(kw, words):
    with pytest.raises(BadInput) as err:
        ExecutorSpec(**kw)
    assert all(w in str(err.value) for w in words), str(err.value)


def _train(threads: int = 2) -> TrainTask:
    rt = RuntimeInfo("cuda", "bf16", True, True, threads)
    return TrainTask("k", "img", "resnet18", "rotation", None, TrainSpec(), 0, 32, RANDOM, rt)


def test_train_tasks_ask_for_gpus_on_cuda_and_cells_for_cpus_and_memory():
    on_gpu = task_resources(_train(), PROFILE, True, 1.0, SHAPE)
    assert on_gpu["num_gpus"] == 1.0 and on_gpu["num_cpus"] == 2.0
    assert task_resources(_train(), PROFILE, True, 0.5, SHAPE)["num_gpus"] == 0.5
    assert task_resources(_train(), PROFILE, False, 1.0, SHAPE)["num_gpus"] == 0.0
    # a node of 1 CPU: the task asks for what a node has and keeps its threads (results stay equal)
    one = task_resources(_train(4), PROFILE, True, 1.0, {**SHAPE, "max_node_cpus": 1.0})
    assert one["num_cpus"] == 1.0 and one["threads"] == 4
    cell = CellTask("c", "f", "r", "img", "lab", "hdbscan", 10, ClusterSpec(), 0, "cpu", 1)
    small = task_resources(cell, PROFILE, True, 1.0, SHAPE, feature_dim=512, n_images=1000)
    assert small["num_cpus"] == 1.0 and small["num_gpus"] == 0.0
    big = task_resources(cell, PROFILE, True, 1.0, SHAPE, feature_dim=512, n_images=1_000_000)
    assert small["memory"] > 2 * 2**30 and big["memory"] == SHAPE["max_node_memory"] // 2  # capped
    on_cuda = task_resources(replace(cell, device="cuda"), PROFILE, True, 1.0, SHAPE, 512, 1000)
    assert on_cuda["num_gpus"] == SHARED_GPU
    probe = ProbeTask("p", "f", "img", "lab", ProbeSpec(), 0, "cpu", None)
    assert task_resources(probe, PROFILE, False, 1.0, SHAPE)["num_cpus"] == PROFILE.blas_threads


def test_extraction_goes_to_ray_data_as_asked_or_for_large_sets_spread_over_devices():
    spec = ExecutorSpec(name="ray")
    assert choose_extraction(spec, SHAPE, 1_000_000) == "ray-data"
    assert choose_extraction(spec, SHAPE, 1_000) == "task"
    assert choose_extraction(spec, {**SHAPE, "gpus": 1.0}, 1_000_000) == "task"  # one GPU, one node
    assert choose_extraction(replace(spec, extract_with="ray-data"), SHAPE, 10) == "ray-data"
    assert choose_extraction(replace(spec, extract_with="task"), SHAPE, 10**7) == "task"


def test_missing_ray_is_one_usage_line_before_anything_is_written(tmp_path, monkeypatch, capsys):
    import sys

    from benchmark.cli.main import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code = main(["run", "--preset", "quick", "--executor", "ray", "--out", str(tmp_path / "out"),
                 "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install '.[ray]'" in err[0], err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


# ---- one Ray session for the rest -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    import tempfile

    if ray.is_initialized():
        ray.shutdown()
    temp = tempfile.mkdtemp(prefix="sslt-", dir="/tmp")
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=True, log_to_driver=False, _temp_dir=temp,
             configure_logging=False)
    yield ray
    ray.shutdown()
    import shutil

    shutil.rmtree(temp, ignore_errors=True)  # its session logs: ~3 MB a run, left in /tmp otherwise


def kill_spec() -> GridSpec:
    """Training long enough (30 steps, a few seconds) for the killer to find its worker."""
    return small_spec(train=TrainSpec(epochs=1, batch_size=32, max_steps=30))


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("serial")
    run_grid(kill_spec(), base / "run", base / "cache", progress=False)
    return base


def test_worker_killed_mid_task_is_retried_and_the_run_equals_a_clean_one(ray_session, serial_reference, tmp_path):
    from ray.util.state import list_tasks

    spec = kill_spec()
    killed: dict[str, object] = {}
    gcs = ray_session.get_runtime_context().gcs_address  # this session's, whatever else runs on the machine

    def killer() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for t in list_tasks(address=gcs, filters=[("state", "=", "RUNNING")], limit=100):
                if t.name.startswith("train-") and t.worker_pid:
                    os.kill(t.worker_pid, signal.SIGKILL)
                    killed.update(name=t.name, pid=t.worker_pid, task_id=t.task_id)
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    run_grid(spec, tmp_path / "run", tmp_path / "cache", progress=False, executor="ray")
    thread.join()
    assert killed, "no train task was seen running"
    attempts = []
    deadline = time.time() + 30
    while time.time() < deadline:  # task events reach the state API within a second or two
        attempts = list_tasks(address=gcs, filters=[("task_id", "=", killed["task_id"])], detail=True,
                              limit=10)
        if any(a.state == "FINISHED" for a in attempts):
            break
        time.sleep(0.5)
    by_attempt = {a.attempt_number: a for a in attempts}
    assert by_attempt[0].state == "FAILED" and by_attempt[0].worker_pid == killed["pid"], attempts
    assert by_attempt[0].error_type == "WORKER_DIED", attempts
    assert by_attempt[1].state == "FINISHED" and by_attempt[1].worker_pid != killed["pid"], attempts
    pd.testing.assert_frame_equal(cells(tmp_path / "run"), cells(serial_reference / "run"))
    info = run_json(tmp_path / "run")
    assert info["executor"] == "ray" and info["driver_pid"] not in info["task_pids"]
    assert info["status"] == "finished" and info["failed_cells"] == 0


def test_ray_data_extraction_writes_shards_and_gives_the_serial_features(ray_session, serial_reference, tmp_path):
    spec = replace(kill_spec(), pretexts=("none",), backbones=("resnet18",))  # one of the reference's feature sets
    ex = ExecutorSpec(name="ray", extract_with="ray-data", data_batch_size=128)
    run_grid(spec, tmp_path / "run", tmp_path / "cache", progress=False, executor=ex)
    ours, ref = ArtifactStore(tmp_path / "cache"), ArtifactStore(serial_reference / "cache")
    keys = sorted({c for c in pd.read_csv(tmp_path / "run" / "cells.csv")["feature_key"]})
    assert len(keys) == 1
    driver = os.getpid()
    for key in keys:
        feats, meta = ours.get_array("features", key)
        want, _ = ref.get_array("features", key)
        np.testing.assert_allclose(feats, want, rtol=1e-4, atol=1e-5)
        assert meta["extract_with"] == "ray-data"
        rd = meta["ray_data"]
        assert rd["batch_size"] == 128 and rd["actor_pool"] >= 1 and len(rd["shards"]) >= 2  # 300 rows / 128
        assert sorted(r for s in rd["shards"] for r in s["rows"])[0] == 0
        assert all(s["pid"] != driver for s in rd["shards"])
    assert not any((tmp_path / "cache" / "shards" / "features").glob("*/*.npy"))  # assembled, then removed


def test_a_large_photo_folder_decodes_in_ray_tasks_over_shards(ray_session, photo_folder, tmp_path):
    spec = small_spec(dataset=str(photo_folder), limit=None, backbones=("raw_pixels",), pretexts=("none",),
                      image_size=16)
    run_grid(spec, tmp_path / "serial", tmp_path / "c1", progress=False)
    ex = ExecutorSpec(name="ray", decode_shard_files=4)  # 24 photos: 6 shards
    run_grid(spec, tmp_path / "ray", tmp_path / "c2", progress=False, executor=ex)
    info = run_json(tmp_path / "ray")
    decode = [p for p in info["task_placement"] if p["kind"] == "decode"][0]
    shards = decode["decode_shards"]
    assert len(shards) == 6 and sum(s["files"] for s in shards) == 24
    assert all(s["pid"] != os.getpid() for s in shards)
    key = info["images_key"]
    a, b = ArtifactStore(tmp_path / "c1").get_images(key), ArtifactStore(tmp_path / "c2").get_images(key)
    assert a[1]["names"] == b[1]["names"] and np.array_equal(np.asarray(a[0]), np.asarray(b[0]))
    pd.testing.assert_frame_equal(cells(tmp_path / "ray"), cells(tmp_path / "serial"))


def test_rows_of_a_skipped_pretext_equal_serial_whatever_order_tasks_finish_in(ray_session, tmp_path):
    """colorization does not apply to grayscale digits: its skipped train task finishes at once on Ray,
    before the features its rows take their weights description from (found in the default preset)."""
    spec = small_spec(backbones=("resnet18",), pretexts=("colorization", "none"))
    run_grid(spec, tmp_path / "serial", tmp_path / "c1", progress=False)
    run_grid(spec, tmp_path / "ray", tmp_path / "c2", progress=False, executor="ray")
    ray_cells = cells(tmp_path / "ray")
    pd.testing.assert_frame_equal(ray_cells, cells(tmp_path / "serial"))
    skipped = ray_cells[ray_cells["pretext"] == "colorization"]
    assert (skipped["status"] == "skipped").all() and (skipped["weights"] == "random").all(), skipped


def test_train_and_extract_tasks_get_the_declared_gpus(ray_session, tmp_path, monkeypatch):
    """ray.init(num_gpus=2) on this CPU machine: train/extract tasks ask for one GPU each and concurrent ones
    get distinct CUDA_VISIBLE_DEVICES; the tasks compute on the CPU (FAKE_GPU_ENV)."""
    from benchmark.executors.ray.tasks import FAKE_GPU_ENV

    monkeypatch.setenv(FAKE_GPU_ENV, "1")
    spec = small_spec(backbones=("resnet18", "timm:resnet10t"), device="auto",
                      train=TrainSpec(epochs=1, batch_size=32, max_steps=15))
    run_grid(spec, tmp_path / "run", tmp_path / "cache", progress=False, executor="ray")
    info = run_json(tmp_path / "run")
    assert info["executor_info"]["uses_gpu"] and info["runtime"].startswith("cuda")
    gpu_tasks = [p for p in info["task_placement"] if p["kind"] in ("train", "extract") and p["computed"]]
    assert len(gpu_tasks) == 6  # 2 trainings, 4 extractions
    for p in gpu_tasks:
        assert p["requested"]["num_gpus"] == 1.0 and len(p["gpu_ids"]) == 1, p
        assert p["cuda_visible_devices"] == p["gpu_ids"][0], p
    overlapping = [(a, b) for i, a in enumerate(gpu_tasks) for b in gpu_tasks[i + 1:]
                   if a["started"] < b["ended"] and b["started"] < a["ended"]]
    assert overlapping, "no two GPU tasks ran at the same time"
    assert all(a["gpu_ids"] != b["gpu_ids"] for a, b in overlapping)
    assert {g for p in gpu_tasks for g in p["gpu_ids"]} == {"0", "1"}
    others = [p for p in info["task_placement"] if p["kind"] in ("probe", "cell") and p["computed"]]
    assert others and all(p["requested"]["num_gpus"] == SHARED_GPU for p in others)
    assert all(p["requested"]["num_gpus"] == 0 for p in info["task_placement"] if p["kind"] == "reduce")
