"""Errors every command shares (no torch here)."""


class UsageError(Exception):
    """Bad input on the command line: one line, exit status 2."""
