"""The mixture proportions' 95 % intervals: the comparison's crossed bootstrap against the D ranking's nested one.

Seeded labs of Weibull observers whose thresholds follow s = ½ s_a0 + ½ s_a1 over the exactly linear layers
of tests/test_mixture.py (true proportions ½, ½, 0; a log-normal participant factor). Per lab: the all-trials
fit, then 200 draws of each bootstrap, each refitted by the k-step refits of analysis.mixture: nested
(participants, then each drawn participant's images: analysis.ranking.bootstrap_draws) and crossed (the
fit plus the deviations of a participants-only and an images-only redraw, clipped to [0, 1]:
analysis.comparison_bootstrap). Prints the share of labs whose interval covers the true proportion of a0
and a1, the median interval width and the CPU seconds of the refits.

    python benchmarks/bench_mixture_intervals.py --labs 100 --observers 4 --images 3 [--trials 24]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.comparison import CompareOptions, levels  # noqa: E402
from analysis.comparison_bootstrap import crossed_draws, crossed_multiplicities  # noqa: E402
from analysis.mixture import fit_rows, layers_of  # noqa: E402
from analysis.ranking import bootstrap_draws  # noqa: E402
from tests.test_mixture import mixed_lab  # noqa: E402

DRAWS = 200
TRUE = np.array([0.5, 0.5])


def lab_intervals(seed: int, args: argparse.Namespace) -> dict:
    """Both schemes' intervals of the a0 and a1 proportions in one lab, and their CPU seconds."""
    trials, sens = mixed_lab({"a0": 0.5, "a1": 0.5}, n_people=args.observers, n_images=args.images,
                             per_item=args.trials, seed=1000 + seed)
    lv = levels(trials, sens, None)
    log_s = 2.0 * lv.h[[lv.candidates.index(c) for c in layers_of(lv)]].T
    log_g = np.array([np.mean(c[np.isfinite(c)]) for c in log_s.T])
    log_s = log_s - log_g
    options = CompareOptions(n_boot=DRAWS)
    everything = [np.arange(len(lv.table))]
    best = fit_rows(lv, log_s, everything, None, options)
    proportions = lambda phi: special.softmax(phi - log_g, axis=-1)  # noqa: E731
    refit = lambda weight: proportions(fit_rows(lv, log_s, everything * len(weight), weight, options,  # noqa: E731
                                                np.repeat(best, len(weight), axis=0))[:, 3:])
    pi, people = pd.factorize(lv.table["participant"], sort=True)
    ii, images = pd.factorize(lv.table["image_id"], sort=True)
    start = time.process_time()
    drawn, multiplicity = bootstrap_draws(DRAWS, len(people), len(images), seed)
    per_cell = np.zeros((DRAWS, len(people), len(images)))
    for j in range(len(people)):
        np.add.at(per_cell, (np.arange(DRAWS), drawn[:, j]), multiplicity[:, j])
    nested = refit(per_cell[:, pi, ii])
    middle = time.process_time()
    by_people, by_images = crossed_multiplicities(DRAWS, len(people), len(images), seed)
    crossed = np.clip(crossed_draws(proportions(best[:, 3:])[0], refit(by_people[:, pi]), refit(by_images[:, ii])),
                      0.0, 1.0)
    end = time.process_time()
    row = {"cpu_nested": middle - start, "cpu_crossed": end - middle}
    for name, draws in (("nested", nested), ("crossed", crossed)):
        lo, hi = np.percentile(draws[:, :2], [2.5, 97.5], axis=0)
        row[f"covers_{name}"] = (lo <= TRUE) & (TRUE <= hi)
        row[f"width_{name}"] = np.median(hi - lo)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", type=int, default=100)
    parser.add_argument("--observers", type=int, default=4)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--trials", type=int, default=24, help="trials per item and observer")
    args = parser.parse_args()
    rows = [lab_intervals(seed, args) for seed in range(args.labs)]
    print(f"{args.labs} labs, {args.observers} observers × {args.images} images (9 items each) × {args.trials} "
          f"trials per item, {DRAWS} draws:")
    for name in ("nested", "crossed"):
        covers = np.array([r[f"covers_{name}"] for r in rows])
        print(f"  {name:8s} covers w(a0) = ½ in {covers[:, 0].mean():.3f}, w(a1) = ½ in {covers[:, 1].mean():.3f} of "
              f"labs; median width {np.median([r[f'width_{name}'] for r in rows]):.3f}; refits "
              f"{np.mean([r[f'cpu_{name}'] for r in rows]):.2f} s CPU per lab")


if __name__ == "__main__":
    main()
