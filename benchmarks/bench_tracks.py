"""QUEST+ speed: experiments.staircase (numpy) against the questplus package, one run.

Both run the same 40-point α grid × 4 slopes × 3 lapses, the same simulated
Weibull observer and the same 60 trials; prints seconds per 60-trial track
and the ratio. Run: ``python benchmarks/bench_tracks.py``.
"""

from __future__ import annotations

import time

import numpy as np

from experiments.staircase import make_track, weibull


def simulate(next_alpha, update, n=60, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        alpha = next_alpha()
        update(alpha, bool(rng.random() < weibull(alpha, 0.1, 3.5, 0.5, 0.02)))


def main() -> None:
    from questplus import QuestPlusWeibull

    t0 = time.perf_counter()
    track = make_track("quest", 1.0, 2)
    simulate(track.next_alpha, track.update)
    ours = time.perf_counter() - t0

    x = np.log10(track.alphas)
    t0 = time.perf_counter()
    ref = QuestPlusWeibull(intensities=x, thresholds=x, slopes=[1.5, 2.5, 3.5, 5.0], lower_asymptotes=[0.5],
                           lapse_rates=[0.0, 0.02, 0.05], responses=["Correct", "Incorrect"])
    simulate(lambda: 10 ** ref.next_intensity,
             lambda a, c: ref.update(intensity=float(np.log10(a)), response="Correct" if c else "Incorrect"))
    theirs = time.perf_counter() - t0
    print(f"60-trial QUEST+ track: experiments.staircase {ours:.3f} s, questplus {theirs:.3f} s, "
          f"ratio {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
