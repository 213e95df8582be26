"""``eigdist stimuli build|verify|sensitivities|show``: stimulus sets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stimuli", help="build, verify and look at stimulus sets")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = actions.add_parser("build", help="build a stimulus set from a TOML config")
    b.add_argument("config", help="TOML config, e.g. my_set.toml, or a built-in one: demo, demo_quick, seed")
    b.add_argument("--out", help="the set's folder (default: <config's folder>/<name>; "
                   "stimuli/<name> for a built-in config)")
    b.add_argument("--executor", choices=("local", "slurm"), default="local")
    b.add_argument("--jobs", type=int, default=1, help="parallel worker processes (local)")
    b.add_argument("--force", action="store_true", help="rebuild into a folder of another set")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    g = b.add_argument_group("slurm (--executor slurm: one job per (image, network) group, via submitit)")
    g.add_argument("--partition", help="SLURM partition (default: the cluster's)")
    g.add_argument("--time", type=int, default=60, metavar="MIN", help="time limit per job in minutes (60)")
    g.add_argument("--gpus", type=int, default=0, help="GPUs per job (0); jobs compute on their GPU")
    g.add_argument("--cpus", type=int, default=1, help="CPUs per job (1)")
    g.add_argument("--mem-gb", type=int, help="memory per job in GB (default: the cluster's)")
    g.add_argument("--array-parallelism", type=int, default=64, metavar="N", help="at most N jobs at once (64)")
    g.add_argument("--log-folder", help="submitit's job files and logs (default: <set folder>.slurm)")
    g.add_argument("--cluster", choices=("slurm", "local", "debug"), default="slurm",
                   help="submitit back end; local/debug try the path on this machine")
    b.set_defaults(func=build)
    v = actions.add_parser("verify", help="check every file and hash of a set")
    v.add_argument("dir", help="the stimulus set folder")
    v.set_defaults(func=verify)
    e = actions.add_parser("sensitivities", help="add (or recompute) the set's sensitivity table: s = vᵀF v of "
                           "every item under every model, with the linearity check")
    e.add_argument("dir", help="the stimulus set folder")
    e.add_argument("--models", nargs="+", default=[], metavar="SPEC[=WEIGHTS]",
                   help="models not in the set to include, e.g. resnet18:layer2=imagenet (default weights: the family's)")
    e.add_argument("--jobs", type=int, default=1, help="parallel worker processes")
    e.set_defaults(func=sensitivities)
    s = actions.add_parser("show", help="contact sheets of a set, written to DIR/previews/")
    s.add_argument("dir", help="the stimulus set folder")
    s.add_argument("--alpha", type=float, help="amplitude of image + α·e (default: the set's alpha_max)")
    s.set_defaults(func=show)


def build(args: argparse.Namespace) -> int:
    from eigdist.configs import built_in_config

    if Path(args.config).exists():
        return _build(Path(args.config), args.out, args)
    with built_in_config(args.config) as path:  # not a file: a built-in config, built into ./stimuli/<name>
        return _build(path, args.out or str(Path("stimuli") / args.config), args)


def _build(config_path: Path, out: str | Path | None, args: argparse.Namespace) -> int:
    import time

    from eigdist_core.build import build_notes, build_set
    from eigdist_core.io import load_json
    from eigdist_core.stimulus_set import verify_set
    from eigdist_core.validate import validate_number

    runner, device = None, "cpu"
    if args.executor == "slurm":
        from eigdist_core.config import load_config
        from eigdist_core.executors import SlurmOptions, run_submitit

        config, base = load_config(config_path)
        out = Path(out) if out else base / config.name
        options = SlurmOptions(
            log_folder=args.log_folder or str(out.parent / f"{out.name}.slurm"), partition=args.partition, time_min=args.time,
            gpus=args.gpus, cpus=args.cpus, array_parallelism=args.array_parallelism,
            mem_gb=args.mem_gb, cluster=args.cluster,
        )
        runner, device = (lambda fn, tasks: run_submitit(fn, tasks, options)), ("auto" if args.gpus else "cpu")
    else:
        validate_number("--jobs", args.jobs, integer=True, low=1)
    start = time.perf_counter()
    folder = build_set(config_path, out=out, jobs=args.jobs, force=args.force, runner=runner,
                       device=device, progress=not args.quiet)
    problems = verify_set(folder)
    print(f"built {folder} in {time.perf_counter() - start:.1f} s")
    for note in build_notes(load_json(Path(folder) / "manifest.json")):
        print(f"note: {note}")
    return _report(folder, problems)


def verify(args: argparse.Namespace) -> int:
    from eigdist_core.stimulus_set import verify_set

    return _report(args.dir, verify_set(args.dir))


def sensitivities(args: argparse.Namespace) -> int:
    import time

    from eigdist_core.sensitivities import add_sensitivities, parse_model_arg
    from eigdist_core.validate import validate_number

    validate_number("--jobs", args.jobs, integer=True, low=1)
    start = time.perf_counter()
    path = add_sensitivities(args.dir, [parse_model_arg(m) for m in args.models], jobs=args.jobs)
    print(f"wrote {path} in {time.perf_counter() - start:.1f} s (the set's set_id is unchanged)")
    return 0


def show(args: argparse.Namespace) -> int:
    from eigdist_core.previews import write_previews
    from eigdist_core.validate import validate_number

    validate_number("--alpha", args.alpha, low=0, allow_none=True)

    for path in write_previews(args.dir, alpha=args.alpha):
        print(f"wrote {path}")
    return 0


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
          f"{short} of them leave [0, 1] below alpha_max = {a_max} (see each item's alpha_displayable_max)")
    return 0
