"""The one error type for a user's mistakes.

Every error that a user can fix by changing an input (a config key, a file, an
option, a monitor profile, a trial file) is an :class:`EigdistError`; its
message names the bad value and what is allowed. The command line prints these
as one line and exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EigdistError(ValueError):
    """A user error: bad input, named with what is allowed. Subclasses say which stage."""


def in_context(exc: BaseException, where: str) -> EigdistError:
    """``exc`` as an :class:`EigdistError` whose message starts with ``where``; the cause is kept.

    Use as ``raise in_context(exc, "images[2]") from exc``.
    """
    return EigdistError(f"{where}: {exc}")
