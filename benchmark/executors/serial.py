"""The serial executor: every task in this process, one after the other, in plan order."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from benchmark.executors.base import DeviceFacts, ExecutorSpec, OnDone, blocked_result, local_facts
from benchmark.pipeline.kinds import execute
from benchmark.pipeline.plan import Task
from benchmark.pipeline.stages import TaskResult


class SerialExecutor:
    """Every task in this process, one after the other, in plan order."""

    name = "serial"

    def __init__(self, spec: ExecutorSpec | None = None) -> None:
        self.spec = spec or ExecutorSpec()

    def start(self) -> DeviceFacts:
        return local_facts()

    def run(self, tasks: Sequence[Task], store_root: Path, on_done: OnDone, progress: bool = True) -> None:
        results: dict[str, TaskResult] = {}
        for task in tasks:
            result = blocked_result(task, results) or execute(task, store_root, progress)
            results[task.key] = result
            on_done(task, result)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def stop(self) -> None:
        pass
