"""How long work reports how far it is: one callback type for the engine, the CLI and the explorer."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

Progress = Callable[[str, float, str], None]
"""``progress(stage, fraction, message)``: ``fraction`` in [0, 1] of the stage named."""


def no_progress(stage: str, fraction: float, message: str) -> None:
    """The callback used where the caller passes none."""


def timed(function: Callable[..., T], *args, **kwargs) -> tuple[T, float]:
    """``(function(*args, **kwargs), seconds it took)`` by the monotonic clock."""
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start
