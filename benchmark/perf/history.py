"""Bench histories (JSON lines): reading them and comparing one against another per key and fingerprint."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmark.interfaces import BadInput


def load_history(path: Path) -> list[dict[str, Any]]:
    """The entries of a bench history (JSON lines). BadInput for a missing or empty file, a line that is not
    a JSON object, or an entry without ``key`` / ``fingerprint.id`` or with an impossible throughput."""
    if not path.is_file():
        raise BadInput(f"bad history file {str(path)!r}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"bad history file {str(path)!r}: unreadable ({type(exc).__name__})") from None
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            raise BadInput(f"bad history file {str(path)!r}: line {i} is not JSON") from None
        if not isinstance(rec, dict):
            raise BadInput(f"bad history file {str(path)!r}: line {i} is {type(rec).__name__}, need a JSON object "
                           "as `bench --out` writes")
        fp = rec.get("fingerprint")
        if not isinstance(rec.get("key"), str) or not isinstance(fp, dict) or "id" not in fp:
            missing = "key" if not isinstance(rec.get("key"), str) else "fingerprint.id"
            raise BadInput(f"bad history file {str(path)!r}: line {i} has no {missing!r}; need entries as "
                           "`bench --out` writes them")
        ips = rec.get("img_per_s")
        if ips is not None and (isinstance(ips, bool) or not isinstance(ips, (int, float))
                                or not math.isfinite(ips) or ips <= 0):
            raise BadInput(f"bad history file {str(path)!r}: line {i} ({rec['key']}) has img_per_s {ips!r}; need a "
                           "finite number > 0")
        out.append(rec)
    if not out:
        raise BadInput(f"bad history file {str(path)!r}: no entries in it")
    return out


def _machine(fp: dict[str, Any], ignore: frozenset[str]) -> str:
    if not ignore:
        return str(fp.get("id"))
    return json.dumps({k: v for k, v in fp.items() if k != "id" and k not in ignore}, sort_keys=True)


def fingerprint_diff(a: dict[str, Any], b: dict[str, Any], ignore: frozenset[str] = frozenset()) -> list[str]:
    """The fingerprint fields that differ, as 'field (old -> new)'."""
    keys = sorted((set(a) | set(b)) - {"id"} - ignore)
    return [f"{k} ({a.get(k)} -> {b.get(k)})" for k in keys if a.get(k) != b.get(k)] or \
        [f"id ({a.get('id')} -> {b.get('id')})"]


def compare(baseline: list[dict[str, Any]], new: list[dict[str, Any]], max_regression: float,
            ignore: frozenset[str] = frozenset()) -> tuple[list[dict[str, Any]], list[str], bool]:
    """New/old throughput ratio per benchmark key with the same fingerprint (the latest entry of each),
    the fingerprint compared without the fields in ``ignore`` (e.g. torch, when a GPU machine's own torch
    differs from the pin). Returns (rows, notes on entries not compared naming the fields that differ,
    whether any regressed by more than max_regression %)."""
    def latest(hist: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["key"], _machine(r["fingerprint"], ignore)): r for r in hist if "img_per_s" in r}

    old, cur = latest(baseline), latest(new)
    old_by_key = {k: r for (k, _), r in old.items()}
    rows, notes, failed = [], [], False
    for (key, fid), rec in sorted(cur.items()):
        base = old.get((key, fid))
        if base is None:
            other = old_by_key.get(key)
            why = ("fingerprint differs in "
                   + ", ".join(fingerprint_diff(other["fingerprint"], rec["fingerprint"], ignore))
                   if other is not None else "not in baseline")
            notes.append(f"{key}: {why}, not compared")
            continue
        ratio = rec["img_per_s"] / base["img_per_s"]
        bad = ratio < 1.0 - max_regression / 100.0
        failed |= bad
        rows.append({"key": key, "old_img_per_s": base["img_per_s"], "new_img_per_s": rec["img_per_s"],
                     "ratio": ratio, "verdict": "REGRESSED" if bad else "ok"})
    return rows, notes, failed
