"""``eigdist analyze``: thresholds, the layer ranking and the report."""

from __future__ import annotations

import argparse

from .options import number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="fit thresholds and rank the layers")
    p.add_argument("data", nargs="+", help="trial CSV files or folders holding them")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=number(integer=True, low=0), default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--n-boot", type=number(integer=True, low=1), default=2000, help="bootstrap draws (default 2000)")
    p.add_argument("--stimuli", help="stimulus-set folder: ceilings, eigenvalues and response curves")
    p.add_argument("--alpha-max", type=number(low=0, low_open=True), help="ceiling of every track (overrides --stimuli)")
    p.add_argument("--function", default="weibull", choices=["weibull", "lognormal"])
    p.add_argument("--slope", default="shared", choices=["shared", "free"],
                   help="one slope per participant (default) or per condition")
    p.add_argument("--max-lapse", type=number(low=0, high=0.49), default=0.06, help="upper bound of the lapse rate")
    p.add_argument("--fitter", default="eigdist", choices=["eigdist", "psignifit"],
                   help="eigdist: maximum likelihood with a weakly informative slope prior (default); "
                        "psignifit: Bayesian fits by psignifit 4 (pip install 'eigdist[psignifit]')")
    p.add_argument("--no-slope-prior", action="store_true", help="plain maximum likelihood (eigdist fitter)")
    p.add_argument("--jobs", type=number(integer=True, low=1), default=1, help="worker processes for --fitter psignifit (default 1)")
    p.add_argument("--include-pilot", action="store_true", help="keep uncalibrated (--pilot) sessions")
    p.add_argument("--observers", default="auto", choices=["auto", "human", "simulated", "all"],
                   help="auto: humans if any, else simulated observers (never mixed unless 'all')")
    p.add_argument("--min-catch-accuracy", type=number(low=0, high=1), default=0.9,
                   help="exclude participants below this easy-catch accuracy (default 0.9)")
    p.add_argument("--models", nargs="+", default=[], metavar="SPEC[=WEIGHTS]",
                   help="models not in the set to score too (needs --stimuli), e.g. resnet18:layer2=imagenet")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.exclusions import ExclusionRules
    from analysis.pipeline import AnalysisSettings, analyze
    from analysis.psychometric import FitOptions

    settings = AnalysisSettings(
        seed=args.seed, n_boot=args.n_boot, stimuli=args.stimuli, alpha_max=args.alpha_max,
        fit=FitOptions(function=args.function, slope=args.slope, max_lapse=args.max_lapse,
                       slope_prior=not args.no_slope_prior, seed=args.seed),
        fitter=args.fitter, jobs=args.jobs,
        exclusions=ExclusionRules(include_pilot=args.include_pilot, observers=args.observers,
                                  min_catch_accuracy=args.min_catch_accuracy),
        models=tuple(args.models),
    )
    report = analyze(args.data, args.out, settings)
    compared = (", comparison.csv, matrix.csv, predictions.csv, mixture.csv"
                if (report.parent / "comparison.csv").exists() else "")
    print(f"wrote {report.parent}/ranking.csv, thresholds.csv, fits.csv, pairwise.csv{compared} and {report}")
    if not compared:
        print("no model comparison: it needs --stimuli DIR with a sensitivity table "
              "('eigdist stimuli sensitivities DIR' adds one)")
    else:
        import pandas as pd

        from analysis.comparison_tables import ceiling_note

        note = ceiling_note(pd.read_csv(report.parent / "comparison.csv", keep_default_na=False, na_values=[""]))
        if note:
            print(f"note: {note}")
    return 0
