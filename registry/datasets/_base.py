"""What every data set shares: the ``DatasetSource`` protocol, the registry, image files and labels files.

A data set lists images and labels (``Listing``); the harness decodes them. A source declares its
``splits`` (``--split``; none for most) and its ``version()`` (recorded in run.json; None when it has none)."""
from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

import numpy as np

from benchmark.interfaces import BadInput, Listing, unescape_name
from registry.base import Registry

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


class DatasetSource(Protocol):
    """Something that lists images (files or in-memory pixels) and their labels."""

    splits: ClassVar[tuple[str, ...]]

    @property
    def name(self) -> str: ...  # read-only: a folder's name is its path

    def list(self) -> Listing: ...

    def version(self) -> dict[str, Any] | None: ...


DATASETS: Registry[Callable[..., DatasetSource]] = Registry("dataset", package="registry.datasets")


def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, sorted), by extension; broken symlinks included so
    they can be listed as skipped."""
    found = []
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        for f in files:
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
                found.append(Path(dirpath) / f)
    return sorted(found)


def read_labels_csv(path: Path) -> dict[str, str]:
    """``filename,label`` rows (header optional) -> {filename: label}. Problems are warned, not fatal. A file
    name that is not valid UTF-8 is given escaped, as assignments.csv writes it (``escape_name``)."""
    if path.is_dir():
        raise BadInput(f"bad labels file {str(path)!r}: it is a folder; need a CSV of filename,label")
    if not path.is_file():
        raise BadInput(f"bad labels file {str(path)!r}: no such file")
    mapping: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except UnicodeDecodeError as exc:
        raise BadInput(f"bad labels file {str(path)!r}: not UTF-8 text (byte {exc.start}); need a CSV of "
                       "filename,label") from None
    except (csv.Error, OSError) as exc:
        raise BadInput(f"bad labels file {str(path)!r}: not a readable CSV ({exc}); need filename,label rows") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["filename", "label"]:
        rows = rows[1:]
    bad = [i for i, r in enumerate(rows) if len(r) < 2 or not r[0].strip() or not r[1].strip()]
    if not rows:
        raise BadInput(f"bad labels file {str(path)!r}: no filename,label rows in it")
    if bad and len(bad) == len(rows):
        raise BadInput(f"bad labels file {str(path)!r}: need two columns filename,label")
    if bad:
        warnings.warn(f"labels file {path}: {len(bad)} rows without filename,label ignored", stacklevel=2)
    bad_rows = set(bad)
    repeated: list[str] = []
    conflicting: list[str] = []
    for r in (r for i, r in enumerate(rows) if i not in bad_rows):
        name, label = unescape_name(r[0].strip()), r[1].strip()  # names as assignments.csv writes them
        if name in mapping:
            (repeated if mapping[name] == label else conflicting).append(name)
            continue
        mapping[name] = label
    if repeated:
        warnings.warn(f"labels file {path}: {len(repeated)} duplicate rows ignored, e.g. {repeated[0]!r}", stacklevel=2)
    if conflicting:
        warnings.warn(f"labels file {path}: {len(conflicting)} files listed twice with different labels; keeping "
                      f"the first, e.g. {conflicting[0]!r}", stacklevel=2)
    return mapping


def limit_listing(listing: Listing, limit: int | None) -> Listing:
    """A seeded subset of ``limit`` images (seed 0, in listing order); the listing itself when it is smaller."""
    n = len(listing.names)
    if limit is None or limit >= n:
        return listing
    keep = np.sort(np.random.default_rng(0).permutation(n)[:limit])
    pixels = listing.pixels
    return Listing([listing.names[i] for i in keep], [listing.labels[i] for i in keep],
                   f"{listing.fingerprint}:limit{limit}" if listing.fingerprint else listing.fingerprint,
                   files=[listing.files[i] for i in keep] if listing.files is not None else None, root=listing.root,
                   pixels=(lambda: [pixels()[i] for i in keep]) if pixels is not None else None,
                   label_source=listing.label_source, notes=listing.notes)
