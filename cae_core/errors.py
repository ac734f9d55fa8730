"""Errors that reach the user as a one-line message (CLI exit code 2, app message), and the checks
that options share before such a message."""

from __future__ import annotations

import math
import numbers


class CaeError(ValueError):
    """A request that cannot be met: bad input, missing files, offline downloads.

    The message is a single sentence that names the problem and, where there is one,
    the way forward. The CLI prints it and exits with code 2; the app shows it.
    """


def quoted(value: object, limit: int = 80) -> str:
    """``repr(str(value))`` for a message, cut to about ``limit`` characters: a value typed or linked by a
    user (a demo's name from a URL, say) can be arbitrarily long, and the message must stay one line."""
    text = str(value)
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"… ({len(text):,} characters)"


def is_positive_integer(value) -> bool:
    """An integer of at least one (not a bool, whose True would pass for 1)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def is_positive_number(value) -> bool:
    """A finite real number above zero: not a bool, a string, NaN or infinity (each would run and mislead)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0


FLOAT32_MAX = 3.4028234663852886e38


def is_temperature(value) -> bool:
    """A softmax temperature t the engine can divide by: positive, finite, and 2 / t (the widest cosine gap
    over t) finite in float32, where the logits are computed; below ~6e-39 they overflow to NaN."""
    return is_positive_number(value) and 2 / value < FLOAT32_MAX
