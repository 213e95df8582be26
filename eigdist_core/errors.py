"""The one error type for a user's mistakes.

Every error that a user can fix by changing an input (a config key, a file, an
option, a monitor profile, a trial file) is an :class:`EigdistError`; its
message names the bad value and what is allowed. The command line prints these
as one line and exits 2; anything else is a bug and keeps its traceback.

:class:`EigdistError` subclasses ``ValueError`` so that API callers may catch a bad
argument the usual way; the command line catches :class:`EigdistError` itself, never
``ValueError``, so a foreign ``ValueError`` (numpy, pandas, json, PsychoPy) keeps its traceback.
"""

from __future__ import annotations


class EigdistError(ValueError):
    """A user error: bad input, named with what is allowed. Subclasses say which stage."""


class FileFormatError(EigdistError):
    """A file eigdist reads is not in its format (not JSON, not text); the message names the file."""


def in_context(exc: BaseException, where: str) -> EigdistError:
    """``exc`` as an :class:`EigdistError` whose message starts with ``where``; the cause is kept.

    Use as ``raise in_context(exc, "images[2]") from exc``.
    """
    return EigdistError(f"{where}: {exc}")


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C's ``KeyboardInterrupt`` or was raised while one was being handled.

    A ``KeyboardInterrupt`` that lands inside ``torch.func``'s transform bookkeeping (between a level's
    push and its pop) surfaces as a ``RuntimeError`` (an internal assert on the transform stack) whose
    ``__context__`` is the interrupt, and leaves the stack corrupted. Such an error must end the command
    as an interruption, never be taken for a model that ``torch.func`` cannot trace.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
