"""Decode once (EXIF orientation, RGB, whole-image resize to S x S) into the uint8 image store.

Files are keyed by their content (sha256 of the bytes; a memo of path, size, mtime and inode spares
re-hashing unchanged files) and decoded one file at a time into the store, so adding a day's photos
decodes only the new ones; the image store of a data set is a memory-mapped (N,3,S,S) array."""
from __future__ import annotations

import os
import signal
import warnings
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps
from tqdm.auto import tqdm

from benchmark.interfaces import BadInput, Listing, stable_hash
from benchmark.storage import sha256_file
from benchmark.store import ArtifactStore

POOL_MIN = 256  # fewer files decode in this process: starting worker processes costs about a second
DECODE_VERSION = 3  # bump when decoding changes, so old caches are not reused (3: per-file content store)
CHUNK = 2048  # files decoded per round (bounded memory for any folder size)
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white
MAX_PIXELS = 120_000_000  # larger images are refused as decompression bombs
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False  # policy: truncated files are skipped, never half-loaded


class DecodeError(Exception):
    """An image that cannot be used; the message is the reason listed in skipped.csv."""


@dataclass
class ImageSet:
    """The image store of one data set at one size.

    images: uint8 (N, 3, S, S), memory-mapped from the store; labels: int64 (N,), -1 = unlabeled;
    names: N relative paths or ids."""

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


def content_hashes(listing: Listing, store: ArtifactStore) -> list[str | None]:
    """sha256 of every listed file (None: unreadable). A memo keyed by path, size, mtime, ctime and inode
    spares re-reading unchanged files (ctime changes on every write and cannot be set back, unlike mtime)."""
    assert listing.files is not None and listing.root is not None
    root_id = stable_hash(str(Path(listing.root).resolve()))
    memo = store.get_memo(root_id)
    out: list[str | None] = [None] * len(listing.names)
    todo: list[tuple[int, list[int]]] = []
    for i, (name, path) in enumerate(zip(listing.names, listing.files)):
        try:
            st = path.stat()
        except OSError:
            continue
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        hit = memo.get(name)
        if hit and hit[:4] == stamp:
            out[i] = hit[4]
        else:
            todo.append((i, stamp))
    if todo:  # hashlib releases the GIL: threads hash files on every core
        with ThreadPoolExecutor(max_workers=min(32, os.cpu_count() or 1)) as pool:
            shas = list(pool.map(_sha_or_none, [listing.files[i] for i, _ in todo]))
        for (i, stamp), sha in zip(todo, shas):
            out[i] = sha
            if sha is not None:
                memo[listing.names[i]] = stamp + [sha]
        store.put_memo(root_id, memo)
    return out


def _sha_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def listing_fingerprint(listing: Listing, store: ArtifactStore) -> tuple[str, list[str | None] | None]:
    """(content fingerprint of the listed pixels, per-file hashes for file listings)."""
    if listing.files is None:
        return str(listing.fingerprint), None
    shas = content_hashes(listing, store)
    return "files:" + stable_hash([listing.names, shas]), shas


def images_key(fingerprint: str, size: int, decoder: str = "pil") -> str:
    """The image store's key: the listing's content, the size, the decode version and (when not PIL) the
    decoder, whose pixels differ slightly."""
    return stable_hash(["images", DECODE_VERSION, fingerprint, size] + ([decoder] if decoder != "pil" else []))


def file_version(decoder: str) -> int | str:
    """The per-file cache's version: the decode version, and the decoder when it is not PIL."""
    return DECODE_VERSION if decoder == "pil" else f"{DECODE_VERSION}-{decoder}"


def _decode_files(listing: Listing, shas: list[str | None], size: int, store: ArtifactStore,
                  progress: bool, decoder: str = "pil") -> tuple[list[np.ndarray | str], int]:
    """Each file's (3,S,S) uint8 or its skip reason, cached per content; new files are decoded in chunks.
    Returns (results, how many files were decoded now)."""
    assert listing.files is not None and listing.root is not None
    results: list[np.ndarray | str | None] = [None] * len(shas)
    todo = []
    for i, sha in enumerate(shas):
        got = store.get_file(sha, size, file_version(decoder)) if sha else None
        if got is not None:
            results[i] = got
        elif sha is None:
            results[i] = "missing, unreadable or broken symlink"
        else:
            todo.append(i)
    bar = tqdm(total=len(todo), desc="decode (nvJPEG)" if decoder == "nvjpeg" else "decode", unit="img",
               disable=not progress or not todo, leave=False)
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        files = [listing.files[i] for i in chunk]
        if decoder == "nvjpeg":
            from benchmark.nvjpeg import decode_files

            decoded = decode_files(files, size)[0]
        else:
            decoded = decode_paths(files, size)
        for i, res in zip(chunk, decoded):
            store.put_file(shas[i], size, file_version(decoder), res)  # type: ignore[arg-type]
            results[i] = res
        bar.update(len(chunk))
    bar.close()
    return results, len(todo)  # type: ignore[return-value]


def decode_listing(listing: Listing, size: int, key: str, shas: list[str | None] | None,
                   store: ArtifactStore, progress: bool = True, decoder: str = "pil") -> dict[str, object]:
    """Decode a listing into the image store under ``key``. Returns the store's meta."""
    if listing.files is None:
        assert listing.pixels is not None
        results: list[np.ndarray | str] = [decode_pil(Image.fromarray(px), size) for px in listing.pixels()]
        decoded_now = len(results)
    else:
        results, decoded_now = _decode_files(listing, shas or [], size, store, progress, decoder)
    kept = [i for i, r in enumerate(results) if not isinstance(r, str)]
    skipped = [(listing.names[i], str(r)) for i, r in enumerate(results) if isinstance(r, str)]
    if not kept:
        raise BadInput(f"bad dataset {str(listing.root or listing.names[:1])!r}: no decodable image among "
                         f"{len(results)} files")
    gray = True
    with store.image_writer(key, (len(kept), 3, size, size)) as arr:
        for j, i in enumerate(kept):
            arr[j] = results[i]
            gray = gray and is_gray(arr[j])
    meta = {"names": [listing.names[i] for i in kept], "skipped": skipped, "grayscale": gray,
            "size": size, "decode_version": DECODE_VERSION, "decoder": decoder}
    store.put_images_meta(key, meta)
    return {**meta, "decoded_now": decoded_now}


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


def labels_record(listing: Listing) -> dict[str, object]:
    """The labels artifact of a listing: names, class names, and each name's class index (-1 = unlabeled)."""
    classes = listing.class_names()
    index = {c: i for i, c in enumerate(classes)}
    return {"names": list(listing.names), "class_names": classes,
            "labels": [index[x] if x is not None else -1 for x in listing.labels],
            "label_source": listing.label_source}


def labels_key(record: dict[str, object]) -> str:
    return stable_hash(["labels", record["names"], record["class_names"], record["labels"]])


def align_labels(names: list[str], record: dict[str, object] | None) -> np.ndarray:
    """Class indices (len(names),) of ``names`` from a labels record; -1 for unlabeled or unlisted names."""
    if not record:
        return np.full(len(names), -1, np.int64)
    by_name = dict(zip(record["names"], record["labels"]))  # type: ignore[call-overload]
    return np.array([by_name.get(n, -1) for n in names], np.int64)


def open_image_set(store: ArtifactStore, images_key: str, labels_key: str | None) -> ImageSet:
    """The decoded store (memory-mapped) with labels aligned to its kept images."""
    got = store.get_images(images_key)
    if got is None:
        raise RuntimeError(f"image store {images_key} is missing from {store.root}")
    arr, meta = got
    names = list(meta["names"])
    rec = store.get_labels(labels_key) if labels_key else None
    classes = list(rec["class_names"]) if rec else []
    return ImageSet(arr, align_labels(names, rec), names, classes, bool(meta["grayscale"]), images_key,
                    [tuple(s) for s in meta["skipped"]])


def load_image_set(listing: Listing, size: int, store: ArtifactStore, progress: bool = False) -> ImageSet:
    """List -> hash -> decode (what is not in the store yet) -> the image set with its labels."""
    fingerprint, shas = listing_fingerprint(listing, store)
    key = images_key(fingerprint, size)
    if store.get_images(key) is None:
        decode_listing(listing, size, key, shas, store, progress)
    rec = labels_record(listing)
    lkey = labels_key(rec)
    store.put_labels(lkey, rec)
    return open_image_set(store, key, lkey)
