"""Shared fixtures: tiny data sets the tests make themselves; nothing is downloaded."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.runtime.device import select_runtime


def make_photo(kind: int, rng: np.random.Generator, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """Two visually distinct synthetic classes: 0 = horizontal stripes (reddish), 1 = checker blocks (bluish)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == 0:
        base = ((yy // 4) % 2).astype(np.float64)
        rgb = np.stack([0.6 + 0.4 * base, 0.3 * base, 0.2 * base], -1)
    else:
        base = (((yy // 8) + (xx // 8)) % 2).astype(np.float64)
        rgb = np.stack([0.2 * base, 0.3 * base, 0.6 + 0.4 * base], -1)
    rgb = np.clip(rgb + rng.normal(0, 0.05, rgb.shape), 0, 1)
    return Image.fromarray((rgb * 255).astype(np.uint8), "RGB")


def write_photo_folder(root: Path, n_per_class: int = 12, size: tuple[int, int] | None = None,
                       names: str = "img_{i:02d}.png") -> Path:
    """Two class folders (stripes, checks) of synthetic photos; random sizes 32..79 unless ``size`` is given."""
    rng = np.random.default_rng(0)
    for kind, cls in enumerate(("stripes", "checks")):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            wh = size or (int(rng.integers(32, 80)), int(rng.integers(32, 80)))
            make_photo(kind, rng, wh).save(root / cls / names.format(i=i))
    return root


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """ImageFolder-style folder: 2 classes x 12 PNG images of varying sizes."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for kind, cls in enumerate(("stripes", "checks")):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            size = (int(rng.integers(32, 80)), int(rng.integers(32, 80)))
            make_photo(kind, rng, size).save(root / cls / f"img_{i:02d}.png")
    return root


@pytest.fixture
def cpu():
    return select_runtime("cpu", cuda_available=False, bf16_supported=False)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The system tests run in two xdist groups (``make test`` runs ``-n 3 --dist loadgroup``), each group's
    tests one after another on one worker: the Ray tests (never two private Ray instances at once) and the
    process tests (signals, kill -9 and resume, store integrity, fail-loud inputs, photo folders: never two
    kill timings at once). The other worker takes the rest of the suite meanwhile."""
    for item in items:
        if "system" in item.path.parts:
            ray = item.path.name.startswith("test_ray")
            item.add_marker(pytest.mark.xdist_group("system-ray" if ray else "system-processes"))
