"""Fashion-MNIST (Xiao et al. 2017): 70,000 28x28 grayscale images of 10 clothing classes, read offline from
Debian's ``dataset-fashion-mnist`` (MIT licence; files under /usr/share/datasets/fashion-mnist/, the
original IDX files, gzipped). ``make run`` / ``make test`` install the package where apt-get is usable."""
from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from benchmark.interfaces import BadInput, Listing
from registry.datasets._base import DATASETS

ROOT_ENV = "SSLBENCH_FASHION_MNIST"  # another folder holding the same files (tests, other systems)
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
SPLITS = ("train", "test", "all")
INSTALL = "sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu; make run does it where apt-get is usable)"


def data_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        for p in (root / name, *root.glob(f"**/{name}")):
            if p.is_file():
                return p
    raise BadInput(f"bad dataset 'fashion_mnist': {stem}(.gz) not found under {root}; install it: {INSTALL}")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not): uint8 array of the shape its header gives."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise BadInput(f"bad dataset file {str(path)!r}: not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise BadInput(f"bad dataset file {str(path)!r}: {body.size} bytes for shape {shape}")
    return body.reshape(shape)


def package_version() -> str | None:
    """The installed Debian package's version (recorded in run.json), None when not installed by dpkg."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "dataset-fashion-mnist"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except OSError:
        return None


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,)) of a split: train (60k), test (10k) or all (train then test)."""
    if split not in SPLITS:
        raise BadInput(f"bad --split {split!r}: allowed: {', '.join(SPLITS)}")
    root = data_root()
    if not root.is_dir():
        raise BadInput(f"bad dataset 'fashion_mnist': {root} does not exist; install it: {INSTALL}")
    parts = ("train", "test") if split == "all" else (split,)
    xs, ys = [], []
    for part in parts:
        img_stem, lab_stem = FILES[part]
        x, y = read_idx(_find(root, img_stem)), read_idx(_find(root, lab_stem))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise BadInput(f"bad dataset 'fashion_mnist': {part} images {x.shape} and labels {y.shape} disagree")
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


@DATASETS.register("fashion_mnist")
@dataclass
class FashionMnistSource:
    """Fashion-MNIST's ``split`` (default test: 10,000 images) as a built-in data set."""

    split: str = "test"
    name: str = "fashion_mnist"
    splits: ClassVar[tuple[str, ...]] = SPLITS

    def version(self) -> dict[str, Any] | None:
        """Debian's dataset-fashion-mnist package that holds the files."""
        return {"package": "dataset-fashion-mnist", "version": package_version(), "root": str(data_root())}

    def list(self) -> Listing:
        x, y = load(self.split)
        digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:16]
        offset = 0 if self.split != "test" else 60_000
        names = [f"fashion_mnist/{'train' if i + offset < 60_000 else 'test'}/{i + offset:05d}" for i in range(len(y))]
        return Listing(names, [CLASSES[int(c)] for c in y], f"fashion_mnist:{self.split}:{digest}",
                       pixels=lambda: list(x), label_source="builtin")
