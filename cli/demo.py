"""``eigdist demo``: the whole pipeline on built-in defaults, offline."""

from __future__ import annotations

import argparse

from .common import not_implemented


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="build, run simulated observers, analyze: the whole pipeline")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--observers", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="a smaller run (under 2 minutes)")
    p.set_defaults(func=not_implemented)
