"""Decode once (EXIF orientation, RGB, whole-image resize to S x S) and cache the uint8 image store."""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps
from tqdm.auto import tqdm

from benchmark.specs import stable_hash
from benchmark.storage import load_arrays, save_arrays

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
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                if getattr(im, "n_frames", 1) > 1:
                    im.seek(0)
                if im.format == "JPEG":
                    im.draft("RGB", (size * 2, size * 2))
                im.load()
                im = ImageOps.exif_transpose(im)
                gray = im.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
                return resize_square(to_rgb(im), size), gray
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
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


def decode_pil(img: Image.Image, size: int) -> np.ndarray:
    """An in-memory PIL image (built-in data sets) through the same RGB + resize path."""
    return resize_square(to_rgb(ImageOps.exif_transpose(img)), size)


def decode_many(paths: Sequence[Path], size: int, root: Path, workers: int | None = None,
                progress: bool = True) -> tuple[np.ndarray, list[int], list[tuple[str, str]], bool]:
    """Decode files on all cores. Returns (images (M,3,S,S), kept indices, skipped (path, reason), all_gray)."""
    workers = workers or os.cpu_count() or 1
    out: list[np.ndarray | None] = [None] * len(paths)
    grays: list[bool] = []
    skipped: list[tuple[str, str]] = []

    def one(i: int) -> tuple[int, np.ndarray | None, bool, str]:
        try:
            arr, gray = decode_file(paths[i], size)
            return i, arr, gray, ""
        except DecodeError as exc:
            return i, None, False, str(exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        bar = tqdm(pool.map(one, range(len(paths))), total=len(paths), desc="decode", unit="img",
                   disable=not progress, leave=False)
        for i, arr, gray, reason in bar:
            if arr is None:
                skipped.append((rel(paths[i], root), reason))
            else:
                out[i] = arr
                grays.append(gray)
    kept = [i for i, a in enumerate(out) if a is not None]
    if kept:
        images = np.stack([out[i] for i in kept])  # type: ignore[misc]
    else:
        images = np.zeros((0, 3, size, size), np.uint8)
    return images, kept, skipped, bool(grays) and all(grays)


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
        meta = arrays["meta"].item()
        import json

        m = json.loads(meta)
        return ImageSet(arrays["images"], arrays["labels"], m["names"], m["class_names"], m["grayscale"],
                        key, [tuple(s) for s in m["skipped"]]), True
    s = build()
    s.key = key
    import json

    meta = json.dumps({"names": s.names, "class_names": s.class_names, "grayscale": s.grayscale,
                       "skipped": s.skipped})
    save_arrays(path, images=s.images, labels=s.labels, meta=np.array(meta))
    return s, False
