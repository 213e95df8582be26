"""Small pieces shared by the command modules."""

from __future__ import annotations

import argparse
import sys


class CommandError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def not_implemented(args: argparse.Namespace) -> int:
    """Handler of commands that are registered but not built yet."""
    print(f"eigdist {args.command}: not implemented yet", file=sys.stderr)
    return 2
