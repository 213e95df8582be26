"""``eigdist run``: one experimental session (PsychoPy; see docs/session.md)."""

from __future__ import annotations

import argparse
import sys

from eigdist_core.errors import EigdistError

from .status import INTERRUPTED


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a noticeability session (PsychoPy)")
    p.add_argument("--stimuli", required=True, help="stimulus set folder")
    p.add_argument("--monitor", required=True, help="monitor profile name")
    p.add_argument("--participant", help="participant ID; without it a real run asks in a dialog (in the terminal "
                   "without a display); required with --simulate")
    p.add_argument("--session", type=int, default=1)
    p.add_argument("--age", help="optional: age in years (stored in the session sidecar)")
    p.add_argument("--sex", help="optional: female, male or other")
    p.add_argument("--vision", help="optional: normal or corrected")
    p.add_argument("--config", help="experiment TOML (default: experiments/noticeability.toml)")
    p.add_argument("--data", default="data", help="data folder")
    p.add_argument("--monitors", help="profile folder (default: $EIGDIST_MONITORS, else the per-user folder, e.g. ~/.local/share/eigdist/monitors on Linux)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted session")
    p.add_argument("--pilot", action="store_true", help="allow an uncalibrated display; rows marked")
    p.add_argument("--simulate", metavar="SPEC", help="a simulated observer instead of the keyboard")
    p.add_argument("--capture-frame", metavar="PNG", help="write the first trial's target interval as seen on screen")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fullscreen", action="store_true")
    g.add_argument("--window", metavar="WxH", help="windowed, e.g. 1024x768")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from experiments.datafile import SessionFinished
    from experiments.monitor import parse_resolution
    from experiments.participant_form import ask_participant, check_info
    from experiments.session import ABORTED, RunOptions, prepare, run_prepared

    if args.participant is None:
        if args.simulate:
            raise EigdistError("--participant is required with --simulate (the form is for people)")
        info = ask_participant(session=args.session)
    else:
        info = check_info(args.participant, args.session, args.age, args.sex, args.vision)
    options = RunOptions(
        stimuli=Path(args.stimuli), monitor=args.monitor, info=info,
        config=Path(args.config) if args.config else None, data=Path(args.data),
        monitors=Path(args.monitors) if args.monitors else None, resume=args.resume, pilot=args.pilot,
        simulate=args.simulate, fullscreen=args.fullscreen,
        window=parse_resolution(args.window) if args.window else None,
        capture=Path(args.capture_frame) if args.capture_frame else None,
    )
    try:
        prepared = prepare(options)
    except SessionFinished as done:
        print(f"eigdist run: {done}")
        return 0
    try:
        result = run_prepared(prepared)
    except KeyboardInterrupt:
        print("eigdist run: interrupted; every finished trial is saved; rerun with --resume to continue",
              file=sys.stderr)
        return INTERRUPTED
    print(f"trials: {result.trials_file}")
    return ABORTED if result.aborted else 0
