"""Analysis speed: 20 participants × 6 images × 8 layers × 3 directions × 50 trials, 2000 bootstraps.

Run: ``python benchmarks/bench_analysis.py [--n-boot N] [--slope shared|free] [--fitters eigdist,psignifit]
[--jobs J]``. Prints the seconds of each stage measured in this run (goal: fits + bootstrap under 60 s
on 2 cores), then the whole ``eigdist analyze`` on the same trials written as 20 CSV files, once per
fitter (psignifit: ``--jobs`` worker processes), with the flag counts. One measurement per run; on a
shared machine the figures vary with its load.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.datafile import session_paths, write_trial_file
from analysis.pipeline import AnalysisSettings, analyze
from analysis.psychometric import FitOptions, fit_thresholds
from analysis.ranking import compute_d, rank_layers
from analysis.simulate import make_truth, simulate_trials
from experiments.staircase import make_track


def prior_table(seed: int = 0) -> pd.DataFrame:
    """Threshold error against the truth at 40, 60 and 120 trials, with and without the slope prior.

    Lab: 10 Weibull observers (β 3.5, λ 0.02, 2AFC) × 3 images × 2 layers × 3 directions (180
    conditions), constant stimuli (0.59–1.68 × T) or QUEST+ tracks; free and shared slopes.
    """
    from eigdist_core.contract import TRACK_KEY

    truth = make_truth({("m", "a", "w"): 0.8, ("m", "b", "w"): 0.2}, n_participants=10, n_images=3, seed=seed)
    rows = []
    for method in ("constant", "quest"):
        for n_trials in (40, 60, 120):
            trials = simulate_trials(truth, n_trials=n_trials, method=method, seed=seed + n_trials,
                                     make_track=make_track)
            for slope in ("free", "shared"):
                for prior in (False, True):
                    fits = fit_thresholds(trials, alpha_max=30.0, options=FitOptions(
                        slope=slope, slope_prior=prior, gof_draws=0, intervals=False))
                    merged = fits.merge(truth, on=list(TRACK_KEY), suffixes=("", "_true"))
                    error = np.log10(merged["threshold"] / merged["threshold_true"])
                    rows.append({"method": method, "trials": n_trials, "slope": slope, "prior": prior,
                                 "median_abs_rel_error": float(np.median(np.abs(10 ** error - 1))),
                                 "rms_log10_error": float(np.sqrt(np.mean(error ** 2))),
                                 "slope_at_bound": float(fits["slope_at_bound"].mean())})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--slope", default="shared", choices=["shared", "free"])
    parser.add_argument("--fitters", default="eigdist,psignifit", help="comma-separated: eigdist, psignifit")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes of the psignifit fitter")
    parser.add_argument("--prior-table", action="store_true",
                        help="only print the error-vs-truth table with and without the slope prior")
    args = parser.parse_args()
    if args.prior_table:
        print(prior_table().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        return
    layers = {("vgg16", f"layer{i}", "imagenet"): 0.1 * i for i in range(8)}
    truth = make_truth(layers, n_participants=20, n_images=6, seed=0)
    t0 = time.perf_counter()
    trials = simulate_trials(truth, n_trials=50, seed=1)
    t1 = time.perf_counter()
    fits = fit_thresholds(trials, alpha_max=30.0, options=FitOptions(slope=args.slope))
    t2 = time.perf_counter()
    result = rank_layers(compute_d(fits), n_boot=args.n_boot, seed=0)
    t3 = time.perf_counter()
    print(f"conditions: {len(fits)} ({len(trials)} trials), converged {fits['converged'].mean():.3f}, "
          f"censored {int(fits['censored'].sum())}")
    print(f"simulate  {t1 - t0:6.2f} s (not part of the analysis)")
    print(f"fit       {t2 - t1:6.2f} s  ({(t2 - t1) / len(fits) * 1e3:.2f} ms per condition, slope={args.slope}; "
          "with 95 % profile intervals and 200 deviance bootstrap draws per condition)")
    print(f"D+rank    {t3 - t2:6.2f} s  ({args.n_boot} two-level bootstrap draws, {len(result.ranking)} layers)")
    print(f"analysis  {t3 - t1:6.2f} s  (goal < 60 s)")
    with tempfile.TemporaryDirectory() as tmp:
        for (participant, session), rows in trials.groupby(["participant", "session"]):
            write_trial_file(session_paths(Path(tmp) / "data", participant, int(session)).trials,
                             rows.to_dict("records"))
        for fitter in args.fitters.split(","):
            t4 = time.perf_counter()
            analyze([Path(tmp) / "data"], Path(tmp) / fitter,
                    AnalysisSettings(n_boot=args.n_boot, alpha_max=30.0, fit=FitOptions(slope=args.slope),
                                     fitter=fitter, jobs=args.jobs))
            t5 = time.perf_counter()
            flags = pd.read_csv(Path(tmp) / fitter / "flags.csv").iloc[-1].drop(["model", "layer", "weights"])
            print(f"eigdist analyze --fitter {fitter} end to end (load 20 CSVs, fits, ranking, figures, "
                  f"report.html): {t5 - t4:7.2f} s; flags: {flags.to_dict()}")


if __name__ == "__main__":
    main()
