"""The artifact store and the run folder: the only module that knows the on-disk layout.

Cache (``ArtifactStore``, one root shared by runs, and by every worker of a distributed run)::

    images/<key>.npy + .json        uint8 (N,3,S,S), memory-mapped on read; names, skipped, grayscale
    files/<S>-v<version>/<h2>/<sha>.px | .skip.json   one decoded file (raw (3,S,S) uint8 + its sha256) or its
                                    skip reason, keyed by the file's content (sha256 of its bytes)
    files/memo/<root hash>.json     path -> size, mtime, ctime, inode, sha (unchanged files are not re-hashed)
    labels/<key>.json               names, class names, labels (-1 = unlabeled)
    weights/<key>.pt + .json        trained backbone state_dict (read with weights_only=True), training meta
    features/<key>.npy + .json      float32 (N,D), extraction meta
    probes/<key>.json               linear-probe record
    reductions/<key>.npy + .json    the space a clusterer is fed, and what the reduction used
    cells/<key>.json + .labels.npy  cluster scores and the cluster of every image

Every write is atomic (temporary name, then rename). Every JSON holds the sha256 of its content and of the
data files beside it (``benchmark.store.files.write_record``), verified on read: a missing, damaged or unreadable
artifact reads as None and is recomputed (one warning when it was damaged). Keys are versioned by the
stage that builds them (``benchmark.pipeline.plan``)."""
from __future__ import annotations

import io
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from benchmark.interfaces import BadInput
from benchmark.store.files import (
    atomic_path,
    atomic_write_bytes,
    load_checked_bytes,
    load_npy,
    read_json,
    read_or_error,
    read_record,
    save_checked_bytes,
    save_npy,
    write_json,
    write_record,
)

DEFAULT_CACHE = Path(os.environ.get("SSLBENCH_CACHE", Path(__file__).resolve().parents[2] / ".cache"))
KINDS = ("images", "labels", "weights", "checkpoints", "features", "probes", "reductions", "cells",
         "files")
RUN_INFO = "run.json"


class ArtifactStore:
    """Typed reads and atomic writes of every cached artifact under one root."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    def _p(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / f"{key}{suffix}"

    def has(self, kind: str, key: str) -> bool:
        """Whether a finished artifact exists (its JSON metadata or record is written last)."""
        return self._p(kind, key, ".json").is_file()

    # images: the decoded store of a data set at one size
    @contextmanager
    def image_writer(self, key: str, shape: tuple[int, ...]) -> Iterator[np.ndarray]:
        """A writable memory-mapped uint8 array of ``shape``; renamed into place when the block succeeds."""
        with atomic_path(self._p("images", key, ".npy")) as tmp:
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            yield arr
            arr.flush()
            del arr

    def put_images_meta(self, key: str, meta: dict[str, Any]) -> None:
        write_record(self._p("images", key, ".json"), meta, {"npy": self._p("images", key, ".npy")})

    def get_images(self, key: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """(memory-mapped uint8 (N,3,S,S), meta) or None."""
        meta = read_record(self._p("images", key, ".json"), {"npy": self._p("images", key, ".npy")})
        arr = load_npy(self._p("images", key, ".npy"), mmap=True) if meta is not None else None
        if meta is None or arr is None or arr.shape[0] != len(meta["names"]):
            return None
        return arr, meta

    # one decoded file, by content
    def _file(self, sha: str, size: int, version: int | str, suffix: str) -> Path:
        return self.root / "files" / f"{size}-v{version}" / sha[:2] / f"{sha}{suffix}"

    def get_file(self, sha: str, size: int, version: int | str) -> np.ndarray | str | None:
        """The decoded (3,S,S) uint8 of a file's content, its skip reason (str), or None when not cached."""
        px = self._file(sha, size, version, ".px")
        data = load_checked_bytes(px) if px.is_file() else None
        if data is not None and len(data) == 3 * size * size:
            return np.frombuffer(data, np.uint8).reshape(3, size, size)
        skip = read_record(self._file(sha, size, version, ".skip.json"))
        return str(skip["reason"]) if skip else None

    def put_file(self, sha: str, size: int, version: int | str, result: np.ndarray | str) -> None:
        if isinstance(result, str):
            write_record(self._file(sha, size, version, ".skip.json"), {"reason": result})
        else:
            save_checked_bytes(self._file(sha, size, version, ".px"), np.ascontiguousarray(result, np.uint8).tobytes())

    def get_memo(self, root_id: str) -> dict[str, list[Any]]:
        got = read_record(self.root / "files" / "memo" / f"{root_id}.json")
        return dict(got["files"]) if got else {}

    def put_memo(self, root_id: str, memo: dict[str, list[Any]]) -> None:
        write_record(self.root / "files" / "memo" / f"{root_id}.json", {"files": memo})

    # labels
    def put_labels(self, key: str, record: dict[str, Any]) -> None:
        write_record(self._p("labels", key, ".json"), record)

    def get_labels(self, key: str) -> dict[str, Any] | None:
        return read_record(self._p("labels", key, ".json"))

    # trained weights
    def put_weights(self, key: str, state: dict[str, Any], meta: dict[str, Any]) -> None:
        import torch

        buf = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
        atomic_write_bytes(self._p("weights", key, ".pt"), buf.getvalue())
        write_record(self._p("weights", key, ".json"), meta, {"pt": self._p("weights", key, ".pt")})

    def checkpoint_file(self, key: str) -> Path:
        """Where the training with cache key ``key`` keeps its checkpoint until its weights are stored."""
        return self._p("checkpoints", key, ".pt")

    def get_verified_weights_meta(self, key: str) -> dict[str, Any] | None:
        """The training meta of trained weights whose ``.pt`` matches its checksum (None: missing or damaged)."""
        return read_record(self._p("weights", key, ".json"), {"pt": self._p("weights", key, ".pt")})

    def weights_file(self, key: str) -> Path | None:
        """The verified ``.pt`` of trained weights (None: missing or damaged)."""
        return self._p("weights", key, ".pt") if self.get_verified_weights_meta(key) is not None else None

    def get_weights(self, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(state_dict, meta) or None; the file is verified against its checksum, then read with
        ``weights_only=True`` (no code runs; ``torch.load`` itself does not check the zip's CRCs)."""
        import torch

        path = self._p("weights", key, ".pt")
        meta = read_record(self._p("weights", key, ".json"), {"pt": path})
        if meta is None:
            return None
        got = read_or_error(lambda: torch.load(path, map_location="cpu", weights_only=True))
        return (got[0], meta) if got[1] is None else None  # any unreadable file counts as missing

    def get_weights_meta(self, key: str) -> dict[str, Any] | None:
        return read_record(self._p("weights", key, ".json"))

    # arrays with JSON metadata: features and reductions
    def put_array(self, kind: str, key: str, array: np.ndarray, meta: dict[str, Any]) -> None:
        save_npy(self._p(kind, key, ".npy"), array)
        write_record(self._p(kind, key, ".json"), meta, {"npy": self._p(kind, key, ".npy")})

    @contextmanager
    def array_writer(self, kind: str, key: str, shape: tuple[int, ...], dtype: Any = np.float32
                     ) -> Iterator[np.ndarray]:
        """A writable memory-mapped array of ``shape`` for the array artifact ``kind``/``key``, renamed into
        place when the block succeeds (its record follows: ``put_array_meta``): an (N, D) result is written
        by blocks, never held whole."""
        with atomic_path(self._p(kind, key, ".npy")) as tmp:
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            yield arr
            arr.flush()
            del arr

    def put_array_meta(self, kind: str, key: str, meta: dict[str, Any]) -> None:
        """The record of an array written by ``array_writer``."""
        write_record(self._p(kind, key, ".json"), meta, {"npy": self._p(kind, key, ".npy")})

    def get_array(self, kind: str, key: str, mmap: bool = False) -> tuple[np.ndarray, dict[str, Any]] | None:
        meta = read_record(self._p(kind, key, ".json"), {"npy": self._p(kind, key, ".npy")})
        arr = load_npy(self._p(kind, key, ".npy"), mmap=mmap) if meta is not None else None
        return (arr, meta) if arr is not None and meta is not None else None

    def get_meta(self, kind: str, key: str) -> dict[str, Any] | None:
        """An artifact's metadata (its own checksum verified; the data file is verified when read)."""
        return read_record(self._p(kind, key, ".json"))

    # probes and cells: JSON records (cells also hold their labels)
    def put_record(self, kind: str, key: str, record: dict[str, Any]) -> None:
        write_record(self._p(kind, key, ".json"), record)

    def get_record(self, kind: str, key: str) -> dict[str, Any] | None:
        return read_record(self._p(kind, key, ".json"))

    def put_cell(self, key: str, record: dict[str, Any], labels: np.ndarray) -> None:
        path = self._p("cells", key, ".labels.npy")
        save_npy(path, np.asarray(labels, np.int64))
        write_record(self._p("cells", key, ".json"), record, {"labels": path})

    def get_cell(self, key: str) -> tuple[dict[str, Any], np.ndarray] | None:
        """(scores record, cluster of every image) when both are intact."""
        path = self._p("cells", key, ".labels.npy")
        rec = read_record(self._p("cells", key, ".json"), {"labels": path})
        labels = load_npy(path) if rec is not None else None
        return (rec, labels) if rec is not None and labels is not None else None

    def get_cell_labels(self, key: str) -> np.ndarray | None:
        got = self.get_cell(key)
        return got[1] if got else None

    # housekeeping
    def usage(self) -> dict[str, tuple[int, int]]:
        """{kind: (files, bytes)} of the store."""
        out: dict[str, tuple[int, int]] = {}
        for kind in KINDS:
            files = [p for p in (self.root / kind).rglob("*") if p.is_file()] if (self.root / kind).is_dir() else []
            out[kind] = (len(files), sum(p.stat().st_size for p in files))
        return out

    def artifact_files(self, kind: str) -> dict[str, list[Path]]:
        """{key: its files} of one kind (cached decoded files are grouped under their content hash)."""
        groups: dict[str, list[Path]] = {}
        folder = self.root / kind
        if not folder.is_dir():
            return groups
        for p in folder.rglob("*"):
            if p.is_file() and p.parent.name != "memo":
                groups.setdefault(p.name.split(".")[0], []).append(p)
        return groups

    def prunable(self, keep: set[str], older_than_s: float = 0.0) -> dict[str, list[Path]]:
        """{kind: files} of the artifacts whose key is not in ``keep`` and untouched for ``older_than_s``."""
        now = time.time()
        out: dict[str, list[Path]] = {}
        for kind in KINDS:
            for key, files in self.artifact_files(kind).items():
                if key in keep or any(now - p.stat().st_mtime < older_than_s for p in files):
                    continue
                out.setdefault(kind, []).extend(files)
        return out


@dataclass(frozen=True)
class RunFolder:
    """The files of one run (written by the driver only)."""

    path: Path

    @property
    def cells(self) -> Path:
        return self.path / "cells.csv"

    @property
    def info(self) -> Path:
        return self.path / RUN_INFO

    @property
    def summary(self) -> Path:
        return self.path / "summary.csv"

    @property
    def assignments(self) -> Path:
        return self.path / "assignments.csv"

    @property
    def skipped(self) -> Path:
        return self.path / "skipped.csv"

    @property
    def report_html(self) -> Path:
        return self.path / "report.html"

    @property
    def report_md(self) -> Path:
        return self.path / "report.md"

    @property
    def report_files(self) -> Path:
        return self.path / "report_files"

    def read_info(self) -> dict[str, Any] | None:
        return read_json(self.info)

    def write_info(self, info: dict[str, Any]) -> None:
        write_json(self.info, info)

    def holds_run(self) -> bool:
        return self.cells.is_file()

    @property
    def log(self) -> Path:
        return self.path / "run.log"

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive right to write this folder (an advisory lock the OS drops when the process dies)."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        if (self.path / ".lock").exists() and not (self.path / ".lock").is_file():
            raise BadInput(f"bad --out {str(self.path)!r}: its .lock is not a file; remove it (a run writes its "
                           "lock there)")
        fh = open(self.path / ".lock", "a+", encoding="utf-8")
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = fh.read().strip() or "?"
                raise BadInput(f"bad --out {str(self.path)!r}: another run (pid {holder}) is writing it; wait for "
                               "it to finish or choose another --out") from None
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            yield
        finally:
            fh.close()

    @staticmethod
    def find(root: Path) -> list["RunFolder"]:
        """Every run folder under ``root``."""
        return [RunFolder(p.parent) for p in sorted(Path(root).rglob(RUN_INFO))]
