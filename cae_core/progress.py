"""How long work reports how far it is: one callback type for the engine, the CLI and the explorer."""

from __future__ import annotations

from typing import Callable

Progress = Callable[[str, float, str], None]
"""``progress(stage, fraction, message)``: ``fraction`` in [0, 1] of the stage named."""


def no_progress(stage: str, fraction: float, message: str) -> None:
    """The callback used where the caller passes none."""
