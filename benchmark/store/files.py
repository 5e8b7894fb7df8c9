"""Atomic, checksummed file primitives (no layout: ``benchmark.store.artifacts`` owns where things go).

A half-written file is never read as valid: writes go to a temporary name and are renamed into place. A
record (JSON) carries the sha256 of its own content and of the data files it describes; reading it
verifies both, and a mismatch or any read error counts as missing (the artifact is recomputed) with one
warning. sha256 runs at about 0.95 GB/s on one core of the 2-core VM; a file this process has verified (or
written) is not hashed again while its size, mtime, ctime and inode are unchanged."""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from registry.weights import sha256_of

T = TypeVar("T")
# errors of the machine rather than of a task: a full disk or quota, a read-only or vanished mount, I/O errors
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.ESTALE, errno.ENODEV,
                            errno.ENXIO, errno.ENOTCONN})

INTEGRITY = "_integrity"  # the key of a record that holds its checksums
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() would give: files respect the umask (mkstemp makes them 0600)
DIR_MODE = 0o777 & ~_UMASK  # what mkdir() would give (mkdtemp makes folders 0700)


class CorruptArtifact(UserWarning):
    """A cached file whose bytes do not match its checksum, or that cannot be read: it is recomputed."""


def corrupt(path: Path, why: str) -> None:
    warnings.warn(f"cache: {path} {why}; it counts as missing and is recomputed", CorruptArtifact, stacklevel=3)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path in ``path``'s folder; renamed over ``path`` when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_partial_writes(path: Path) -> None:
    """Delete the temporary files ``atomic_path`` left beside ``path`` (a kill -9 during the write)."""
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, then rename over ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    """Plain JSON for people and programs (run folder files); cached artifacts use ``write_record``."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any | None:
    """The JSON at ``path``, or None when missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes (remembered for this process while the file's stat stamp is unchanged):
    ``registry.weights.sha256_of``, the weights' hash, so one memo serves both."""
    return sha256_of(path)


def _record_sum(obj: Any, files: dict[str, Any]) -> str:
    body = json.dumps({"data": obj, "files": files}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def write_record(path: Path, obj: dict[str, Any], files: dict[str, Path] | None = None) -> None:
    """A cached artifact's JSON, with the sha256 of its content and of each data file in ``files``
    ({name: path}, written before the record: the record is what makes the artifact exist)."""
    obj = json.loads(json.dumps(obj, default=str))  # the form it reads back as
    sums = {name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for name, p in (files or {}).items()}
    write_json(path, {**obj, INTEGRITY: {"files": sums, "sha256": _record_sum(obj, sums)}})


def check_record(path: Path, files: dict[str, Path] | None = None) -> tuple[dict[str, Any] | None, str]:
    """(the record, "") when it and each of ``files`` match their checksums, else (None, what is wrong).
    A record without checksums (older layout) is (None, "has no checksums")."""
    got = read_json(path)
    if not isinstance(got, dict):
        return None, f"{path.name} is not readable JSON"
    ig = got.pop(INTEGRITY, None)
    if not isinstance(ig, dict) or not isinstance(ig.get("files", {}), dict):
        return None, f"{path.name} has no checksums"
    sums = ig.get("files") or {}
    if _record_sum(got, sums) != ig.get("sha256"):
        return None, f"{path.name} does not match its checksum"
    for name, p in (files or {}).items():
        want = sums.get(name)
        if not isinstance(want, dict):
            return None, f"{path.name} has no checksum for {name}"
        try:
            ok = p.stat().st_size == want.get("bytes") and sha256_file(p) == want.get("sha256")
        except OSError:
            return None, f"{p.name} is missing or unreadable"
        if not ok:
            return None, f"{p.name} does not match the checksum in {path.name}"
    return got, ""


def read_record(path: Path, files: dict[str, Path] | None = None) -> dict[str, Any] | None:
    """The record at ``path`` when it and each of ``files`` match their checksums, else None, with one
    warning when it exists but is damaged (or from an older layout without checksums)."""
    if not path.is_file():
        return None
    got, problem = check_record(path, files)
    if got is None:
        corrupt(path, f"is damaged ({problem})")
    return got


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Save arrays as one .npz, atomically."""
    buf = io.BytesIO()
    named: dict[str, Any] = arrays  # Any: mypy also matches **named against savez's allow_pickle
    np.savez(buf, **named)
    atomic_write_bytes(path, buf.getvalue())


def save_npy(path: Path, array: np.ndarray) -> None:
    """One array as .npy (memory-mappable), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def read_or_error(read: Callable[[], T]) -> tuple[T, None] | tuple[None, Exception]:
    """(``read()``, None), or (None, the exception it raised): a damaged file counts as missing, and the
    readers of numpy and torch raise many types on one (ValueError, tokenize.TokenError, SyntaxError,
    pickle and zip errors, ...)."""
    try:
        return read(), None
    except Exception as exc:  # noqa: BLE001  a damaged file counts as missing, whatever its reader raises
        return None, exc


def load_npy(path: Path, mmap: bool = False) -> np.ndarray | None:
    """An array saved by ``save_npy`` (memory-mapped when ``mmap``), or None when missing or unreadable
    (a damaged header raises ValueError, tokenize.TokenError, SyntaxError, ... inside numpy)."""
    return read_or_error(lambda: np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False))[0]


def save_checked_bytes(path: Path, data: bytes) -> None:
    """``data`` followed by its sha256 (32 bytes): small files that need no record of their own."""
    atomic_write_bytes(path, data + hashlib.sha256(data).digest())


def load_checked_bytes(path: Path) -> bytes | None:
    """What ``save_checked_bytes`` wrote, or None when missing or damaged (one warning)."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    data, digest = blob[:-32], blob[-32:]
    if len(blob) < 32 or hashlib.sha256(data).digest() != digest:
        corrupt(path, "does not match its checksum")
        return None
    return data
