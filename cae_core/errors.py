"""Errors that reach the user as a one-line message (CLI exit code 2, app message)."""


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
