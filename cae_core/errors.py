"""Errors that reach the user as a one-line message (CLI exit code 2, app message)."""


class CaeError(ValueError):
    """A request that cannot be met: bad input, missing files, offline downloads.

    The message is a single sentence that names the problem and, where there is one,
    the way forward. The CLI prints it and exits with code 2; the app shows it.
    """
