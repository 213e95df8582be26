"""The online models track (experiments.model_track): time per choice, and simulated observers.

A synthetic set (seeded): ``--items`` items × ``--layers`` layers, ln s_m(v) = 2 (ρ c_v + √(1−ρ²) e_vm) + m
with a common factor c (ρ = 0.8: layers agree on most items, as neighbouring layers do), every ceiling 1,
30 α × 40 k × 3 lapses. Part 1 times :meth:`ModelTrack.choose` along a 200-trial run and prints the
median and 99th percentile, in wall-clock and in thread CPU time (which leaves out preemption on a
loaded machine). Part 2 runs ``--runs`` simulated observers per rule (information-maximising choice,
random item and α), each seeing through a random true layer X with threshold k_X / √s_X(v), k_X putting
its typical item's threshold at α = 0.1, the model's slope and a lapse of 0.02, until one layer's
posterior reaches 0.95 or ``--budget`` trials. It prints the median trials to 0.95, how often the true /
a wrong layer ends at ≥ 0.95, and the end state of an observer who sees through layer 0 or layer 1 at
random (50/50) on each trial. ``--observer-slope`` and ``--observer-lapse`` give the observers another
slope or lapse than the model's (a misspecified model); ``--item-sd`` sets the model's τ (the sd of an
item's ln threshold about its layer's prediction; 0: every trial is exact evidence). Run:
``python benchmarks/bench_model_track.py [--runs 50] [--budget 400] [--observer-slope B] [--observer-lapse L]
[--item-sd T]``; ``--unstopped N`` instead runs the mixture's observers N trials without stopping: how
often a third layer is the first to reach 0.95 (where the stopping rule ends the run) and how often it
leads after N trials.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from experiments.model_track import ITEM_SD, SLOPE, ModelGrid, ModelTrack, make_grid, run_simulated
from eigdist_core.psychometric_function import weibull

#: The simulated observers' lapse rate unless --observer-lapse says otherwise.
OBSERVER_LAPSE = 0.02


def synthetic_grid(n_items: int, n_layers: int, seed: int = 0, rho: float = 0.8,
                   item_sd: float = ITEM_SD) -> ModelGrid:
    """The seeded synthetic set described in the module docstring, the model's τ = ``item_sd``."""
    rng = np.random.default_rng(seed)
    z = rho * rng.normal(size=(n_items, 1)) + np.sqrt(1 - rho ** 2) * rng.normal(size=(n_items, n_layers))
    s = np.exp(2 * z + np.arange(n_layers))
    return make_grid(s, [f"L{m}" for m in range(n_layers)], [f"i{i}" for i in range(n_items)], np.ones(n_items),
                     item_sd=item_sd)


def observer(grid: ModelGrid, layers: list[int], rng: np.random.Generator, slope: float = SLOPE,
             lapse: float = OBSERVER_LAPSE):
    """Sees each trial through one of ``layers`` (drawn per trial), typical threshold 0.1."""
    k = 0.1 * np.exp(0.5 * np.nanmean(np.log(np.where(grid.s > 0, grid.s, np.nan)), axis=0))

    def observe(item: int, alpha: float) -> bool:
        m = layers[int(rng.integers(len(layers)))]
        p = weibull(alpha * np.sqrt(grid.s[item, m]), k[m], slope, grid.guess, lapse)
        return bool(rng.random() < p)
    return observe


def time_choices(grid: ModelGrid, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Wall and thread-CPU milliseconds of each choice (CPU time leaves out preemption on a loaded machine)."""
    rng = np.random.default_rng(1)
    track, observe, wall, cpu = ModelTrack(grid), observer(grid, [2], rng), [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.thread_time()
        item, alpha = track.choose()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        track.update(item, alpha, observe(item, alpha))
    return np.array(wall) * 1e3, np.array(cpu) * 1e3


def lab(grid: ModelGrid, runs: int, budget: int, rule: str, mixture: bool = False,
        **observer_options: float) -> list[tuple[int, int, float, int]]:
    """(true layer, trials, end P(MAP), MAP index) of each run."""
    out = []
    for r in range(runs):
        rng = np.random.default_rng([r, 7])
        true = [0, 1] if mixture else [int(rng.integers(len(grid.layers)))]
        track = run_simulated(grid, observer(grid, true, rng, **observer_options), budget=budget,
                              rng=np.random.default_rng([r, 8]) if rule == "random" else None)
        p = track.layer_probabilities()
        out.append((true[0], track.n_trials, float(p.max()), int(np.argmax(p))))
    return out


def unstopped_mixture(grid: ModelGrid, runs: int, n_trials: int) -> tuple[int, int]:
    """The 50/50 mixture run ``n_trials`` trials without stopping: in how many runs a third layer was the first
    to reach 0.95 (where the stopping rule ends), and in how many it leads at the end."""
    first_third = end_third = 0
    for r in range(runs):
        rng = np.random.default_rng([r, 7])
        observe, track, first = observer(grid, [0, 1], rng), ModelTrack(grid), None
        for _ in range(n_trials):
            item, alpha = track.choose()
            track.update(item, alpha, observe(item, alpha))
            if first is None and track.decided():
                first = int(np.argmax(track.layer_probabilities()))
        first_third += first is not None and first > 1
        end_third += int(np.argmax(track.layer_probabilities())) > 1
    return first_third, end_third


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--budget", type=int, default=400)
    ap.add_argument("--observer-slope", type=float, default=SLOPE, help="the simulated observers' Weibull slope")
    ap.add_argument("--observer-lapse", type=float, default=OBSERVER_LAPSE, help="the simulated observers' lapse rate")
    ap.add_argument("--item-sd", type=float, default=ITEM_SD, help="the model's τ (0: no item-level misfit)")
    ap.add_argument("--unstopped", type=int, metavar="N", help="only: the mixture's runs to N trials without stopping")
    args = ap.parse_args()
    grid = synthetic_grid(args.items, args.layers, item_sd=args.item_sd)
    if args.unstopped:
        first, end = unstopped_mixture(grid, args.runs, args.unstopped)
        print(f"mixture L0/L1 50/50, {args.runs} runs × {args.unstopped} trials without stopping: a third layer "
              f"first to reach 0.95 in {first}, leading at the end in {end}")
        return
    wall, cpu = time_choices(grid)
    print("| items | layers | candidates | k × λ | median ms/choice | p99 ms/choice | median CPU ms | p99 CPU ms |\n"
          "|---|---|---|---|---|---|---|---|\n"
          f"| {args.items} | {args.layers} | {len(grid.cand_item)} | {grid.log_k.shape[1]} × {len(grid.lapses)} | "
          f"{np.median(wall):.2f} | {np.percentile(wall, 99):.2f} | {np.median(cpu):.2f} | "
          f"{np.percentile(cpu, 99):.2f} |\n")
    print("| rule | runs | median trials to 0.95 | true layer ≥ 0.95 | wrong layer ≥ 0.95 | undecided |\n"
          "|---|---|---|---|---|---|")
    medians = {}
    for rule in ("information", "random"):
        res = lab(grid, args.runs, args.budget, rule, slope=args.observer_slope, lapse=args.observer_lapse)
        hit = [n for t, n, p, m in res if p >= 0.95 and m == t]
        wrong = sum(p >= 0.95 and m != t for t, n, p, m in res)
        undecided = sum(p < 0.95 for _, _, p, _ in res)
        # runs that never decide count as the budget: the median is then a lower bound
        medians[rule] = np.median([n if p >= 0.95 else args.budget for _, n, p, _ in res])
        print(f"| {rule} | {args.runs} | {medians[rule]:.0f} | {len(hit)} | {wrong} | {undecided} |")
    print(f"\nratio information / random: {medians['information'] / medians['random']:.2f}\n")
    res = lab(grid, args.runs, args.budget, "information", mixture=True, slope=args.observer_slope,
              lapse=args.observer_lapse)
    ends = np.bincount([m for *_, m in res], minlength=len(grid.layers))
    decided = sum(p >= 0.95 for _, _, p, _ in res)
    print("| mixture L0/L1 50/50 | ends on L0 | ends on L1 | ends on another | ≥ 0.95 | median trials |\n"
          "|---|---|---|---|---|---|\n"
          f"| {args.runs} runs | {ends[0]} | {ends[1]} | {ends.sum() - ends[0] - ends[1]} | {decided} | "
          f"{np.median([n for _, n, _, _ in res]):.0f} |")


if __name__ == "__main__":
    main()
