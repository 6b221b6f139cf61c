"""A tiny named registry shared by every plug-in kind (detectors, embedders, ...).

Plug-ins register a factory under a name so that configuration files and the CLI can choose
one by name without importing its class.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Generic, TypeVar

from openfrt.errors import UnknownPluginError

T = TypeVar("T")


class Registry(Generic[T]):
    """Factories of one plug-in kind, by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Class or function decorator that makes a plug-in available as ``name``."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            self._factories[name] = factory
            return factory

        return decorate

    def create(self, name: str, **options: Any) -> T:
        """Instantiate the plug-in registered as ``name`` with its options."""
        try:
            factory = self._factories[name]
        except KeyError:
            raise UnknownPluginError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}") from None
        return factory(**options)

    def accepts(self, name: str, option: str) -> bool:
        """Whether the plug-in ``name`` takes ``option`` (so shared options like ``threads``
        reach only the plug-ins that understand them)."""
        factory = self._factories.get(name)
        return factory is not None and option in inspect.signature(factory).parameters

    def names(self) -> list[str]:
        return sorted(self._factories)
