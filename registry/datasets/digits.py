"""scikit-learn's 1,797 real 8x8 handwritten digits (grayscale, 10 classes)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from benchmark.interfaces import Listing
from registry.datasets._base import DATASETS


@DATASETS.register("digits")
@dataclass
class DigitsSource:
    """scikit-learn's 1,797 real 8x8 handwritten digits (grayscale, 10 classes)."""

    name: str = "digits"
    splits: ClassVar[tuple[str, ...]] = ()

    def version(self) -> dict[str, Any] | None:
        return None  # ships with scikit-learn: its version is in run.json's environment

    def list(self) -> Listing:
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.images, d.target
        fp = "digits:" + hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:16]
        gray = np.clip(x * (255.0 / 16.0) + 0.5, 0, 255).astype(np.uint8)
        return Listing([f"digits/{i:04d}" for i in range(len(y))], [str(int(c)) for c in y], fp,
                       pixels=lambda: list(gray), label_source="builtin")
