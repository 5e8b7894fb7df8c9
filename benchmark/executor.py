"""Executors: run a plan's tasks respecting their dependencies and hand each result to the driver.

Tasks get the store's location, not in-memory objects, so an executor may run them in other processes
or on other machines; the driver (``on_done``) stays the only writer of the run files. A task whose
dependency was skipped or failed is not run: it gets that status, with the reason."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Sequence

from benchmark.plan import Task
from benchmark.stages import TaskResult, execute
from benchmark.interfaces import BadInput

OnDone = Callable[[Task, TaskResult], None]


class Executor(Protocol):
    name: str

    def run(self, tasks: Sequence[Task], store_root: Path, on_done: OnDone, progress: bool = True) -> None:
        """Run ``tasks`` (given in a topological order); call ``on_done`` once per task, in the driver."""


def blocked_result(task: Task, results: dict[str, TaskResult]) -> TaskResult | None:
    """The result a task gets without running when a dependency did not finish ok (None: it may run)."""
    for dep in task.deps:
        r = results.get(dep)
        if r is None or r.status == "ok":
            continue
        if r.status == "skipped":
            return TaskResult(task.key, task.kind, status="skipped", error=r.error)
        return TaskResult(task.key, task.kind, status="failed", error=r.error,
                          info={"failed_upstream": r.kind})
    return None


class SerialExecutor:
    """Every task in this process, one after the other, in plan order."""

    name = "serial"

    def run(self, tasks: Sequence[Task], store_root: Path, on_done: OnDone, progress: bool = True) -> None:
        results: dict[str, TaskResult] = {}
        for task in tasks:
            result = blocked_result(task, results) or execute(task, store_root, progress)
            results[task.key] = result
            on_done(task, result)


EXECUTORS: dict[str, Callable[[], Executor]] = {"serial": SerialExecutor}


def make_executor(name: str) -> Executor:
    if name not in EXECUTORS:
        raise BadInput(f"bad --executor {name!r}: allowed: {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()
