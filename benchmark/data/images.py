"""The uint8 image store: each data set decoded once (``benchmark.data.decode``) into (N,3,S,S).

Files are keyed by their content (sha256 of the bytes; a memo of path, size, mtime and inode spares
re-hashing unchanged files) and decoded one file at a time into the store, so adding a day's photos
decodes only the new ones; the image store of a data set is a memory-mapped (N,3,S,S) array."""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from benchmark.data import nvjpeg
from benchmark.data.decode import DECODE_VERSION, decode_paths, decode_pil, is_gray
from benchmark.interfaces import BadInput, Listing, stable_hash
from benchmark.store.artifacts import ArtifactStore
from benchmark.store.files import sha256_file

CHUNK = 2048  # files decoded per round (bounded memory for any folder size)


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


def content_hashes(listing: Listing, store: ArtifactStore) -> list[str | None]:
    """sha256 of every listed file (None: unreadable). A memo keyed by path, size, mtime, ctime and inode
    spares re-reading unchanged files (ctime changes on every write and cannot be set back, unlike mtime)."""
    assert listing.files is not None and listing.root is not None
    root_id = stable_hash(str(Path(listing.root).resolve()))
    memo = store.get_memo(root_id)
    out: list[str | None] = [None] * len(listing.names)
    todo: list[tuple[int, list[int]]] = []
    for i, (name, path) in enumerate(zip(listing.names, listing.files, strict=False)):
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
        for (i, stamp), sha in zip(todo, shas, strict=False):
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
                  progress: bool, decoder: str = "pil") -> tuple[list[str | None], int]:
    """Each file's skip reason, or None where its (3,S,S) uint8 is in the per-file cache (by content); new
    files are decoded in chunks and cached. No decoded image is held beyond its chunk: the image store is
    filled from the cache afterwards. Returns (results, how many files were decoded now)."""
    assert listing.files is not None and listing.root is not None
    results: list[str | None] = [None] * len(shas)
    todo: list[tuple[int, str]] = []  # (position, sha) of the files to decode now
    for i, sha in enumerate(shas):
        got = store.get_file(sha, size, file_version(decoder)) if sha else None
        if isinstance(got, str):
            results[i] = got
        elif sha is None:
            results[i] = "missing, unreadable or broken symlink"
        elif got is None:
            todo.append((i, sha))
    bar = tqdm(total=len(todo), desc="decode (nvJPEG)" if decoder == "nvjpeg" else "decode", unit="img",
               disable=not progress or not todo, leave=False)
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        files = [listing.files[i] for i, _ in chunk]
        if decoder == "nvjpeg":
            decoded = nvjpeg.decode_files(files, size)[0]
        else:
            decoded = decode_paths(files, size)
        for (i, sha), res in zip(chunk, decoded, strict=False):
            store.put_file(sha, size, file_version(decoder), res)
            results[i] = res if isinstance(res, str) else None
        bar.update(len(chunk))
    bar.close()
    return results, len(todo)


def _cached_image(store: ArtifactStore, sha: str | None, size: int, decoder: str) -> np.ndarray:
    got = store.get_file(sha, size, file_version(decoder)) if sha else None
    if not isinstance(got, np.ndarray):
        raise RuntimeError(f"the decoded file {sha} vanished from the per-file cache of {store.root} during the decode")
    return got


class NoDecodableImage(BadInput):
    """A listing of which no file decodes; ``skipped`` says why for each (the run folder lists them)."""

    def __init__(self, message: str, skipped: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.skipped = skipped


def decode_listing(listing: Listing, size: int, key: str, shas: list[str | None] | None,
                   store: ArtifactStore, progress: bool = True, decoder: str = "pil") -> dict[str, object]:
    """Decode a listing into the image store under ``key``. Returns the store's meta."""
    results: list[np.ndarray | str | None]
    if listing.files is None:
        assert listing.pixels is not None
        results = [decode_pil(Image.fromarray(px), size) for px in listing.pixels()]
        decoded_now = len(results)
    else:
        results, decoded_now = cast("tuple[list[np.ndarray | str | None], int]",
                                    _decode_files(listing, shas or [], size, store, progress, decoder))
    kept = [i for i, r in enumerate(results) if not isinstance(r, str)]
    skipped = [(listing.names[i], str(r)) for i, r in enumerate(results) if isinstance(r, str)]
    if not kept:
        raise NoDecodableImage(f"bad dataset {str(listing.root or listing.names[:1])!r}: no decodable image "
                               f"among {len(results)} files", skipped)
    gray = True
    with store.image_writer(key, (len(kept), 3, size, size)) as arr:
        for j, i in enumerate(kept):
            got = results[i]
            arr[j] = got if got is not None else _cached_image(store, (shas or [])[i], size, decoder)
            gray = gray and is_gray(arr[j])
    meta = {"names": [listing.names[i] for i in kept], "skipped": skipped, "grayscale": gray,
            "size": size, "decode_version": DECODE_VERSION, "decoder": decoder}
    store.put_images_meta(key, meta)
    return {**meta, "decoded_now": decoded_now}


def labels_record(listing: Listing) -> dict[str, Any]:
    """The labels artifact of a listing: names, class names, and each name's class index (-1 = unlabeled)."""
    classes = listing.class_names()
    index = {c: i for i, c in enumerate(classes)}
    return {"names": list(listing.names), "class_names": classes,
            "labels": [index[x] if x is not None else -1 for x in listing.labels],
            "label_source": listing.label_source}


def labels_key(record: dict[str, object]) -> str:
    return stable_hash(["labels", record["names"], record["class_names"], record["labels"]])


def align_labels(names: list[str], record: dict[str, Any] | None) -> np.ndarray:
    """Class indices (len(names),) of ``names`` from a labels record; -1 for unlabeled or unlisted names."""
    if not record:
        return np.full(len(names), -1, np.int64)
    by_name = dict(zip(record["names"], record["labels"], strict=False))
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


def warn_small_classes(labels: np.ndarray, class_names: list[str], k: int) -> None:
    """The probe needs k labeled images per class plus one to test on; say which classes fall short."""
    names, counts = np.unique(labels[labels >= 0], return_counts=True)
    short = [f"{class_names[c]} ({n})" for c, n in zip(names, counts, strict=False) if n < k + 1]
    if short:
        warnings.warn(f"labels: {len(short)} classes have fewer than {k + 1} labeled images, e.g. {short[0]}; "
                      f"the probe uses k = {max(int(counts.min()) - 1, 0)} per class", stacklevel=2)
