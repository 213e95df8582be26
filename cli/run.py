"""``eigdist run``: one experimental session."""

from __future__ import annotations

import argparse

from .common import not_implemented


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a noticeability session (PsychoPy)")
    p.add_argument("--stimuli", required=True, help="stimulus set folder")
    p.add_argument("--monitor", required=True, help="monitor profile name")
    p.add_argument("--participant", required=True)
    p.add_argument("--session", type=int, default=1)
    p.add_argument("--config", help="experiment TOML (default: experiments/noticeability.toml)")
    p.add_argument("--data", default="data", help="data folder")
    p.add_argument("--monitors", help="profile folder (default: $EIGDIST_MONITORS or experiments/monitors)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted session")
    p.add_argument("--pilot", action="store_true", help="allow an uncalibrated display; rows marked")
    p.add_argument("--simulate", metavar="SPEC", help="a simulated observer instead of the keyboard")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fullscreen", action="store_true")
    g.add_argument("--window", metavar="WxH", help="windowed, e.g. 1024x768")
    p.set_defaults(func=not_implemented)
