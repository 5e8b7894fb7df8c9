"""What the command-line modules share: the usage error (exit 2), the BadInput bridge, the parser class."""
from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

from benchmark.interfaces import BadInput, Constraint

RESULTS = Path(__file__).resolve().parents[2] / "results"
PATH = Constraint("path")
DEVICE = Constraint("choice", choices=("auto", "cpu", "cuda"))


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


class Typed:
    """An argparse ``type``: a flag's text parsed by its constraint's kind and checked against it (argparse's
    error names the flag: "argument --k: bad value 'x': allowed: an integer >= 1"). Comma lists (``names``,
    ``ints``) stay text here; the spec checks each element. The generated negative tests find every flag's
    constraint here (``action.type.constraint``)."""

    def __init__(self, constraint: Constraint, label: str, convert: Callable[[str], Any] | None = None) -> None:
        self.constraint, self.label, self.convert = constraint, label, convert
        self.__name__ = constraint.kind

    def __call__(self, text: str) -> Any:
        c = self.constraint
        if self.convert is not None:
            return self.convert(text)
        if c.auto and text.strip().lower() == "auto":
            return "auto"
        bad = f"bad {self.label} {text!r}: allowed: {c.allowed()}"
        if c.kind in ("names", "ints"):
            if not text.strip(" ,"):
                raise argparse.ArgumentTypeError(bad)
            return text
        value: Any = text
        if c.kind in ("int", "real"):
            try:
                value = int(text) if c.kind == "int" else float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(bad) from None
        try:
            c.check(self.label, value)
        except BadInput as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value


def add_arg(p: argparse.ArgumentParser, *names: str, constraint: Constraint, **kw: Any) -> argparse.Action:
    """``add_argument`` with a declared constraint, checked as the text is parsed; messages name ``label``
    (default: the flag)."""
    label = kw.pop("label", None) or names[-1]
    return p.add_argument(*names, type=Typed(constraint, label, kw.pop("convert", None)), **kw)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        head, sep, rest = message.partition(": ")
        if head.startswith("argument ") and rest.startswith("bad "):
            message = rest  # our own message already names the flag
        raise UsageError(message.splitlines()[0] if message else "bad command line")


def ints_of(flag: str, text: str, c: Constraint) -> tuple[int, ...]:
    """A comma list of integers checked against ``c`` (kind ``ints``); UsageError naming the first bad one."""
    try:
        values = tuple(int(v) for v in _split(text))
    except ValueError:
        raise UsageError(f"bad {flag} {text!r}: allowed: {c.allowed()}") from None
    with user_errors():
        c.check(flag, values if values else None)
    return values


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())
