"""``eigdist stimuli build|verify|show``: stimulus sets."""

from __future__ import annotations

import argparse
import sys

from .common import CommandError, not_implemented


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stimuli", help="build, verify and look at stimulus sets")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = actions.add_parser("build", help="build a stimulus set from a TOML config")
    b.add_argument("config", help="TOML config, e.g. stimuli/demo.toml")
    b.add_argument("--out", help="the set's folder (default: <config's folder>/<name>)")
    b.add_argument("--executor", choices=("local", "slurm"), default="local")
    b.add_argument("--jobs", type=int, default=1, help="parallel worker processes (local)")
    b.add_argument("--force", action="store_true", help="rebuild into a folder of another set")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=build)
    v = actions.add_parser("verify", help="check every file and hash of a set")
    v.add_argument("dir", help="the stimulus set folder")
    v.set_defaults(func=verify)
    s = actions.add_parser("show", help="contact sheets of a set")
    s.add_argument("dir", help="the stimulus set folder")
    s.set_defaults(func=not_implemented)


def build(args: argparse.Namespace) -> int:
    import time

    from eigdist_core.build import build_set
    from eigdist_core.stimulus_set import verify_set

    if args.executor != "local":
        raise CommandError(f"--executor {args.executor} is not available yet; use --executor local")
    start = time.perf_counter()
    folder = build_set(args.config, out=args.out, jobs=args.jobs, force=args.force, progress=not args.quiet)
    problems = verify_set(folder)
    print(f"built {folder} in {time.perf_counter() - start:.1f} s")
    return _report(folder, problems)


def verify(args: argparse.Namespace) -> int:
    from eigdist_core.stimulus_set import verify_set

    return _report(args.dir, verify_set(args.dir))


def _report(folder, problems: list[str]) -> int:
    """Print a verify result; exit status 1 when there are problems."""
    if problems:
        for line in problems:
            print(f"{folder}/{line}", file=sys.stderr)
        print(f"{folder}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    from eigdist_core.stimulus_set import StimulusSet

    s = StimulusSet.open(folder)
    a_max = s.manifest["alpha_max"]
    short = sum(1 for it in s.items if it["alpha_displayable_max"] < a_max)
    print(f"{folder}: OK, set {s.set_id}: {len(s.images)} images, {len(s.items)} items; "
          f"{short} items leave [0, 1] before alpha_max = {a_max} (the experiment caps them at "
          "their alpha_displayable_max)")
    return 0
