"""Colour patches cut at seeded random places from scikit-learn's two sample photos."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from benchmark.interfaces import Listing
from registry.datasets._base import DATASETS


@DATASETS.register("sample_photos")
@dataclass
class SamplePhotosSource:
    """Color patches of varying size cut at seeded random places from scikit-learn's two sample photos
    (china.jpg, flower.jpg); the label is the source photo."""

    name: str = "sample_photos"
    per_photo: int = 150
    seed: int = 0
    splits: ClassVar[tuple[str, ...]] = ()

    def version(self) -> dict[str, Any] | None:
        return None  # ships with scikit-learn: its version is in run.json's environment

    def list(self) -> Listing:
        from sklearn.datasets import load_sample_images

        data = load_sample_images()
        h = hashlib.sha256(b"".join(i.tobytes() for i in data.images)).hexdigest()[:16]
        rng = np.random.default_rng(self.seed)
        boxes: list[tuple[np.ndarray, int, int, int, int]] = []
        labels: list[str | None] = []
        names: list[str] = []
        for fname, photo in zip(data.filenames, data.images, strict=False):
            ph_h, ph_w = photo.shape[:2]
            for j in range(self.per_photo):
                ph, pw = (int(v) for v in rng.integers(48, 160, size=2))
                y0, x0 = int(rng.integers(0, ph_h - ph)), int(rng.integers(0, ph_w - pw))
                boxes.append((photo, y0, x0, ph, pw))
                labels.append(Path(fname).stem)
                names.append(f"{Path(fname).stem}/{j:03d}_y{y0}_x{x0}_{ph}x{pw}")

        def pixels() -> list[np.ndarray]:
            return [p[y0:y0 + ph, x0:x0 + pw] for p, y0, x0, ph, pw in boxes]

        return Listing(names, labels, f"sample_photos:{h}:{self.per_photo}:{self.seed}", pixels=pixels,
                       label_source="builtin")
