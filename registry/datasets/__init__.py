"""Data sets, one module per source in this package (discovered): ``digits`` and ``sample_photos`` (both ship
with scikit-learn), ``fashion_mnist`` (Debian's package), and any folder of images (``folder``). What they
share is ``_base``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmark.interfaces import BadInput
from registry.base import unknown_message
from registry.datasets._base import (
    DATASETS,
    IMAGE_EXTENSIONS,
    DatasetSource,
    limit_listing,
    list_images,
    read_labels_csv,
)
from registry.datasets.folder import FolderSource

__all__ = ["DATASETS", "IMAGE_EXTENSIONS", "DatasetSource", "FolderSource", "check_split", "dataset_version",
           "limit_listing", "list_images", "read_labels_csv", "resolve_dataset", "splits_of"]


def splits_of(name: str) -> tuple[str, ...]:
    """The splits a registered data set declares (empty for folders and most data sets)."""
    return tuple(getattr(DATASETS.get(name), "splits", ())) if name in DATASETS else ()


def dataset_version(name: str) -> dict[str, Any] | None:
    """The version a registered data set declares, for run.json (None for folders)."""
    return DATASETS.get(name)().version() if name in DATASETS else None


def check_split(name: str, split: str | None, flag: str = "--split") -> None:
    """BadInput, naming ``flag``, unless ``split`` is None or one of the splits data set ``name`` declares."""
    if split is None:
        return
    allowed = splits_of(name)
    if not allowed:
        having = [n for n in DATASETS.names() if splits_of(n)]
        raise BadInput(f"bad {flag} {split!r} for data set {name!r}: only {', '.join(having)} "
                       f"{'has' if len(having) == 1 else 'have'} splits")
    if split not in allowed:
        raise BadInput(f"bad {flag} {split!r}: allowed: {', '.join(allowed)}")


def resolve_dataset(name: str, labels_csv: str | None = None, split: str | None = None) -> DatasetSource:
    """A registered data set by name, or a folder path. Raises BadInput listing what is allowed."""
    check_split(name, split)
    if name in DATASETS:
        if labels_csv:
            raise BadInput(f"bad --labels for built-in data set {name!r}: labels apply to a folder only")
        return DATASETS.get(name)(**({"split": split} if split is not None else {}))
    if os.path.isdir(name):
        return FolderSource(Path(name), Path(labels_csv) if labels_csv else None)
    raise BadInput(unknown_message("dataset", name, DATASETS.names() + ["<folder path>"],
                                     pool=DATASETS.names()))
