"""The crossed bootstrap with few participants and images: coverage of the truth on labs of a known model.

    python benchmarks/bench_crossed_bootstrap.py [--labs 400] [--draws 1000] [--sizes 4x3 4x8 8x8]

A lab's statistic is the mean of a participants × images table x_pi = u_p + v_i + e_pi with u, v, e normal
(sd σ_p, σ_i, σ_e), whose truth is 0 (participants and images drawn from their populations, as in the
calibration of issue 35, where the two candidates' difference varies with the images' perturbed items).
For each lab, :func:`analysis.comparison_bootstrap.crossed_multiplicities` draws the two redraws, and the 95 %
basic interval is read off (``plain``: the module's draws, m + (m_P − m) + (m_I − m); ``scaled``: each
deviation × √(n/(n − 1)) of its level, the bootstrap's (n − 1)/n variance shrinkage undone). Printed: the
share of labs whose interval covers 0, and the median bootstrap sd over the true sd.
"""

from __future__ import annotations

import argparse

import numpy as np

from analysis.comparison_bootstrap import crossed_multiplicities

SCENARIOS = ((1.0, 1.0, 0.1), (0.3, 1.0, 0.3), (1.0, 0.3, 0.3), (0.3, 0.3, 3.0))


def draws(x: np.ndarray, n_draws: int, seed: int, scaled: bool) -> np.ndarray:
    """Crossed bootstrap draws of the table's mean."""
    n_p, n_i = x.shape
    people, images = crossed_multiplicities(n_draws, n_p, n_i, seed)
    m = x.mean()
    dev_p, dev_i = people @ x.mean(1) / n_p - m, images @ x.mean(0) / n_i - m
    if scaled:
        dev_p, dev_i = dev_p * np.sqrt(n_p / (n_p - 1)), dev_i * np.sqrt(n_i / (n_i - 1))
    return m + dev_p + dev_i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labs", type=int, default=400)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--sizes", nargs="+", default=["4x3", "4x8", "8x8"], help="participants x images")
    args = ap.parse_args()
    print("| participants × images | σ_p, σ_i, σ_e | coverage plain | scaled | boot sd / true sd plain | scaled |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        n_p, n_i = (int(n) for n in size.split("x"))
        for sp, si, se in SCENARIOS:
            rng = np.random.default_rng(0)
            true_sd = np.sqrt(sp**2 / n_p + si**2 / n_i + se**2 / (n_p * n_i))
            cover, sds = {False: 0, True: 0}, {False: [], True: []}
            for lab in range(args.labs):
                x = rng.normal(0, sp, (n_p, 1)) + rng.normal(0, si, (1, n_i)) + rng.normal(0, se, (n_p, n_i))
                for scaled in (False, True):
                    d = draws(x, args.draws, lab, scaled) - x.mean()
                    lo, hi = np.quantile(d, [0.025, 0.975])
                    cover[scaled] += x.mean() - hi <= 0 <= x.mean() - lo
                    sds[scaled].append(d.std())
            print(f"| {n_p} × {n_i} | {sp}, {si}, {se} | {cover[False] / args.labs:.3f} | {cover[True] / args.labs:.3f} "
                  f"| {np.median(sds[False]) / true_sd:.2f} | {np.median(sds[True]) / true_sd:.2f} |", flush=True)


if __name__ == "__main__":
    main()
