"""``eigdist analyze``: thresholds, the layer ranking and the report."""

from __future__ import annotations

import argparse

from .common import not_implemented


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="fit thresholds and rank the layers")
    p.add_argument("data", nargs="+", help="trial CSV files or folders holding them")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=2000)
    p.set_defaults(func=not_implemented)
