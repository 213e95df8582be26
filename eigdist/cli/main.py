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

from eigdist_core.errors import EigdistError

from . import analyze, calibrate, demo, init, power, run, stimuli, synth

#: Exit statuses: a user error, and an interrupt (128 + SIGINT, as a shell reports it).
USER_ERROR, INTERRUPTED = 2, 130

GROUPS = (init, synth, stimuli, calibrate, run, analyze, power, demo)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``eigdist`` command; user errors print one line (exit 2), Ctrl-C exits 130.

    Anything that is not a user error (:class:`EigdistError` or a missing, existing or
    forbidden file) is a bug and keeps its traceback.
    """
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C before the command started: nothing to resume, no traceback
        print("eigdist: interrupted; rerun the same command to resume", file=sys.stderr)
        return INTERRUPTED
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"eigdist {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return INTERRUPTED
    except (EigdistError, ValueError, FileNotFoundError, FileExistsError, PermissionError,
            IsADirectoryError, NotADirectoryError) as exc:
        if os.environ.get("EIGDIST_DEBUG"):
            raise
        print(f"eigdist {args.command}: error: {exc}", file=sys.stderr)
        return USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
