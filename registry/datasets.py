"""Data sets: built-in ``digits`` and ``sample_photos`` (both ship with scikit-learn) and any folder of images.

A data set lists images and labels (``Listing``); the harness decodes them."""
from __future__ import annotations

import csv
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from benchmark.interfaces import BadInput, Listing
from registry.base import Registry, unknown_message
from registry.fashion_mnist import FashionMnistSource

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


class DatasetSource(Protocol):
    """Something that lists images (files or in-memory pixels) and their labels."""

    name: str

    def list(self) -> Listing: ...


DATASETS: Registry[Callable[[], DatasetSource]] = Registry("dataset")


@dataclass
class DigitsSource:
    """scikit-learn's 1,797 real 8x8 handwritten digits (grayscale, 10 classes)."""

    name: str = "digits"

    def list(self) -> Listing:
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.images, d.target
        fp = "digits:" + hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:16]
        gray = np.clip(x * (255.0 / 16.0) + 0.5, 0, 255).astype(np.uint8)
        return Listing([f"digits/{i:04d}" for i in range(len(y))], [str(int(c)) for c in y], fp,
                       pixels=lambda: list(gray), label_source="builtin")


@dataclass
class SamplePhotosSource:
    """Color patches of varying size cut at seeded random places from scikit-learn's two sample photos
    (china.jpg, flower.jpg); the label is the source photo."""

    name: str = "sample_photos"
    per_photo: int = 150
    seed: int = 0

    def list(self) -> Listing:
        from sklearn.datasets import load_sample_images

        data = load_sample_images()
        h = hashlib.sha256(b"".join(i.tobytes() for i in data.images)).hexdigest()[:16]
        rng = np.random.default_rng(self.seed)
        boxes, labels, names = [], [], []
        for fname, photo in zip(data.filenames, data.images, strict=False):
            ph_h, ph_w = photo.shape[:2]
            for j in range(self.per_photo):
                ph, pw = (int(v) for v in rng.integers(48, 160, size=2))
                y0, x0 = int(rng.integers(0, ph_h - ph)), int(rng.integers(0, ph_w - pw))
                boxes.append((photo, y0, x0, ph, pw))
                labels.append(Path(fname).stem)
                names.append(f"{Path(fname).stem}/{j:03d}_y{y0}_x{x0}_{ph}x{pw}")
        pixels = lambda: [p[y0:y0 + ph, x0:x0 + pw] for p, y0, x0, ph, pw in boxes]  # noqa: E731
        return Listing(names, labels, f"sample_photos:{h}:{self.per_photo}:{self.seed}", pixels=pixels,
                       label_source="builtin")


DATASETS.register("digits")(DigitsSource)
DATASETS.register("sample_photos")(SamplePhotosSource)
DATASETS.register("fashion_mnist")(FashionMnistSource)
SPLIT_DATASETS = ("fashion_mnist",)  # data sets with --split (train / test / all)


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
    """``filename,label`` rows (header optional) -> {filename: label}. Problems are warned, not fatal."""
    if not path.is_file():
        raise BadInput(f"bad labels file {str(path)!r}: no such file")
    mapping: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["filename", "label"]:
        rows = rows[1:]
    bad = [i for i, r in enumerate(rows) if len(r) < 2 or not r[0].strip() or not r[1].strip()]
    if bad and len(bad) == len(rows):
        raise BadInput(f"bad labels file {str(path)!r}: need two columns filename,label")
    if bad:
        warnings.warn(f"labels file {path}: {len(bad)} rows without filename,label ignored", stacklevel=2)
    bad_rows = set(bad)
    repeated, conflicting = [], []
    for r in (r for i, r in enumerate(rows) if i not in bad_rows):
        name, label = r[0].strip(), r[1].strip()
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


@dataclass
class FolderSource:
    """A folder of images (recursive). Labels from ``labels_csv`` (filename,label; filename relative to
    the folder or a bare file name), else from ImageFolder-style subfolders, else none."""

    root: Path
    labels_csv: Path | None = None

    @property
    def name(self) -> str:
        return str(self.root)

    def _labels_for(self, rels: list[str]) -> tuple[list[str | None], str]:
        if self.labels_csv:
            mapping = read_labels_csv(Path(self.labels_csv))
            base_count: dict[str, int] = {}
            for r in rels:
                base_count[Path(r).name] = base_count.get(Path(r).name, 0) + 1
            ambiguous = sorted(k for k in mapping if k not in rels and base_count.get(k, 0) > 1)
            if ambiguous:
                warnings.warn(f"labels file: {len(ambiguous)} bare file names match several images and are "
                              f"ignored (give the path relative to the folder), e.g. {ambiguous[0]!r}", stacklevel=2)
            out = [mapping.get(r, mapping.get(Path(r).name) if base_count[Path(r).name] == 1 else None)
                   for r in rels]
            unmatched = sorted(set(mapping) - set(rels) - set(base_count))
            if unmatched:
                warnings.warn(f"labels file: {len(unmatched)} listed files not found among the images, "
                              f"e.g. {unmatched[0]!r}", stacklevel=2)
            return out, "csv"
        tops = {r.split("/", 1)[0] for r in rels if "/" in r}
        if len(tops) >= 2:  # ImageFolder style; files at the top level stay unlabeled
            return [r.split("/", 1)[0] if "/" in r else None for r in rels], "subfolders"
        return [None] * len(rels), "none"

    def list(self) -> Listing:
        paths = list_images(self.root)
        if not paths:
            raise BadInput(f"bad dataset folder {str(self.root)!r}: no image files in it (allowed formats: "
                             f"{', '.join(IMAGE_EXTENSIONS)})")
        rels = [p.relative_to(self.root).as_posix() for p in paths]
        labels, how = self._labels_for(rels)
        return Listing(rels, labels, None, files=paths, root=self.root, label_source=how)


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
                   pixels=(lambda: [pixels()[i] for i in keep]) if pixels is not None else None,  # type: ignore[misc]
                   label_source=listing.label_source, notes=listing.notes)


def resolve_dataset(name: str, labels_csv: str | None = None, split: str | None = None) -> DatasetSource:
    """A registered data set by name, or a folder path. Raises BadInput listing what is allowed."""
    if split is not None and name not in SPLIT_DATASETS:
        raise BadInput(f"bad --split {split!r} for data set {name!r}: only {', '.join(SPLIT_DATASETS)} "
                       f"{'has' if len(SPLIT_DATASETS) == 1 else 'have'} splits")
    if name in DATASETS:
        if labels_csv:
            raise BadInput(f"bad --labels for built-in data set {name!r}: labels apply to a folder only")
        return DATASETS.get(name)(**({"split": split} if split is not None else {}))
    if os.path.isdir(name):
        return FolderSource(Path(name), Path(labels_csv) if labels_csv else None)
    raise BadInput(unknown_message("dataset", name, DATASETS.names() + ["<folder path>"],
                                     pool=DATASETS.names()))
