"""Synthetic phone-like photos for the day-of-photos benchmark, made from images that install with the
project's dependencies: scikit-learn's ``china.jpg`` and ``flower.jpg`` and matplotlib's ``grace_hopper.jpg``
and ``Minduka_Present_Blue_Pack.png`` — four class folders.

Photo ``i`` of a set is a function of (seed, i) only: a random crop (40-100% of the source's area, aspect
3:4 to 16:9, sometimes portrait), a horizontal flip half the time, a small tilt (up to 8 degrees), brightness
and colour jitter, sensor noise, resized to 640-1600 px wide and saved as JPEG at quality 70-95. A quarter
of them are stored the way phones store them: the pixels rotated and an EXIF Orientation tag (3, 6 or 8)
that undoes it, so a decoder that ignores EXIF sees them sideways. One in 500 is broken on purpose (cut
short, zero bytes, or text with a .jpg name): the harness must skip and list them.

Generation is cached and resumable: ``generate(root, n)`` writes only the files that are missing (each by
an atomic rename, so a killed generation leaves no half file), in one process per core."""
from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CLASSES = ("china", "flower", "grace_hopper", "minduka")
BROKEN_EVERY = 500
ROTATED_FRACTION = 0.25
MIN_WIDTH, MAX_WIDTH = 640, 1600
_SOURCES: dict[str, np.ndarray] = {}


def sources() -> dict[str, np.ndarray]:
    """The four packaged source images as uint8 RGB arrays."""
    if not _SOURCES:
        import matplotlib
        from PIL import Image
        from sklearn.datasets import load_sample_image

        sample = Path(matplotlib.get_data_path()) / "sample_data"
        _SOURCES["china"] = load_sample_image("china.jpg")
        _SOURCES["flower"] = load_sample_image("flower.jpg")
        _SOURCES["grace_hopper"] = np.asarray(Image.open(sample / "grace_hopper.jpg").convert("RGB"))
        _SOURCES["minduka"] = np.asarray(Image.open(sample / "Minduka_Present_Blue_Pack.png").convert("RGB"))
    return _SOURCES


def name_of(i: int) -> str:
    return f"{CLASSES[i % len(CLASSES)]}/IMG_{i:06d}.jpg"


def photo_bytes(i: int, seed: int = 0) -> bytes:
    """The file of photo ``i``: JPEG bytes (or the broken file it is meant to be)."""
    from PIL import Image, ImageEnhance

    rng = np.random.default_rng([seed, i])
    if i % BROKEN_EVERY == BROKEN_EVERY - 1:
        kind = i // BROKEN_EVERY % 3
        if kind == 1:
            return b""
        if kind == 2:
            return b"this is not a photo\n" * 10
    src = sources()[CLASSES[i % len(CLASSES)]]
    h, w = src.shape[:2]
    area = rng.uniform(0.4, 1.0) * h * w
    aspect = rng.uniform(4 / 3, 16 / 9)
    if rng.random() < 0.3:
        aspect = 1 / aspect  # portrait
    cw = int(min(w, round(np.sqrt(area * aspect))))
    ch = int(min(h, round(cw / aspect)))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    img = Image.fromarray(src[y0:y0 + ch, x0:x0 + cw])
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = img.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BILINEAR, expand=False)
    img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.7, 1.3)))
    img = ImageEnhance.Color(img).enhance(float(rng.uniform(0.7, 1.3)))
    pix = np.asarray(img, dtype=np.float32)  # sensor noise, at the source's resolution (the resize blurs it)
    noise = rng.standard_normal(size=pix.shape[:2] + (1,), dtype=np.float32) * np.float32(rng.uniform(1, 6))
    img = Image.fromarray(np.clip(pix + noise, 0, 255).astype(np.uint8))
    width = int(rng.integers(MIN_WIDTH, MAX_WIDTH + 1))
    img = img.resize((width, max(1, round(width * img.height / img.width))), Image.Resampling.BILINEAR)
    exif = Image.Exif()
    if rng.random() < ROTATED_FRACTION:  # stored rotated, the tag says how to show it
        orientation = int(rng.choice([3, 6, 8]))
        undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
        img = img.transpose(undo[orientation])
        exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(70, 96)), exif=exif.tobytes())
    data = buf.getvalue()
    if i % BROKEN_EVERY == BROKEN_EVERY - 1:  # kind 0: cut short
        return data[: len(data) // 3]
    return data


def _write(args: tuple[str, int, int]) -> int:
    root, i, seed = args
    path = Path(root) / name_of(i)
    if path.exists():
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(photo_bytes(i, seed))
    os.replace(tmp, path)
    return 1


def generate(root: Path, n: int, start: int = 0, seed: int = 0, workers: int | None = None,
             progress: bool = True) -> int:
    """Photos ``start .. start+n-1`` under ``root`` (those missing); returns how many were written."""
    from tqdm import tqdm

    root.mkdir(parents=True, exist_ok=True)
    todo = [(str(root), i, seed) for i in range(start, start + n) if not (root / name_of(i)).exists()]
    if not todo:
        return 0
    with ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
        done = 0
        for wrote in tqdm(pool.map(_write, todo, chunksize=32), total=len(todo), desc="generate photos",
                          unit="photo", disable=not progress):
            done += wrote
    return done


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("n", type=int)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(generate(a.root, a.n, a.start, a.seed), "written")
