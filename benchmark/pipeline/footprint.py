"""The memory model of a plan: the bytes each stage task may hold at its peak, as a function of the data
set's size N, the feature dimension D (from the backbone, built on torch's meta device), the cluster
space's dimension d and the image size (``benchmark.pipeline.kinds`` holds each stage's formula), and the
check before a run that refuses a grid whose largest task cannot fit in the memory available.

The available memory is the smaller of the kernel's ``MemAvailable`` and what the process's cgroup still
allows (v2 ``memory.max`` - ``memory.current``, or v1 ``memory.limit_in_bytes`` - ``memory.usage_in_bytes``);
the serial executor runs one task at a time, so the largest task is what must fit. (Ray tasks ask for their
model's bytes as the ``memory`` resource, so Ray places them on nodes that have it: docs/ray.md.)"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark.interfaces import BadInput
from benchmark.pipeline.kinds import STAGE_KINDS, Sizes
from benchmark.pipeline.plan import CellTask, ExtractTask, Plan, ReduceTask, Task
from benchmark.store.artifacts import ArtifactStore
from registry.backbones import feature_dim
from registry.pretexts import build_pretext

CGROUP = Path("/sys/fs/cgroup")
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True)
class Estimate:
    """One task's modelled peak: bytes, and the sizes the model was given."""

    task: Task
    bytes: int
    sizes: Sizes


def _extract_of(plan: Plan, task: Task) -> ExtractTask | None:
    key = task.key if isinstance(task, ExtractTask) else getattr(task, "features_key", None)
    found = plan.by_key.get(key) if key else None
    return found if isinstance(found, ExtractTask) else None


def sizes_of(plan: Plan, task: Task) -> Sizes:
    """What the memory model of ``task`` is given: N (the images listed), the feature dimension of its
    feature set's backbone (0 when unknown or before features), the cluster space's dimension and the
    number of classes."""
    ex = _extract_of(plan, task)
    dim = 0
    if ex is not None:
        base = feature_dim(ex.backbone, ex.image_size, ex.feature_layer) or 0
        dim = build_pretext(ex.pretext, ex.options).feature_dim(base) if base else 0  # split_brain: 2D
    space = dim
    red = plan.by_key.get(task.reduce_key) if isinstance(task, CellTask) else task
    if isinstance(red, ReduceTask) and red.method in ("pca", "umap") and dim:
        space = min(dim, red.dims)
    return Sizes(plan.data.n_listed, dim, space, plan.data.n_classes)


def estimates(plan: Plan) -> list[Estimate]:
    """The modelled peak of every task of the plan."""
    out = []
    for task in plan.tasks:
        sizes = sizes_of(plan, task)
        out.append(Estimate(task, int(STAGE_KINDS[task.kind].memory(task, sizes)), sizes))
    return out


def per_stage(plan: Plan, only: set[str] | None = None) -> dict[str, Estimate]:
    """The largest estimate of each stage kind (among the task keys ``only`` when given)."""
    best: dict[str, Estimate] = {}
    for est in estimates(plan):
        if only is not None and est.task.key not in only:
            continue
        if est.task.kind not in best or est.bytes > best[est.task.kind].bytes:
            best[est.task.kind] = est
    return best


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _own_cgroup() -> Path | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and (parts[0] == "0" or "memory" in parts[1].split(",")):
            base = CGROUP if parts[0] == "0" else CGROUP / "memory"
            return base / parts[2].lstrip("/")
    return None


def available_memory() -> tuple[int | None, str]:
    """(bytes a task may still use on this machine, where the figure comes from); (None, "") without /proc."""
    info: dict[str, int] = {}
    try:
        for line in MEMINFO.read_text().splitlines():
            name, _, rest = line.partition(":")
            info[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None, ""
    avail, source = info.get("MemAvailable"), "MemAvailable"
    folder = _own_cgroup()
    if folder is None:
        return avail, source
    limit = _read_int(folder / "memory.max") or _read_int(folder / "memory.limit_in_bytes")
    used = _read_int(folder / "memory.current") or _read_int(folder / "memory.usage_in_bytes") or 0
    if limit is not None and limit < (1 << 60) and (avail is None or limit - used < avail):
        avail, source = max(limit - used, 0), f"the cgroup's memory limit ({limit / 1e9:.1f} GB)"
    return avail, source


def to_compute(plan: Plan, store: ArtifactStore) -> set[str]:
    """The keys of the plan's tasks whose artifacts are not in the store."""
    return {t.key for t in plan.tasks if not store.has(STAGE_KINDS[t.kind].artifact, t.key)}


def task_name(task: Task) -> str:
    what = [str(getattr(task, a)) for a in ("backbone", "pretext", "clusterer", "method") if hasattr(task, a)]
    return "/".join(what)


def check_memory(plan: Plan, to_compute: set[str], available: int | None = None, source: str = "") -> None:
    """Refuse (BadInput, exit 2, one line) a plan whose largest task still to compute cannot fit."""
    if available is None:
        available, source = available_memory()
    if available is None:
        return
    stages = per_stage(plan, to_compute)
    if not stages:
        return
    kind, est = max(stages.items(), key=lambda kv: kv[1].bytes)
    if est.bytes > available:
        s = est.sizes
        dims = f" x {s.feature_dim:,} dims" if s.feature_dim else ""
        raise BadInput(f"bad grid: the {kind} stage of {task_name(est.task) or kind} needs about "
                       f"{est.bytes / 1e9:.1f} GB ({s.n_images:,} images{dims}) and {available / 1e9:.1f} GB "
                       f"are available ({source}); choose a smaller --image-size, --limit or a --reduce to "
                       "fewer dimensions (pca:50), or a machine with more memory")


def table(plan: Plan, to_compute: set[str]) -> dict[str, int]:
    """Stage kind -> the modelled peak of its largest task to compute (bytes), for ``plan``'s printout."""
    return {k: e.bytes for k, e in per_stage(plan, to_compute).items()}

