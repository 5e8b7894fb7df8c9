"""``make_executor``: the executor a spec names (Ray's absence is a usage error before any compute)."""
from __future__ import annotations

from benchmark.executors.base import Executor, ExecutorSpec
from benchmark.executors.ray.executor import RayExecutor, require_ray
from benchmark.executors.serial import SerialExecutor


def make_executor(spec: ExecutorSpec | str) -> Executor:
    """The executor of ``spec`` (a name is a spec with defaults); Ray's absence is a usage error here,
    before any compute."""
    if isinstance(spec, str):
        spec = ExecutorSpec(name=spec)
    if spec.name == "ray":
        require_ray()
        return RayExecutor(spec)
    return SerialExecutor(spec)
