"""``eigdist stimuli build|verify|show``: stimulus sets."""

from __future__ import annotations

import argparse

from .common import not_implemented


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stimuli", help="build, verify and look at stimulus sets")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = actions.add_parser("build", help="build a stimulus set from a TOML config")
    b.add_argument("config", help="TOML config, e.g. stimuli/demo.toml")
    b.add_argument("--out", help="the set's folder (default: stimuli/<name>)")
    b.add_argument("--executor", choices=("local", "slurm"), default="local")
    b.add_argument("--jobs", type=int, default=1, help="parallel worker processes (local)")
    b.add_argument("--force", action="store_true", help="rebuild into a folder of another set")
    b.set_defaults(func=not_implemented)
    for name, text in (("verify", "check every file and hash of a set"), ("show", "contact sheets of a set")):
        a = actions.add_parser(name, help=text)
        a.add_argument("dir", help="the stimulus set folder")
        a.set_defaults(func=not_implemented)
