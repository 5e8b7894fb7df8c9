"""What the command-line modules share: the usage error (exit 2), the BadInput bridge, the parser class."""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NoReturn

from benchmark.interfaces import BadInput

RESULTS = Path(__file__).resolve().parents[2] / "results"


class UsageError(Exception):
    """A user-facing problem with the command line; printed as one line, exit code 2."""


@contextmanager
def user_errors() -> Iterator[None]:
    """BadInput raised by the library for what the user passed becomes a one-line usage error (exit 2); any
    other exception is a bug and stays one (exit 1)."""
    try:
        yield
    except BadInput as exc:
        raise UsageError(str(exc)) from None


def choices_of(flag: str, text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A comma list of names, each one of ``allowed``; UsageError naming the first bad one."""
    names = tuple(_split(text))
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise UsageError(f"bad {flag} {(bad[0] if bad else text)!r}: allowed: a comma list of {', '.join(allowed)}")
    return names


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise UsageError(message)


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())
