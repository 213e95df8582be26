"""Entry point of the ``eigdist`` command.

Each command group lives in its own module with a ``register(subparsers)``
function; heavy imports (torch, PsychoPy) happen inside the handlers, so
``eigdist --help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from eigdist_core.device import process_defaults
from eigdist_core.errors import EigdistError, caused_by_interrupt

from . import analyze, calibrate, demo, design, init, power, run, stimuli, synth
from .status import INTERRUPTED, USER_ERROR

GROUPS = (init, synth, stimuli, calibrate, run, analyze, power, design, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eigdist",
        description="Eigendistortions of vision models, a calibrated noticeability experiment, "
        "and a ranking of model layers against human data.",
    )
    from eigdist import __version__

    parser.add_argument("--version", action="version", version=f"eigdist {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


#: OS errors about a file the user named (missing, existing, forbidden, a folder for a file or the reverse).
FILE_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a user's mistake (one line, exit 2) rather than a bug (a traceback).

    User errors are eigdist's own :class:`EigdistError` (it subclasses ``ValueError`` for API
    callers, but a foreign ``ValueError`` of numpy, pandas, json or PsychoPy is not one) and OS
    errors about a file: the kinds in :data:`FILE_ERRORS`, or any ``OSError`` that names its file.
    """
    if isinstance(exc, EigdistError):
        return True
    return isinstance(exc, OSError) and (isinstance(exc, FILE_ERRORS) or exc.filename is not None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``eigdist`` command; user errors print one line (exit 2), Ctrl-C exits 130.

    Anything that is not a user error (:func:`is_user_error`) is a bug in eigdist or a library:
    it keeps its full traceback (exit 1) so that it can be found and reported.
    """
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C before the command started: nothing to resume, no traceback
        print("eigdist: interrupted; rerun the same command to resume", file=sys.stderr)
        return INTERRUPTED
    process_defaults()  # the command owns its process: the one place that sets process-wide defaults
    try:
        return int(args.func(args) or 0)
    except BaseException as exc:
        # Ctrl-C, or an error raised while it unwound (inside torch.func it surfaces as a RuntimeError)
        if caused_by_interrupt(exc):
            print(f"eigdist {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
            return INTERRUPTED
        if not is_user_error(exc) or os.environ.get("EIGDIST_DEBUG"):
            raise
        print(f"eigdist {args.command}: error: {exc}", file=sys.stderr)
        return USER_ERROR

if __name__ == "__main__":
    sys.exit(main())
