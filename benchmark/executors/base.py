"""What every executor shares: the spec, the protocol, the blocked-task rule. Executors run a plan's tasks
respecting their dependencies and hand each result to the driver.

Tasks get the store's location, not in-memory objects, so an executor may run them in other processes
or on other machines; the driver (``on_done``) stays the only writer of the run files. A task whose
dependency was skipped or failed is not run: it gets that status, with the reason. The executor is not
part of a run's configuration (CONVENTIONS 7): the same plan gives the same keys and results in each."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from benchmark.interfaces import BadInput, Constraint, Status, check_settings, setting
from benchmark.pipeline.plan import Task
from benchmark.pipeline.stages import TaskResult

OnDone = Callable[[Task, TaskResult], None]
EXECUTOR_NAMES = ("serial", "ray")
EXTRACT_WITH = ("auto", "task", "ray-data")


@dataclass(frozen=True)
class DeviceFacts:
    """What the machines that run the tasks have: whether CUDA is usable there, bf16 support, the device's
    name (run.json). For the serial executor, this process's; for Ray, the cluster's."""

    cuda: bool
    bf16: bool
    name: str | None = None
    local_memory: bool = False  # True: the tasks run on this machine (its free memory bounds one task)


@dataclass(frozen=True)
class ExecutorSpec:
    """How stage tasks run (``--executor`` and the Ray options), validated before any compute.

    address: None starts a private local Ray instance (``address="local"``), "auto" joins a running cluster,
    host:port joins that one. gpus_per_task: GPUs a train/extract task asks for on CUDA (a fraction shares
    one). extract_with: "task" (one Ray task per feature set), "ray-data" (Ray Data ``map_batches`` with an
    actor pool), "auto" (ray-data above ``benchmark.executors.ray.data.AUTO_MIN_IMAGES``). num_cpus / num_gpus: the
    CPUs and GPUs a private instance declares (None: the machine's). data_batch_size / data_pool: the Ray
    Data batch size and actor pool size (None: one actor per GPU, or per CPU slot the task needs).
    decode_shard_files: a photo folder of more new files than twice this is decoded by Ray tasks of this
    many files each."""

    name: str = setting("serial", Constraint("choice", choices=EXECUTOR_NAMES), flag="executor",
                        label="--executor", help="how stage tasks run: serial (this process) or ray (Ray tasks "
                                                 "on a private local instance or a cluster)")
    address: str | None = setting(None, Constraint("text", optional=True), flag="ray-address",
                                  label="--ray-address", help="Ray: auto joins the running cluster, HOST:PORT "
                                                              "that one; default: a private local instance")
    gpus_per_task: float = setting(1.0, Constraint("real", 0, cap=1024, lo_open=True), flag="gpus-per-task",
                                   label="--gpus-per-task", help="Ray on CUDA: GPUs a train/extract task asks for "
                                                                 "(a fraction shares a GPU; default 1)")
    extract_with: str = setting("auto", Constraint("choice", choices=EXTRACT_WITH), flag="extract-with",
                                label="--extract-with", help="Ray: task (one task per feature set), ray-data (Ray "
                                                             "Data map_batches with a GPU actor pool) or auto")
    num_cpus: int | None = setting(None, Constraint("int", 1, cap=100_000, optional=True), flag="ray-num-cpus",
                                   label="--ray-num-cpus", help="Ray: CPUs the private local instance declares "
                                                                "(default all)")
    num_gpus: int | None = setting(None, Constraint("int", 0, cap=10_000, optional=True), flag="ray-num-gpus",
                                   label="--ray-num-gpus", help="Ray: GPUs the private local instance declares "
                                                                "(default all)")
    data_batch_size: int = setting(256, Constraint("int", 1, cap=1_000_000), flag="ray-batch-size",
                                   label="--ray-batch-size",
                                   help="Ray Data extraction: rows per batch (default 256)")
    data_pool: int | None = setting(None, Constraint("int", 1, cap=10_000, optional=True), flag="ray-pool",
                                    label="--ray-pool", help="Ray Data extraction: actors in the pool (default one "
                                                             "per GPU, or per CPU slot without GPUs)")
    connect_timeout_s: float = setting(30.0, Constraint("real", 0, cap=3600, lo_open=True), flag="ray-timeout",
                                       label="--ray-timeout", help="Ray: seconds to wait for --ray-address to "
                                                                   "answer before giving up (default 30)")
    decode_shard_files: int = setting(512, Constraint("int", 1, cap=1_000_000), label="decode shard size")

    def __post_init__(self) -> None:
        g = self.gpus_per_task
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not math.isfinite(g) or g <= 0 or \
                (g > 1 and g != int(g)):
            raise BadInput(f"bad --gpus-per-task {g!r}: need a fraction in (0, 1] or a whole number of GPUs")
        check_settings(self)
        if self.name == "serial":
            ray_only = {"--ray-address": self.address, "--ray-num-cpus": self.num_cpus,
                        "--ray-num-gpus": self.num_gpus, "--ray-pool": self.data_pool}
            given = [flag for flag, v in ray_only.items() if v is not None]
            if self.extract_with == "ray-data":
                given.append("--extract-with ray-data")
            if given:
                raise BadInput(f"bad {given[0]}: it needs --executor ray (the executor is serial)")
        if self.address is not None and self.address not in ("auto", "local") and host_port(self.address) is None:
            raise BadInput(f"bad --ray-address {self.address!r}: allowed: auto, local, or HOST:PORT (ray://HOST:PORT) "
                           "of a running cluster, the port 1 to 65535")


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT`` (None when it is neither)."""
    text = address.strip().removeprefix("ray://")
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    if any(ch.isspace() or ch in "/?#@" for ch in host):
        return None
    return host, int(port)


class Executor(Protocol):
    name: str

    def start(self) -> DeviceFacts:
        """Connect to the machines that run the tasks (before planning) and say what they have."""

    def run(self, tasks: Sequence[Task], store_root: Path, on_done: OnDone, progress: bool = True) -> None:
        """Run ``tasks`` (given in a topological order); call ``on_done`` once per task, in the driver."""

    def describe(self) -> dict[str, Any]:
        """What run.json records of the executor (name, versions, the cluster's resources)."""

    def stop(self) -> None:
        """Release what ``start`` took (a private Ray instance ends here)."""


def blocked_result(task: Task, results: dict[str, TaskResult]) -> TaskResult | None:
    """The result a task gets without running when a dependency did not finish ok (None: it may run)."""
    for dep in task.deps:
        r = results.get(dep)
        if r is None or r.status == Status.OK:
            continue
        if r.status == Status.SKIPPED:
            return TaskResult(task.key, task.kind, status=Status.SKIPPED.value, error=r.error)
        return TaskResult(task.key, task.kind, status=Status.FAILED.value, error=r.error,
                          info={"failed_upstream": r.kind})
    return None


def local_facts() -> DeviceFacts:
    import torch

    cuda = torch.cuda.is_available()
    return DeviceFacts(cuda, bool(cuda and torch.cuda.is_bf16_supported()),
                       torch.cuda.get_device_name(0) if cuda else None, local_memory=True)


