"""Decode once (EXIF orientation, RGB, whole-image resize to S x S) and cache the uint8 image store."""
from __future__ import annotations

import os
import warnings
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps
from tqdm.auto import tqdm

from benchmark.specs import stable_hash
from benchmark.storage import load_arrays, save_arrays

POOL_MIN = 256  # fewer files decode in this process: starting worker processes costs about a second
DECODE_VERSION = 2  # bump when decoding changes, so old caches are not reused
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white
MAX_PIXELS = 120_000_000  # larger images are refused as decompression bombs
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False  # policy: truncated files are skipped, never half-loaded


class DecodeError(Exception):
    """An image that cannot be used; the message is the reason listed in skipped.csv."""


@dataclass
class ImageSet:
    """The image store of one data set at one size.

    images: uint8 (N, 3, S, S); labels: int64 (N,), -1 = unlabeled; names: N relative paths or ids."""

    images: np.ndarray
    labels: np.ndarray
    names: list[str]
    class_names: list[str]
    grayscale: bool
    key: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_labeled(self) -> int:
        return int((self.labels >= 0).sum())

    @property
    def n_classes(self) -> int:
        return len(np.unique(self.labels[self.labels >= 0]))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB: alpha composited on BACKGROUND, palette expanded, 16-bit scaled, CMYK converted."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        img = Image.fromarray(((arr - lo) / (hi - lo + 1e-12) * 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB") if img.mode != "RGB" else img


def resize_square(img: Image.Image, size: int) -> np.ndarray:
    """Whole image (no crop) to (3, size, size) uint8 by antialiased bilinear interpolation."""
    out = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(out, dtype=np.uint8).transpose(2, 0, 1).copy()


def decode_file(path: str | os.PathLike, size: int) -> tuple[np.ndarray, bool]:
    """Decode one file to (3, S, S) uint8 and whether it is grayscale. Raises DecodeError with a reason.

    Large JPEGs are decoded near the target size first (``draft``: DCT-domain reduction), then resized."""
    p = Path(path)
    try:
        if not p.exists():
            raise DecodeError("missing or broken symlink")
        if p.stat().st_size == 0:
            raise DecodeError("empty file (0 bytes)")
        # one image per process at a time: catching warnings here is safe
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with Image.open(p) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise DecodeError(f"decompression bomb: {im.width}x{im.height} pixels is over the "
                                      f"{MAX_PIXELS:,} limit")
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)
                if im.format == "JPEG":
                    im.draft("RGB", (size * 2, size * 2))
                im.load()
                im = _orient(im, caught)
                gray = im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
                return resize_square(to_rgb(im), size), gray
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:  # over 2x the limit: Pillow refuses at open
        raise DecodeError(f"decompression bomb: {exc}".split(" could be")[0]) from None
    except Image.UnidentifiedImageError:
        raise DecodeError("not an image (unrecognized format)") from None
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower() or "premature" in msg.lower():
            raise DecodeError(f"truncated image: {msg}") from None
        raise DecodeError(f"unreadable: {msg}") from None
    except Exception as exc:  # corrupt metadata and decoder bugs surface as many types
        raise DecodeError(f"corrupt image: {type(exc).__name__}: {exc}") from None


def _orient(im: Image.Image, caught: list[warnings.WarningMessage]) -> Image.Image:
    """Apply the EXIF orientation. Unparseable metadata (Pillow raises, or warns "Corrupt EXIF data")
    is a DecodeError: the file is skipped and listed."""
    try:
        im.getexif().get(0x0112)
        out = ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001  Pillow raises many types on bad metadata
        raise DecodeError(f"corrupt metadata (EXIF): {type(exc).__name__}: {exc}") from None
    bad = [str(w.message) for w in caught if "exif" in str(w.message).lower()]
    if bad:
        raise DecodeError(f"corrupt metadata (EXIF): {bad[0].strip()}")
    return out


def decode_pil(img: Image.Image, size: int) -> np.ndarray:
    """An in-memory PIL image (built-in data sets) through the same RGB + resize path."""
    return resize_square(to_rgb(ImageOps.exif_transpose(img)), size)


def _decode_one(args: tuple[str, int]) -> tuple[np.ndarray | None, bool, str]:
    try:
        arr, gray = decode_file(args[0], args[1])
        return arr, gray, ""
    except DecodeError as exc:
        return None, False, str(exc)


def decode_many(paths: Sequence[Path], size: int, root: Path, workers: int | None = None,
                progress: bool = True) -> tuple[np.ndarray, list[int], list[tuple[str, str]], bool]:
    """Decode files on all cores (one process per core; small folders in this process).
    Returns (images (M,3,S,S), kept indices, skipped (path, reason), whether all kept images are gray)."""
    workers = workers or os.cpu_count() or 1
    jobs = [(str(p), size) for p in paths]
    bar_kw = dict(total=len(jobs), desc="decode", unit="img", disable=not progress, leave=False)
    if workers == 1 or len(jobs) < POOL_MIN:
        results = list(tqdm(map(_decode_one, jobs), **bar_kw))
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch's thread pools
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            chunk = max(1, min(64, len(jobs) // (workers * 8)))
            results = list(tqdm(pool.map(_decode_one, jobs, chunksize=chunk), **bar_kw))
    kept = [i for i, (arr, _, _) in enumerate(results) if arr is not None]
    skipped = [(rel(paths[i], root), reason) for i, (arr, _, reason) in enumerate(results) if arr is None]
    if kept:
        images = np.stack([results[i][0] for i in kept])  # type: ignore[misc]
    else:
        images = np.zeros((0, 3, size, size), np.uint8)
    return images, kept, skipped, bool(kept) and all(results[i][1] for i in kept)


def rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def cached_image_set(fingerprint: str, size: int, cache_dir: Path,
                     build: Callable[[], ImageSet]) -> tuple[ImageSet, bool]:
    """The image store for (data set fingerprint, size): loaded from cache or built and saved.
    Returns (image set, whether it came from the cache)."""
    key = stable_hash(["images", fingerprint, size, DECODE_VERSION])
    path = cache_dir / "images" / f"{key}.npz"
    arrays = load_arrays(path)
    if arrays is not None:
        m = json.loads(arrays["meta"].item())
        return ImageSet(arrays["images"], arrays["labels"], m["names"], m["class_names"], m["grayscale"],
                        key, [tuple(s) for s in m["skipped"]]), True
    s = build()
    s.key = key
    meta = json.dumps({"names": s.names, "class_names": s.class_names, "grayscale": s.grayscale,
                       "skipped": s.skipped})
    save_arrays(path, images=s.images, labels=s.labels, meta=np.array(meta))
    return s, False
