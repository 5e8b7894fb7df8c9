"""A small generic registry: members register with a decorator, names are snake_case strings.

A registry given a package discovers its members itself: every module in the package is imported on
first use (and again when a new module file appears), so no hand-written import list can forget one."""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Callable, Generic, Iterable, TypeVar

from benchmark.interfaces import BadInput

T = TypeVar("T")


class UnknownNameError(BadInput):
    """Raised for a name no registry member has; the message lists the known names."""


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The closest match to ``name`` among ``choices`` (or None when nothing is close)."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_message(kind: str, name: str, known: Iterable[str], pool: Iterable[str] | None = None) -> str:
    """One line: the bad value, the allowed values and the closest match."""
    known = list(known)
    match = closest(name, pool if pool is not None else known)
    hint = f"; did you mean {match!r}?" if match else ""
    return f"unknown {kind} {name!r}; allowed: {', '.join(known)}{hint}"


class Registry(Generic[T]):
    """Maps names to factories. A duplicate name is an error; an unknown one lists the known names."""

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package  # dotted name of the package whose modules hold the members
        self._members: dict[str, T] = {}
        self._imported: set[str] = set()
        self.modules: dict[str, str] = {}  # member name -> module that registered it

    def discover(self) -> None:
        """Import every module of ``package`` not imported yet (each registers its members)."""
        if self.package is None:
            return
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.startswith("_") or info.name in self._imported:
                continue
            self._imported.add(info.name)
            importlib.import_module(f"{self.package}.{info.name}")

    def register(self, name: str) -> Callable[[T], T]:
        if not name or name != name.strip() or " " in name:
            raise ValueError(f"bad {self.kind} name {name!r}: use a snake_case word")

        def deco(obj: T) -> T:
            if name in self._members:
                raise ValueError(f"duplicate {self.kind} name {name!r}: already registered")
            self._members[name] = obj
            self.modules[name] = getattr(obj, "__module__", "")
            return obj

        return deco

    def names(self) -> list[str]:
        self.discover()
        return list(self._members)

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._members

    def get(self, name: str) -> T:
        self.discover()
        try:
            return self._members[name]
        except KeyError:
            raise UnknownNameError(unknown_message(self.kind, name, self.names())) from None
