"""The test suite: it mirrors the packages (tests/benchmark/<package>, tests/registry); tests/system holds the
slow system tests (processes, signals, Ray, integrity, fail-loud); the top level checks the whole project."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
