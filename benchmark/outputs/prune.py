"""``cache --prune``: free the artifacts no run folder uses, safe by construction.

The run folders under ``--runs`` name what is kept. A mistyped ``--runs``, one that is a file, one that holds
no run, a run folder whose run.json or cells.csv cannot be read (it might use anything), and a bad
``--older-than-days`` are refused (BadInput) before anything is deleted; what would be deleted is printed
per kind before it is."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from benchmark.driver.results import read_cells
from benchmark.interfaces import BadInput, Constraint
from benchmark.store.artifacts import ArtifactStore, RunFolder

KEY_COLUMNS = ("feature_key", "probe_key", "cell_key")
OLDER_THAN = Constraint("real", 0)


def _folder_keys(folder: RunFolder, store: ArtifactStore) -> set[str]:
    """The artifact keys one run folder uses; BadInput when its files cannot be read."""
    info = folder.read_info()
    if not isinstance(info, dict) or not info.get("images_key"):
        raise BadInput(f"bad run folder {str(folder.path)!r}: its run.json cannot be read, so what it uses is "
                       "unknown; repair or remove the folder, or leave it out of --runs")
    try:
        rows = read_cells(folder.cells)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"bad run folder {str(folder.path)!r}: its cells.csv cannot be read ({type(exc).__name__}), "
                       "so what it uses is unknown; repair or remove the folder, or leave it out of --runs") from None
    if folder.cells.is_file() and rows and not all(k in rows[0] for k in KEY_COLUMNS):
        raise BadInput(f"bad run folder {str(folder.path)!r}: its cells.csv lacks the key columns "
                       f"({', '.join(KEY_COLUMNS)}), so what it uses is unknown")
    keep = {str(info.get(k, "")) for k in ("images_key", "labels_key", "train_images_key")}
    for r in rows:
        keep.update(str(r.get(k) or "") for k in KEY_COLUMNS)
        fmeta = store.get_meta("features", str(r.get("feature_key") or "")) or {}
        keep.add(str(fmeta.get("train_key") or ""))
        probe = store.get_record("probes", str(r.get("probe_key") or "")) or {}
        keep.update(str(k) for k in probe.get("knn_reference_keys") or [])  # --knn-reference's artifacts
    return keep - {""}


def used_keys(runs: Path, store: ArtifactStore) -> tuple[set[str], int]:
    """(the keys every run folder under ``runs`` uses, how many folders). BadInput before any deletion when
    ``runs`` is not a folder of runs or one of them cannot be read."""
    if not runs.exists():
        raise BadInput(f"bad --runs {str(runs)!r}: no such folder; name the folder that holds the run folders "
                       "whose artifacts are kept")
    if not runs.is_dir():
        raise BadInput(f"bad --runs {str(runs)!r}: it is a file; need the folder that holds the run folders")
    folders = RunFolder.find(runs)
    if not folders:
        raise BadInput(f"bad --runs {str(runs)!r}: it holds no run folder (no run.json under it), so every "
                       "artifact would count as unused; nothing deleted")
    keep: set[str] = set()
    for folder in folders:
        keep |= _folder_keys(folder, store)
    return keep, len(folders)


def prune_cache(store: ArtifactStore, runs: Path, older_than_days: float, dry_run: bool,
                say: Callable[[str], None] = print) -> tuple[int, int]:
    """Print what would be freed per kind, then free it (unless ``dry_run``). Returns (files, bytes)."""
    OLDER_THAN.check("--older-than-days", older_than_days)
    keep, n_runs = used_keys(runs, store)
    plan = store.prunable(keep, older_than_days * 86400)
    sizes = {kind: sum(f.stat().st_size for f in group) for kind, group in plan.items()}
    files, size = sum(len(v) for v in plan.values()), sum(sizes.values())
    say(f"{n_runs} run folders under {runs} keep {len(keep)} artifacts; "
        f"{'would delete' if dry_run else 'deleting'} {files} files, {size / 1e6:.1f} MB:")
    for kind, group in plan.items():
        say(f"  {kind}: {len(group)} files, {sizes[kind] / 1e6:.1f} MB")
    if not dry_run:
        for group in plan.values():
            for f in group:
                f.unlink(missing_ok=True)
    return files, size
