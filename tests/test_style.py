"""The tools that hold the house style, run by ``make test``: ruff (E, F, I, B, BLE; line length 120), mypy on
``benchmark`` and ``registry``, and a budget of suppressions, each with its reason."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ROOT

MAX_SUPPRESSIONS = 20  # type-ignore and noqa comments and per-file ignores together
SUPPRESSION = re.compile(r"#\s*(type:\s*ignore(\[[^\]]*\])?|noqa(:\s*[A-Z0-9, ]+)?)(?P<reason>.*)$")


def _sources() -> list[Path]:
    return [p for top in ("benchmark", "registry", "tests", "benchmarks") for p in sorted((ROOT / top).rglob("*.py"))
            if "__pycache__" not in p.parts]


def suppressions(paths: list[Path]) -> list[tuple[str, str]]:
    """(place, reason) of every type-ignore and noqa comment."""
    out = []
    for path in paths:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = SUPPRESSION.search(line)
            if m:
                place = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                out.append((f"{place}:{n}", m.group("reason").strip(" #")))
    return out


def _per_file_ignores() -> int:
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"\[tool\.ruff\.lint\.per-file-ignores\](.*?)(\n\[|\Z)", text, re.S)
    return len([line for line in block.group(1).splitlines() if "=" in line]) if block else 0


def test_ruff_finds_nothing() -> None:
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_mypy_finds_nothing() -> None:
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def test_suppressions_stay_few_and_each_says_why() -> None:
    found = suppressions(_sources())
    assert len(found) + _per_file_ignores() <= MAX_SUPPRESSIONS, found
    unexplained = [place for place, reason in found if len(reason) < 8]
    assert not unexplained, f"a suppression needs its reason after it: {unexplained}"
    assert "ignore_errors" not in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize("comment, counted", [("type" + ": ignore[arg-type]  numpy stub", True),
                                              ("noqa" + ": BLE001  policy", True), ("a comment", False)])
def test_the_suppression_counter_sees_both_kinds(tmp_path: Path, comment: str, counted: bool) -> None:
    f = tmp_path / "m.py"
    f.write_text(f"x = 1  # {comment}\n")
    assert bool(suppressions([f])) is counted
