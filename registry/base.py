"""A small generic registry: members register with a decorator, names are snake_case strings."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
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

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._members: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        if not name or name != name.strip() or " " in name:
            raise ValueError(f"bad {self.kind} name {name!r}: use a snake_case word")

        def deco(obj: T) -> T:
            if name in self._members:
                raise ValueError(f"duplicate {self.kind} name {name!r}: already registered")
            self._members[name] = obj
            return obj

        return deco

    def names(self) -> list[str]:
        return list(self._members)

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def get(self, name: str) -> T:
        try:
            return self._members[name]
        except KeyError:
            raise UnknownNameError(unknown_message(self.kind, name, self.names())) from None
