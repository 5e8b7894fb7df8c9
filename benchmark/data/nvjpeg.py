"""JPEG decoding on the GPU (nvJPEG through ``torchvision.io.decode_jpeg(device="cuda")``) for photo folders,
chosen automatically on CUDA, with the PIL path as the per-file fallback.

The CPU still parses every file first, as the PIL path does (``parse``): existence and size, the
decompression-bomb limit, the EXIF orientation (corrupt metadata is a skip), and what nvJPEG
should not get: anything but a baseline/progressive 3- or 1-channel JPEG (PNG, CMYK/YCCK, other formats)
and files without the end-of-image marker (truncated: the PIL path reports them with its reason). A
batch the GPU decoder rejects is retried file by file, and a file it rejects goes to the PIL path, so the
skip rules and reasons of skipped.csv stay the PIL path's. Decoded images are oriented, resized to S x S
(bilinear, antialiased, whole image as in the PIL path) on the device, and copied back as uint8. The
decoder is part of the image key: its pixels differ slightly from PIL's (draft-mode DCT scaling there)."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.decode import MAX_PIXELS, decode_paths

BATCH = 64  # files per decode_jpeg call (the setting of the measured H100 figure in docs/gpu.md)


def select_decoder(device: str, files: bool) -> str:
    """``nvjpeg`` for photo folders on CUDA when torchvision can decode there, else ``pil``."""
    if device != "cuda" or not files:
        return "pil"
    try:
        io = importlib.import_module("torchvision.io")
    except ImportError:
        return "pil"
    return "nvjpeg" if hasattr(io, "decode_jpeg") else "pil"


@dataclass(frozen=True)
class Parsed:
    data: bytes
    orientation: int  # EXIF 1..8
    gray: bool


def parse(path: str | Path) -> Parsed | None:
    """The CPU's checks of one file for the GPU path: Parsed when nvJPEG should decode it, None when the
    PIL path must (it then raises the DecodeError with its reason for a bad file)."""
    import warnings

    from PIL import Image

    p = Path(path)
    try:
        data = p.read_bytes()
        if len(data) < 4 or data[:2] != b"\xff\xd8" or data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
            return None  # not a JPEG, or truncated: the PIL path decides and words the reason
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with Image.open(p) as im:
                if im.format != "JPEG" or im.mode not in ("RGB", "L") or im.width * im.height > MAX_PIXELS:
                    return None
                orientation = int(im.getexif().get(0x0112) or 1)
        if any("exif" in str(w.message).lower() for w in caught) or not 1 <= orientation <= 8:
            return None
        return Parsed(data, orientation, im.mode == "L")
    except Exception:  # noqa: BLE001  anything odd: the PIL path reports it
        return None


def orient(img: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation to (C, H, W), as PIL's ImageOps.exif_transpose does."""
    flip_w, flip_h, transpose = {1: (0, 0, 0), 2: (1, 0, 0), 3: (1, 1, 0), 4: (0, 1, 0), 5: (0, 0, 1),
                                 6: (1, 0, 1), 7: (1, 1, 1), 8: (0, 1, 1)}[orientation]
    if transpose:
        img = img.transpose(1, 2)
    if flip_w:
        img = img.flip(2)
    if flip_h:
        img = img.flip(1)
    return img


def resize_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, S, S) uint8, bilinear with antialiasing, on the tensor's device."""
    x = F.interpolate(img[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x[0].round_().clamp_(0, 255).to(torch.uint8)


def decode_batch(items: list[Parsed], size: int, device: str = "cuda") -> list[np.ndarray | None]:
    """Decode parsed JPEGs on ``device`` (the CPU: the same code as its tested equivalent): each file's
    (3, S, S) uint8, or None where the decoder rejected it (the caller falls back to PIL)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not items:
        return []
    raw = [torch.frombuffer(bytearray(it.data), dtype=torch.uint8) for it in items]
    try:
        imgs = decode_jpeg(raw, mode=ImageReadMode.RGB, device=device)
    except Exception:  # noqa: BLE001  one bad file fails the batch: retry one by one
        if len(items) == 1:
            return [None]
        return [r for it in items for r in decode_batch([it], size, device)]
    out = [resize_square(orient(img, it.orientation), size) for img, it in zip(imgs, items, strict=False)]
    return [t.cpu().numpy() for t in out]


def decode_files(paths: list[Path], size: int, device: str = "cuda") -> tuple[list[np.ndarray | str], int]:
    """Each file's (3, S, S) uint8 or skip reason: nvJPEG in batches of BATCH for what ``parse`` accepts,
    the PIL path (on all cores) for the rest and for what the GPU rejects. Returns (results, files that
    went to the PIL path)."""
    results: list[np.ndarray | str | None] = [None] * len(paths)
    parsed = [parse(p) for p in paths]
    gpu = [(i, it) for i, it in enumerate(parsed) if it is not None]
    for start in range(0, len(gpu), BATCH):
        chunk = gpu[start:start + BATCH]
        for (i, _), arr in zip(chunk, decode_batch([it for _, it in chunk], size, device), strict=False):
            results[i] = arr
    fallback = [i for i, r in enumerate(results) if r is None]
    for i, res in zip(fallback, decode_paths([paths[i] for i in fallback], size), strict=False):
        results[i] = res
    return cast("list[np.ndarray | str]", results), len(fallback)  # every entry is set above
