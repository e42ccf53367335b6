"""A clock the test sets: pass it where code takes a `clock` callable, then move `now`."""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Clock"]

T = TypeVar("T", int, float)


class Clock(Generic[T]):
    """Returns `now` (seconds, or epoch milliseconds: whatever the code under test counts in)."""

    def __init__(self, now: T) -> None:
        self.now = now

    def __call__(self) -> T:
        return self.now
