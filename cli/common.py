"""Small pieces shared by the command modules."""

from __future__ import annotations


class CommandError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""
