"""Analysis speed: 20 participants × 6 images × 8 layers × 3 directions × 50 trials, 2000 bootstraps.

Run: ``python benchmarks/bench_analysis.py [--n-boot N] [--slope shared|free]``. Prints the seconds
of each stage measured in this run (goal: fits + bootstrap under 60 s on 2 cores), then the whole
``eigdist analyze`` on the same trials written as CSV files.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from experiments.datafile import session_paths, write_trial_file
from analysis.pipeline import AnalysisSettings, analyze
from analysis.psychometric import FitOptions, fit_thresholds
from analysis.ranking import compute_d, rank_layers
from analysis.simulate import make_truth, simulate_trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--slope", default="shared", choices=["shared", "free"])
    args = parser.parse_args()
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
    print(f"fit       {t2 - t1:6.2f} s  ({(t2 - t1) / len(fits) * 1e3:.2f} ms per condition, slope={args.slope})")
    print(f"D+rank    {t3 - t2:6.2f} s  ({args.n_boot} two-level bootstrap draws, {len(result.ranking)} layers)")
    print(f"analysis  {t3 - t1:6.2f} s  (goal < 60 s)")
    with tempfile.TemporaryDirectory() as tmp:
        for (participant, session), rows in trials.groupby(["participant", "session"]):
            write_trial_file(session_paths(Path(tmp) / "data", participant, int(session)).trials,
                             rows.to_dict("records"))
        t4 = time.perf_counter()
        analyze([Path(tmp) / "data"], Path(tmp) / "out",
                AnalysisSettings(n_boot=args.n_boot, alpha_max=30.0, fit=FitOptions(slope=args.slope)))
        t5 = time.perf_counter()
    print(f"eigdist analyze end to end (load 20 trial files, fits, ranking, figures, report.html): {t5 - t4:6.2f} s")


if __name__ == "__main__":
    main()
