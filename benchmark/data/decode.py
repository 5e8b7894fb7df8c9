"""Decoding one image file: EXIF orientation, RGB (transparency on white), whole-image resize to S x S.

The leaf of the data package: PIL only, no store. A file that cannot be used raises ``DecodeError``
with the reason listed in skipped.csv; decompression bombs and truncated files are refused."""
from __future__ import annotations

import multiprocessing
import os
import signal
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps
from tqdm.auto import tqdm

POOL_MIN = 256  # fewer files decode in this process: starting worker processes costs about a second


DECODE_VERSION = 3  # bump when decoding changes, so old caches are not reused (3: per-file content store)


BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white


MAX_PIXELS = 120_000_000  # larger images are refused as decompression bombs
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False  # policy: truncated files are skipped, never half-loaded


class DecodeError(Exception):
    """An image that cannot be used; the message is the reason listed in skipped.csv."""


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
                oriented = _orient(im, caught)
                gray = oriented.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
                return resize_square(to_rgb(oriented), size), gray
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
    except Exception as exc:  # noqa: BLE001  a broken image is skipped, never fatal: Pillow raises many types
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
    """Decode files (not cached: ``predict``). Returns (images (M,3,S,S), kept indices, skipped
    (path, reason), whether all kept images are gray)."""
    results = decode_paths(paths, size, workers, progress)
    kept = [i for i, r in enumerate(results) if not isinstance(r, str)]
    skipped = [(rel(paths[i], root), str(r)) for i, r in enumerate(results) if isinstance(r, str)]
    images = np.stack([results[i] for i in kept]) if kept else np.zeros((0, 3, size, size), np.uint8)
    return images, kept, skipped, bool(kept) and all(is_gray(x) for x in images)


def rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def is_gray(arr: np.ndarray) -> bool:
    """A decoded (3,S,S) image is grayscale when its three channels are equal (no colour to predict)."""
    return bool((arr[0] == arr[1]).all() and (arr[1] == arr[2]).all())


def decode_paths(paths: Sequence[Path], size: int, workers: int | None = None,
                 progress: bool = False) -> list[np.ndarray | str]:
    """Decode files on all cores (one process per core; few files in this process): each file's
    (3,S,S) uint8 or its skip reason."""
    workers = workers or os.cpu_count() or 1
    jobs = [(str(p), size) for p in paths]
    bar_kw = dict(total=len(jobs), desc="decode", unit="img", disable=not progress, leave=False)
    if workers == 1 or len(jobs) < POOL_MIN:
        out = list(tqdm(map(_decode_one, jobs), **bar_kw))
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch's thread pools
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(os.getpid(),))
        try:
            chunk = max(1, min(64, len(jobs) // (workers * 8)))
            # the workers are spawned while the jobs are submitted: hold Ctrl-C / SIGTERM until they have all
            # received their start-up data (a signal mid-spawn leaves a child printing EOFError); they inherit
            # the blocked mask and leave both signals to this process
            stop = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, stop)
            try:
                results = pool.map(_decode_one, jobs, chunksize=chunk)
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stop)
            out = list(tqdm(results, **bar_kw))
        except BaseException:  # Ctrl-C, SIGTERM, an error: drop the queue, never wait for it. The workers finish
            # the chunk in hand and exit (and die with this process anyway: PR_SET_PDEATHSIG). Killing them here
            # would make the pool's manager thread fail already-cancelled futures (InvalidStateError, 3.11).
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    return [arr if arr is not None else reason for arr, _gray, reason in out]


def _worker_init(parent: int) -> None:
    """A decode worker dies with its parent, even a parent killed with SIGKILL (Linux: PR_SET_PDEATHSIG),
    and leaves Ctrl-C to the parent (which stops the pool)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # not Linux: the pool's own shutdown still stops idle workers
        pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
