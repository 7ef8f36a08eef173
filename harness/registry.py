"""Name -> factory maps, so users add adapters, checks and perturbations without editing the core.

A registry is a plain dict with a decorator and an error that lists what is known, because the
most common mistake with a registry is a typo in a name in a YAML file.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from harness.errors import TollgateInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named map of factories of one kind (``adapter``, ``check``, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator: ``@checks.register("exact_match")``. Re-registering a name is an error
        unless ``replace=True``, so two plugins cannot silently shadow each other."""

        def decorate(fn: T) -> T:
            if name in self._items and not replace and self._items[name] is not fn:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = fn
            return fn

        return decorate

    def get(self, name: str, *, file: str | None = None, line: int | None = None,
            field: str | None = None) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise TollgateInputError(
                f"unknown {self.kind} '{name}'.{hint} Known: {', '.join(sorted(self._items))}.",
                file=file, line=line, field=field,
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)
