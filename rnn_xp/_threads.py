"""Per-thread state: what a forward leaves for its backward, and what a backward leaves for the optimizer.

A layer shared by threads keeps its parameters shared, but the forward cache and the gradients are per thread: each
thread's ``backward`` differentiates that thread's last forward and fills that thread's ``grads``. (Kept on the
instance instead, two threads interleaving forward and backward got each other's gradients, silently.)

Usage: a class derives from :class:`PerThreadState` and declares ``grads = PerThread(dict)``; ``self.grads = {...}``
then sets the calling thread's value, and a thread that never set it reads ``dict()``.
"""

from __future__ import annotations

import importlib
import threading
import types
from collections.abc import Callable
from typing import Any

_SLOT = "_per_thread"


class PerThread:
    """A data descriptor whose value is kept per thread and per instance; ``default()`` gives a thread's first
    value."""

    def __init__(self, default: Callable[[], Any]) -> None:
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        local = _local(instance)
        try:
            return getattr(local, self.name)
        except AttributeError:
            value = self.default()
            setattr(local, self.name, value)
            return value

    def __set__(self, instance: Any, value: Any) -> None:
        setattr(_local(instance), self.name, value)


class PerThreadState:
    """Base of classes with :class:`PerThread` attributes: copies and pickles (Dask ships models to workers) carry
    the shared state only, and start with every thread's per-thread state at its default."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop(_SLOT, None)
        for name, value in state.items():  # the array namespace (a module) travels by name
            if isinstance(value, types.ModuleType):
                state[name] = _ModuleName(value.__name__)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            if isinstance(value, _ModuleName):
                state[name] = importlib.import_module(value.name)
        self.__dict__.update(state)

    def forget_every_thread(self) -> None:
        """Reset the per-thread state of every thread (e.g. when the parameters move to another device)."""
        self.__dict__.pop(_SLOT, None)


class _ModuleName:
    def __init__(self, name: str) -> None:
        self.name = name


def _local(instance: Any) -> threading.local:
    local = instance.__dict__.get(_SLOT)
    if local is None:
        # dict.setdefault is atomic: two threads arriving here together end up with the same threading.local
        local = instance.__dict__.setdefault(_SLOT, threading.local())
    return local
