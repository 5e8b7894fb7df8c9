"""The ``SSLBENCH_*`` environment variables: each declared once with what it accepts, checked by every
command before it does anything (``check_environment``: one line naming the variable, exit 2). A variable of
that prefix that is not declared here is refused too (a typo would otherwise be ignored without a word).

The modules that read them (``benchmark.train.checkpoint``, ``benchmark.store.artifacts``, ...) keep
reading them where they are used; this table is their boundary."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Callable

from benchmark.interfaces import BadInput, path_problem

PREFIX = "SSLBENCH_"


@dataclass(frozen=True)
class EnvVar:
    name: str
    allowed: str  # in words, for the message
    ok: Callable[[str], bool]
    help: str


def _seconds(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and 0 <= value <= 86400


def _path(text: str) -> bool:
    return not path_problem(text)


COMPILE_BACKENDS = ("inductor", "aot_eager", "eager", "cudagraphs")
VARIABLES: dict[str, EnvVar] = {v.name: v for v in (
    EnvVar("SSLBENCH_ALLOW_DOWNLOAD", "0 or 1", lambda t: t in ("0", "1"),
           "1: missing ImageNet weights may be fetched (as --allow-download; not part of a run's configuration)"),
    EnvVar("SSLBENCH_CACHE", "a path", _path, "the artifact store when --cache-dir is not given"),
    EnvVar("SSLBENCH_CHECKPOINT_EVERY_S", "a number of seconds in 0..86400", _seconds,
           "seconds between training checkpoints (default 60; 0: after every step)"),
    EnvVar("SSLBENCH_COMPILE_BACKEND", f"one of {', '.join(COMPILE_BACKENDS)}", lambda t: t in COMPILE_BACKENDS,
           "torch.compile's backend with --compile (default inductor)"),
    EnvVar("SSLBENCH_DEBUG", "0 or 1", lambda t: t in ("0", "1"), "1: print a bug's traceback on the terminal"),
    EnvVar("SSLBENCH_FASHION_MNIST", "a path", _path, "another folder holding the Fashion-MNIST files"),
    EnvVar("SSLBENCH_RAY_FAKE_GPU", "0 or 1", lambda t: t in ("0", "1"),
           "tests: a CPU-only Ray instance's declared GPUs are assigned as on a GPU cluster"),
    EnvVar("SSLBENCH_RAY_INSTANCE", "a hexadecimal marker", lambda t: bool(re.fullmatch(r"[0-9a-f]{8,64}", t)),
           "set by the harness in the processes of its private Ray instance (the reaper finds them by it)"),
    EnvVar("SSLBENCH_REAPER_LOG", "a path", _path, "tests: where the Ray reaper logs what it kills"),
    EnvVar("SSLBENCH_TEST_MARKER", "a hexadecimal marker", lambda t: bool(re.fullmatch(r"[0-9a-f]{8,64}", t)),
           "tests: inherited by every process a test's run starts, so that the test finds them (tests/procs.py)"),
)}


def check_environment(environ: dict[str, str] | None = None) -> None:
    """BadInput naming the first ``SSLBENCH_*`` variable that is unknown or holds what it does not accept."""
    env = os.environ if environ is None else environ
    for name in sorted(k for k in env if k.startswith(PREFIX)):
        var = VARIABLES.get(name)
        if var is None:
            raise BadInput(f"bad environment variable {name}: not one of the harness's ({', '.join(VARIABLES)})")
        if not var.ok(env[name]):
            raise BadInput(f"bad {name} {env[name][:80]!r}: allowed: {var.allowed}")
