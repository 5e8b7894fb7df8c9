"""The layer order, no circles, module and function sizes: on the tree, and shown to fail when broken."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests import architecture

ROOT = Path(__file__).resolve().parents[1]


def test_the_tree_keeps_the_house_rules() -> None:
    assert architecture.check(ROOT) == []


def test_at_most_three_long_functions_each_with_a_reason() -> None:
    assert len(architecture.LONG_FUNCTIONS) <= 3
    assert all(reason.strip() for reason in architecture.LONG_FUNCTIONS.values())


def test_function_level_imports_are_read() -> None:
    found = architecture.imports(ROOT)
    assert len(found) > 100
    # the decode stage imports the image store inside its runner: a function-level import
    assert any(i.source == "benchmark.pipeline.stages" and i.target == "benchmark.data.images" for i in found)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    for top in ("benchmark", "registry"):
        shutil.copytree(ROOT / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_an_injected_upward_import_fails(tree: Path) -> None:
    _append(tree / "benchmark/scoring/metrics.py", "\n\ndef _late():\n    from benchmark.driver import run\n")
    found = architecture.check(tree)
    assert any("benchmark.scoring.metrics" in v and "upward" in v for v in found), found


def test_an_import_between_peers_fails(tree: Path) -> None:
    _append(tree / "benchmark/train/loop.py", "\nfrom benchmark.probe import protocol\n")
    assert any("peers" in v for v in architecture.check(tree))


def test_registry_importing_the_harness_fails(tree: Path) -> None:
    _append(tree / "registry/base.py", "\nfrom benchmark.config import specs\n")
    assert any("registry may import only" in v for v in architecture.check(tree))


def test_an_injected_circle_fails(tree: Path) -> None:
    (tree / "benchmark/data/cycle_a.py").write_text("from benchmark.data import cycle_b\n")
    (tree / "benchmark/data/cycle_b.py").write_text("def f():\n    import benchmark.data.cycle_a\n")
    found = architecture.check(tree)
    assert "import circle: benchmark.data.cycle_a -> benchmark.data.cycle_b" in found, found


def test_a_long_module_and_a_long_function_fail(tree: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(architecture.MAX_FUNCTION_LINES + 1))
    (tree / "benchmark/data/long.py").write_text("def f():\n" + body + "\n" + "\n" * 400)
    found = architecture.check(tree)
    assert any(v.startswith("benchmark.data.long: ") for v in found)
    assert any(v.startswith("benchmark.data.long.f: ") for v in found)
