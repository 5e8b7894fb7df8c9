"""A run folder's files are verified when read back, not trusted (issue 23).

Every write of a run folder's files ends with run.json recording the folder's schema version, the sha256
of each of its CSV files and a digest of each cells.csv row (with its header). A reader checks them:

- schema 2 (this version): a file whose sha256 differs is damaged; in cells.csv the rows whose digest is
  not recorded are named (``row 3 (resnet18/rotation/kmeans/0)``), so a refusal says which row changed, also
  when the store was pruned or the folder copied elsewhere: the folder's own checksums suffice.
- schema 1 (folders written before checksums): no checksums to check; headers, statuses and score ranges
  are still checked, and ``--resume`` compares each row with the store's checksummed cell record.
- a schema newer than this harness knows is refused.

Every version checks the header (``columns.header_problem``: only columns of cells.csv, the key columns
present) and each row's values (``columns.row_problem``: statuses of ours, scores in their ranges).
``--resume`` recomputes a damaged row's cell (from the store when it holds the cell); ``report``,
``recommend``, ``diff`` and ``export`` refuse the folder in one line (``require_intact``)."""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.interfaces import BadInput
from benchmark.scoring import columns
from benchmark.store.artifacts import RUN_INFO, RunFolder
from benchmark.store.files import sha256_file

SCHEMA = 2  # 1: before checksums (no "integrity" in run.json); 2: sha256 per file and a digest per cells.csv row
SEALED = ("cells.csv", "summary.csv", "assignments.csv", "skipped.csv")


def read_text(path: Path, what: str | None = None) -> str:
    """A run-folder file as text; BadInput naming it when it is not UTF-8 or cannot be read."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"bad {what or 'file'} {str(path)!r}: not UTF-8 text (byte {exc.start}); it was damaged "
                       "or not written by this harness") from None
    except OSError as exc:
        raise BadInput(f"bad {what or 'file'} {str(path)!r}: cannot be read ({exc.strerror or exc})") from None


def parse_csv(text: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of CSV text, every field a string (a row with another field count is kept as it is)."""
    table = list(csv.reader(io.StringIO(text)))
    return (table[0], table[1:]) if table else ([], [])


def row_digest(header: list[str], fields: list[str]) -> str:
    return hashlib.sha256(json.dumps([header, fields], separators=(",", ":")).encode()).hexdigest()[:32]


def seal(folder: RunFolder) -> dict[str, Any]:
    """run.json's "integrity": the schema version, each present file's sha256, each cells.csv row's digest."""
    files = {name: sha256_file(folder.path / name) for name in SEALED if (folder.path / name).is_file()}
    rows: list[str] = []
    if folder.cells.is_file():
        header, body = parse_csv(folder.cells.read_bytes().decode("utf-8"))
        rows = sorted(row_digest(header, r) for r in body)
    return {"schema": SCHEMA, "files": files, "rows": rows}


def write_info(folder: RunFolder, info: dict[str, Any]) -> None:
    """run.json with the seal of the files as they are now (call it after every write of the others). The
    schema is also recorded outside the seal (``run_folder_schema``), so that deleting the seal does not make
    a folder read as one written before checksums."""
    info["integrity"] = seal(folder)
    info["run_folder_schema"] = SCHEMA
    folder.write_info(info)


@dataclass
class FolderCheck:
    """What reading a run folder back found. ``rows``: cells.csv's rows as dicts (strings, "" empty);
    ``damaged``: {row index: why} of the rows that cannot count as finished cells; ``problems``: files that
    do not match (other than cells.csv rows), each as one phrase."""

    schema: int
    header: list[str]
    rows: list[dict[str, str]]
    damaged: dict[int, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def row_name(self, i: int) -> str:
        r = self.rows[i]
        ident = "/".join(str(r.get(c, "?")) for c in ("backbone", "pretext", "clusterer", "seed") if c in r)
        return f"row {i + 1} ({ident})"

    def first_problem(self) -> str:
        if self.problems:
            return self.problems[0]
        i = min(self.damaged)
        return f"cells.csv {self.row_name(i)} {self.damaged[i]}"

    @property
    def intact(self) -> bool:
        return not self.problems and not self.damaged


def check_folder(folder: RunFolder) -> FolderCheck:
    """Read and check a run folder's files (BadInput when cells.csv or run.json cannot be read as a run's at
    all: not UTF-8, an unknown header, a schema this harness does not know). A folder without run.json reads
    as schema 1 (``--resume`` still names what it can); the readers refuse it (``require_intact``)."""
    where = str(folder.path)
    info: Any = {}
    if folder.info.is_file():
        text = read_text(folder.info, "run folder file")
        try:
            info = json.loads(text)
        except json.JSONDecodeError:
            info = None
    if not isinstance(info, dict):
        raise BadInput(f"bad run folder {where!r}: {RUN_INFO} is not a JSON object (damaged or not written by "
                       "this harness)")
    ig = info.get("integrity")
    if "integrity" in info and not isinstance(ig, dict):
        raise BadInput(f"bad run folder {where!r}: {RUN_INFO}'s integrity is {ig!r}, not the checksums this harness "
                       "writes (damaged or edited)")
    schema = ig.get("schema") if isinstance(ig, dict) else 1
    marked = info.get("run_folder_schema")
    if marked is not None and marked != schema:
        raise BadInput(f"bad run folder {where!r}: {RUN_INFO} says schema {marked!r} but its checksums are "
                       f"{'missing' if ig is None else f'of schema {schema!r}'} (damaged or edited)")
    if not isinstance(schema, int) or isinstance(schema, bool) or not 1 <= schema <= SCHEMA:
        raise BadInput(f"bad run folder {where!r}: schema version {schema!r} in {RUN_INFO}; this harness reads "
                       f"versions 1 to {SCHEMA} (a newer harness wrote it?)")
    header, body = parse_csv(read_text(folder.cells, "run folder file"))
    why = columns.header_problem(header)
    if why:
        raise BadInput(f"bad run folder {where!r}: cells.csv's header is not one this harness writes ({why})")
    rows = [dict(zip(header, r, strict=False)) for r in body]
    check = FolderCheck(schema, header, rows)
    listed = list(ig.get("rows") or []) if isinstance(ig, dict) else []
    recorded = set(listed)
    for i, (fields, row) in enumerate(zip(body, rows, strict=True)):
        if len(fields) != len(header):
            check.damaged[i] = f"has {len(fields)} fields, the header {len(header)}"
        elif schema >= 2 and row_digest(header, fields) not in recorded:
            check.damaged[i] = f"does not match the digest in {RUN_INFO} (edited, damaged or not yet sealed)"
        elif problem := columns.row_problem({k: (v or None) for k, v in row.items()}):
            check.damaged[i] = problem
    if schema >= 2 and isinstance(ig, dict):
        sums = ig.get("files") or {}
        if not check.damaged and "cells.csv" in sums and sha256_file(folder.cells) != sums["cells.csv"]:
            check.problems.append(f"cells.csv does not match its checksum in {RUN_INFO}: it has {len(rows)} rows, "
                                  f"{len(listed)} were recorded (a row deleted, repeated or reordered)")
        for name in SEALED:
            path = folder.path / name
            if name != "cells.csv" and name in sums and not path.is_file():
                check.problems.append(f"{name} is missing ({RUN_INFO} has its checksum)")
            if name == "cells.csv" or not path.is_file():
                continue
            if name not in sums:
                check.problems.append(f"{name} has no checksum in {RUN_INFO}")
            elif sha256_file(path) != sums[name]:
                check.problems.append(f"{name} does not match its checksum in {RUN_INFO} (edited or damaged)")
    return check


def require_intact(folder: RunFolder) -> FolderCheck:
    """The check of a folder that ``report``, ``recommend``, ``diff`` and ``export`` read: BadInput naming the
    first damaged file or row."""
    if not folder.info.is_file():
        raise BadInput(f"bad run folder {str(folder.path)!r}: no {RUN_INFO} in it (a run folder holds cells.csv "
                       f"and {RUN_INFO}: the run's configuration)")
    check = check_folder(folder)
    if not check.intact:
        raise BadInput(f"bad run folder {str(folder.path)!r}: {check.first_problem()}; rerun it with --resume "
                       f"--out {folder.path} to recompute what is damaged")
    return check
