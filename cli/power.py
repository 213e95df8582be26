"""``eigdist power``: how many observers and trials a lab needs."""

from __future__ import annotations

import argparse

from .common import not_implemented


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("power", help="plan observers and trials by simulation")
    p.set_defaults(func=not_implemented)
