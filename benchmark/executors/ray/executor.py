"""The Ray executor: every stage task of a plan becomes a Ray task with the resources it needs.

The driver submits a task as soon as the tasks it depends on have finished (independent feature sets
train in parallel, the cells of a feature set run as soon as its features exist) and hands every finished
task's small result to ``on_done`` (the driver stays the only writer of the run files). Artifacts go through
the artifact store, a path every node can read; nothing large travels through the driver. A worker that
dies mid-task is replaced and the task retried (Ray's task retries: writes to the store are atomic, so a
retry starts clean). Tasks run with the driver's thread settings (CONVENTIONS 2), so results equal the
serial executor's.

Without an address the driver starts a private local instance (never a cluster left running on the
machine) and a reaper process that ends the instance's processes if the driver dies (even by SIGKILL)."""
from __future__ import annotations

import contextlib
import importlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from benchmark.executors.base import DeviceFacts, ExecutorSpec, OnDone, blocked_result, host_port
from benchmark.executors.ray.data import RayDataOptions
from benchmark.executors.ray.reaper import MARKER_ENV, sweep
from benchmark.executors.ray.resources import choose_extraction, cluster_shape, task_resources
from benchmark.executors.ray.tasks import FAKE_GPU_ENV, gpu_facts, run_task, run_task_decode, run_task_ray_data
from benchmark.interfaces import BadInput, Status
from benchmark.pipeline.plan import Task
from benchmark.pipeline.stages import TaskResult
from benchmark.runtime.threads import ThreadProfile
from benchmark.store.artifacts import ArtifactStore

# keep idle workers alive for the run: each new worker process pays torch's import and the JIT compile of
# UMAP's numba code (~15 s on 2 cores) again; Ray's default kills a worker idle for 1 s above the soft limit
WORKER_REUSE = {"idle_worker_killing_time_threshold_ms": 600_000}
TASK_RETRIES = 3  # retries of a task whose worker died (Ray's default for system failures)
INSTALL_HINT = "pip install '.[ray]'"


def require_ray() -> None:
    """Ray is an optional extra: its absence is a usage error before any compute."""
    try:
        importlib.import_module("ray")
    except ImportError:
        raise BadInput(f"--executor ray needs Ray, which is not installed here: {INSTALL_HINT} "
                       "(or pip install 'ray[default,data]')") from None


@dataclass
class PrivateInstance:
    """A local Ray instance this driver started: its temp dir, marker and reaper."""

    temp_dir: str
    marker: str
    reaper: subprocess.Popen | None = None

    @classmethod
    def start(cls, spec: ExecutorSpec, env_vars: dict[str, str]) -> "PrivateInstance":
        import ray

        # short: Ray's sockets live under it and a Unix socket path has at most 107 bytes
        temp_dir = tempfile.mkdtemp(prefix="sslray-", dir="/tmp" if os.path.isdir("/tmp") else None)
        inst = cls(temp_dir, secrets.token_hex(8))
        os.environ[MARKER_ENV] = inst.marker
        inst.reaper = spawn_reaper(os.getpid(), inst.marker, temp_dir)
        try:
            with own_signals():
                ray.init(address="local", num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, _temp_dir=temp_dir,
                         log_to_driver=False, configure_logging=False, runtime_env={"env_vars": env_vars},
                         _system_config=WORKER_REUSE)
        except BaseException:
            inst.stop()
            raise
        return inst

    def stop(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()

        sweep(self.marker, exclude={os.getpid()})
        if self.reaper is not None and self.reaper.poll() is None:
            self.reaper.terminate()
            self.reaper.wait(timeout=10)
        os.environ.pop(MARKER_ENV, None)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def spawn_reaper(driver_pid: int, marker: str, temp_dir: str) -> subprocess.Popen:
    """A process in its own session that ends the private instance when the driver is gone."""
    env = {k: v for k, v in os.environ.items() if k != MARKER_ENV}
    return subprocess.Popen([sys.executable, "-m", "benchmark.executors.ray.reaper", str(driver_pid), marker, temp_dir],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, cwd=str(Path(__file__).resolve().parents[3]))


@contextlib.contextmanager
def own_signals():
    """Keep the driver's SIGTERM and SIGINT handlers across ``ray.init``: Ray replaces SIGTERM's with one
    that exits at once (status 1), where the CLI's unwinds the run like Ctrl-C (finished cells kept, one
    line, exit 143, the private instance stopped)."""
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:  # None: a handler not installed from Python, nothing to put back
                signal.signal(sig, handler)


class _Stderr:
    """What ``_stderr_to_file`` caught; ``keep_quiet()``: leave fd 2 muted after the block (a thread of Ray's
    still logs there) and point ``sys.stderr`` at the terminal's descriptor instead."""

    def __init__(self) -> None:
        self.text = ""
        self.quiet = False

    def keep_quiet(self) -> None:
        self.quiet = True


def _is_fd2(stream: Any) -> bool:
    try:
        return int(stream.fileno()) == 2
    except (AttributeError, OSError, ValueError):
        return False


@contextlib.contextmanager
def _stderr_to_file() -> Any:
    """File descriptor 2 sent to a temporary file for the block (what C++ libraries write there too)."""
    sys.stderr.flush()
    saved = os.dup(2)
    state = _Stderr()
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield state
        finally:
            sys.stderr.flush()
            if state.quiet:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
                if _is_fd2(sys.stderr):  # a terminal's stderr: ours now on the saved descriptor
                    sys.stderr = os.fdopen(saved, "w", buffering=1)
            else:
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            state.text = tmp.read().decode("utf-8", "replace")


@contextlib.contextmanager
def signals_unwrapped():
    """A Ctrl-C or SIGTERM raised while Ray's Cython code waits comes out as a SystemError ("returned a
    result with an exception set") caused by it: raise the interruption itself, so the run unwinds."""
    try:
        yield
    except SystemError as exc:
        cause = exc.__cause__
        if isinstance(cause, BaseException) and not isinstance(cause, Exception):
            raise cause from None
        raise


class RayExecutor:
    """Stage tasks as Ray tasks (see the module docstring)."""

    name = "ray"

    def __init__(self, spec: ExecutorSpec) -> None:
        self.spec = spec
        self.profile = ThreadProfile.current()
        self.private: PrivateInstance | None = None
        self.joined = False  # connected by this executor (vs. a Ray session the caller opened)
        self.facts = DeviceFacts(False, False)
        self.shape: dict[str, Any] = {}

    # connection
    def start(self) -> DeviceFacts:
        import ray

        env_vars = self.profile.env_vars()
        if ray.is_initialized():  # a session the caller opened (library use, tests): used as it is
            pass
        elif self.spec.address in (None, "local"):
            self.private = PrivateInstance.start(self.spec, env_vars)
        else:
            self._join(env_vars)
            self.joined = True
        self.shape = cluster_shape(ray.cluster_resources(), ray.nodes())
        self.facts = self._device_facts()
        return self.facts

    def _join(self, env_vars: dict[str, str]) -> None:
        """Connect to the cluster at --ray-address: its port is probed first with --ray-timeout seconds to
        answer (nothing listening is refused at once, an address that swallows packets after the timeout),
        then ``ray.init`` joins it (Ray's own connection errors are one line too)."""
        import ray

        address, timeout = str(self.spec.address), float(self.spec.connect_timeout_s)
        hint = ("start one with `ray start --head`, or leave --ray-address out for a private local instance; "
                "--ray-timeout sets the wait")
        hp = host_port(address)
        if hp is not None:
            try:
                socket.create_connection(hp, timeout=timeout).close()
            except OSError as exc:
                raise BadInput(f"bad --ray-address {address!r}: nothing answers there ({exc.strerror or exc}, "
                               f"waited at most {timeout:g} s); {hint}") from None
        failure: list[BaseException] = []

        def connect() -> None:
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False,
                         runtime_env={"env_vars": env_vars})
            except BaseException as exc:  # noqa: BLE001  handed to the driver's thread, which decides
                failure.append(exc)

        # Ray retries an address that answers but is not a Ray cluster for about 20 s whatever its settings,
        # logging each retry from C++ to stderr: the attempt runs in a daemon thread given up on at the
        # deadline, with stderr (fd 2) sent to a file meanwhile (its text is in the one line on failure)
        with own_signals(), _stderr_to_file() as captured:
            worker = threading.Thread(target=connect, name="ray-connect", daemon=True)
            worker.start()
            worker.join(timeout)
            if worker.is_alive():
                captured.keep_quiet()
        if worker.is_alive():
            raise BadInput(f"bad --ray-address {address!r}: no Ray cluster answered within {timeout:g} s; {hint}")
        if failure:
            err = failure[0]
            if isinstance(err, (ConnectionError, TimeoutError)):
                raise BadInput(f"bad --ray-address {address!r}: no Ray cluster answers there "
                               f"({str(err).splitlines()[0][:120] if str(err) else type(err).__name__}); "
                               f"{hint}") from None
            if captured.text:
                print(captured.text[-2000:], file=sys.stderr)
            raise err

    def _device_facts(self) -> DeviceFacts:
        """CUDA is used where the cluster has a GPU (anywhere), not where the driver runs: one small task
        on a GPU says what it sees."""
        import ray

        if self.shape["gpus"] <= 0:
            return DeviceFacts(False, False)
        probe = ray.remote(gpu_facts).options(num_gpus=min(self.spec.gpus_per_task, 1), num_cpus=0)
        cuda, bf16, name = ray.get(probe.remote(os.environ.get(FAKE_GPU_ENV) == "1"))
        return DeviceFacts(cuda, bf16, name)

    def stop(self) -> None:
        import ray

        if self.private is not None:
            self.private.stop()
            self.private = None
        elif self.joined and ray.is_initialized():
            ray.shutdown()
            self.joined = False

    def describe(self) -> dict[str, Any]:
        import ray

        return {"name": self.name, "ray_version": ray.__version__,
                "address": "private local instance" if self.private else (self.spec.address or "caller's session"),
                "cluster_resources": {k: v for k, v in ray.cluster_resources().items() if not k.startswith("node:")},
                "nodes": self.shape.get("nodes", []), "thread_profile": asdict(self.profile),
                "gpus_per_task": self.spec.gpus_per_task, "extract_with": self.spec.extract_with,
                "uses_gpu": self.facts.cuda, "task_retries": TASK_RETRIES}

    # scheduling
    def run(self, tasks: Sequence[Task], store_root: Path, on_done: OnDone, progress: bool = True) -> None:
        import ray

        store = ArtifactStore(store_root)
        results: dict[str, TaskResult] = {}
        waiting = list(tasks)  # topological order: a task's dependencies come before it
        pending: dict[Any, tuple[Task, dict[str, Any]]] = {}
        try:
            while waiting or pending:
                waiting = self._submit_ready(waiting, results, pending, store, on_done)
                if not pending:
                    continue
                with signals_unwrapped():
                    done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    task, request = pending.pop(ref)
                    result = self._result(ref, task)
                    result.placement = {**result.placement, "requested": request}
                    results[task.key] = result
                    on_done(task, result)
        finally:
            # a private instance is ended whole right after (``stop``): cancelling its tasks first only races
            # Ray's own bookkeeping (a task's reply arriving as it is cancelled aborts the driver in C++:
            # "Tried to complete task that was not pending", ray-project/ray#54846, still seen with Ray 2.60
            # under load). On a joined cluster the tasks must not go on using it, so they are cancelled.
            if self.private is None:
                for ref in pending:
                    ray.cancel(ref, force=True)

    def _submit_ready(self, waiting: list[Task], results: dict[str, TaskResult], pending: dict[Any, Any],
                      store: Any, on_done: OnDone) -> list[Task]:
        """Submit every task whose dependencies have finished; a task blocked by a failed or skipped
        dependency gets its result at once. Returns the tasks still waiting."""
        running = {t.key for t, _ in pending.values()}
        still: list[Task] = []
        for task in waiting:
            if any(d not in results for d in task.deps):
                still.append(task)
                continue
            blocked = blocked_result(task, results)
            if blocked is not None:
                results[task.key] = blocked
                on_done(task, blocked)
                continue
            if task.key not in running:
                ref, request = self._submit(task, store)
                pending[ref] = (task, request)
        return still

    def _submit(self, task: Task, store: Any) -> tuple[Any, dict[str, Any]]:
        import ray

        request = task_resources(task, self.profile, self.facts.cuda, self.spec.gpus_per_task, self.shape,
                                 _feature_dim(task, store), self._n_images(task, store))
        opts = dict(num_cpus=request["num_cpus"], num_gpus=request["num_gpus"], memory=request["memory"],
                    max_retries=TASK_RETRIES, retry_exceptions=False, name=f"{task.kind}-{task.key[:10]}")
        fake = os.environ.get(FAKE_GPU_ENV) == "1"
        root = str(store.root)
        if task.kind == "extract" and choose_extraction(self.spec, self.shape, request["n_images"]) == "ray-data":
            data = self._data_options(request)
            request = {**request, "extract_with": "ray-data", **asdict(data)}
            # the orchestrator only drives the pipeline; the actor pool holds the CPUs and GPUs
            opts.update(num_cpus=0, num_gpus=0)
            return ray.remote(run_task_ray_data).options(**opts).remote(task, root, self.profile, data, fake), request
        if task.kind == "decode":
            return ray.remote(run_task_decode).options(**opts).remote(
                task, root, self.profile, self.spec.decode_shard_files, fake), request
        return ray.remote(run_task).options(**opts).remote(task, root, self.profile, fake), request

    def _data_options(self, request: dict[str, Any]) -> RayDataOptions:
        """Ray Data's batch size and actor pool: one actor per GPU of the cluster (per CPU slot without)."""
        per_gpu = request["num_gpus"]
        slots = int(self.shape["gpus"] // per_gpu) if per_gpu else \
            int(self.shape["cpus"] // max(request["num_cpus"], 1))
        return RayDataOptions(self.spec.data_batch_size, self.spec.data_pool or max(1, slots), float(per_gpu),
                              float(request["num_cpus"]))

    def _n_images(self, task: Task, store: Any) -> int:
        key = getattr(task, "images_key", None)
        meta = store.get_meta("images", key) if key else None
        return len(meta.get("names", [])) if meta else 0

    def _result(self, ref: Any, task: Task) -> TaskResult:
        """The task's result; a task whose retries ran out (its workers kept dying) is a failed task."""
        import ray

        try:
            with signals_unwrapped():
                return ray.get(ref)
        except (ray.exceptions.RayError, ray.exceptions.RayTaskError) as exc:
            text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            return TaskResult(task.key, task.kind, status=Status.FAILED.value, error=text,
                              info={"error_type": type(exc).__name__, "traceback": str(exc)})


def _feature_dim(task: Task, store: Any) -> int:
    key = getattr(task, "features_key", None)
    meta = store.get_meta("features", key) if key else None
    return int(meta.get("feature_dim") or 0) if meta else 0

