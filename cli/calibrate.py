"""``eigdist calibrate new|fit|show|check``: monitor profiles."""

from __future__ import annotations

import argparse

from .common import not_implemented


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="monitor profiles and photometer calibration")
    p.add_argument("--monitors", help="profile folder (default: $EIGDIST_MONITORS or experiments/monitors)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    n = actions.add_parser("new", help="create a monitor profile")
    n.add_argument("name")
    n.add_argument("--width-cm", type=float, required=True)
    n.add_argument("--distance-cm", type=float, required=True)
    n.add_argument("--resolution", required=True, help="WxH in pixels, e.g. 1920x1080")
    n.add_argument("--refresh", type=float, required=True, help="refresh rate in Hz")
    n.add_argument("--bits", type=int, choices=(8, 10), default=8)
    n.set_defaults(func=not_implemented)
    f = actions.add_parser("fit", help="fit photometer readings (columns: level, luminance_cd_m2)")
    f.add_argument("readings")
    f.add_argument("--monitor", required=True)
    f.set_defaults(func=not_implemented)
    for name, text in (("show", "plot a profile's calibration"), ("check", "luminance ramp and patches on screen")):
        a = actions.add_parser(name, help=text)
        a.add_argument("name")
        a.set_defaults(func=not_implemented)
