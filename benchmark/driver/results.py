"""Result files: cells.csv (one row per cell), summary.csv, run.json, skipped.csv, assignments.csv (the
leaderboard over seeds is ``benchmark.driver.summary``)."""
from __future__ import annotations

import csv
import io
import math
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.driver.summary import row_init, summarize, with_init
from benchmark.interfaces import escape_name
from benchmark.pipeline.plan import cell_id as make_cell_id
from benchmark.scoring import columns
from benchmark.store.files import atomic_write_text


def cell_id(row: Any) -> str:
    """The id of a cells.csv row (backbone/init/pretext/clusterer/seed)."""
    return make_cell_id(row["backbone"], row["pretext"], row["clusterer"], int(row["seed"]), row_init(row))


def assignment_of(assign: dict[str, np.ndarray], row: Any) -> np.ndarray | None:
    """A row's clusters from read_assignments (runs before the init axis named columns b/p/c/seed, before the
    seed axis b/p/c)."""
    cid = cell_id(row)
    if cid in assign:
        return assign[cid]
    old = make_cell_id(row["backbone"], row["pretext"], row["clusterer"], int(row["seed"]), "").replace("//", "/")
    return assign.get(old, assign.get(old.rsplit("/", 1)[0]))


def write_cells(path: Path, rows: list[dict[str, Any]]) -> None:
    """All rows so far, atomically (a kill never leaves a half-written cells.csv)."""
    df = pd.DataFrame(rows, columns=columns.names())
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    atomic_write_text(path, buf.getvalue())


def read_cells(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return typed_rows(with_init(pd.read_csv(path, keep_default_na=False, na_values=[""])))




def typed_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """cells.csv rows as dicts of numbers and strings, None for empty."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in df.to_dict("records")]


def rows_of(header: list[str], rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Rows checked as strings (``benchmark.driver.integrity``) typed as ``read_cells`` types them."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows([[r.get(h, "") for h in header] for r in rows])
    buf.seek(0)
    return typed_rows(pd.read_csv(buf, keep_default_na=False, na_values=[""]))


def write_summary(path: Path, rows: list[dict[str, Any]]) -> None:
    """summary.csv: the cells aggregated over seeds (benchmark.driver.summary), atomically."""
    df = summarize(pd.DataFrame(rows, columns=columns.names()))
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    atomic_write_text(path, buf.getvalue())


def write_skipped(path: Path, skipped: list[tuple[str, str]]) -> None:
    df = pd.DataFrame([(escape_name(p), escape_name(r)) for p, r in skipped], columns=["path", "reason"])
    atomic_write_text(path, df.to_csv(index=False))


def write_assignments(path: Path, names: list[str], labels: np.ndarray, class_names: list[str],
                      cells: dict[str, np.ndarray]) -> None:
    """One row per clustered image: path, label (empty if unlabeled), then one cluster column per cell. A
    path that is not valid UTF-8 is written escaped (``benchmark.interfaces.escape_name``)."""
    lab = [escape_name(class_names[i]) if i >= 0 else "" for i in labels]
    df = pd.DataFrame({"path": [escape_name(n) for n in names], "label": lab, **cells})
    atomic_write_text(path, df.to_csv(index=False))


def read_assignments(path: Path) -> dict[str, np.ndarray]:
    """{cell id: clusters} from an assignments.csv ({} when missing)."""
    if not path.is_file():
        return {}
    df = pd.read_csv(path, keep_default_na=False)
    return {c: df[c].to_numpy(np.int64) for c in df.columns if c not in ("path", "label")}


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str) -> dict[str, Any]:
    """Versions and device facts recorded in run.json."""
    import sklearn
    import timm
    import torch

    try:
        import faiss

        faiss_version = getattr(faiss, "__version__", "unknown")
    except ImportError:
        faiss_version = None
    return {
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "timm": timm.__version__, "faiss": faiss_version, "scikit_learn": sklearn.__version__,
        "device": device, "git_commit": git_commit(), "cpu_threads": torch.get_num_threads(),
    }
