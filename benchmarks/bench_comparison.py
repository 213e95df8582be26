"""The model comparison on simulated labs: recovery of the observers' layer or mixture, and the time of `eigdist analyze`.

Observers are Weibull observers (analysis.simulate) whose threshold for item v is k·c_p/√s_X(v), the
threshold an additive-noise observer seeing through layer X has in its linear range (c_p: the
participant's sensitivity, log-normal). ``--true A=0.5,B=0.5`` makes them see through a mixture,
s = Σ share_m s_m/g_m (g_m: the geometric mean of s_m over the set's items), and the recovery checks
the mixture's shares (analysis.mixture). ``--linear`` uses the exactly linear layers of
tests/test_mixture.py instead of a set: s = ½ s_a0 + ½ s_a1 in the table's units, recovery of the
proportions w. The set must have a sensitivity table (``stimuli build`` writes it). ``--analyze`` times
`eigdist analyze` on one lab twice: with the mixture, and with the mixture switched off.

    python benchmarks/bench_comparison.py --stimuli stimuli/demo_quick --true frontend:lgg --labs 20
    python benchmarks/bench_comparison.py --stimuli stimuli/demo_quick --true frontend:ln=0.5,frontend:lgg=0.5 --labs 20
    python benchmarks/bench_comparison.py --linear --labs 20
    python benchmarks/bench_comparison.py --stimuli stimuli/demo_quick --observers 20 --analyze out/bench_cmp
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.comparison import CompareOptions  # noqa: E402
from analysis.comparison_tables import compare_models  # noqa: E402
from analysis.psychometric import FitOptions, fit_thresholds  # noqa: E402
from analysis.simulate import simulate_trials  # noqa: E402
from eigdist_core.contract import TRACK_KEY  # noqa: E402
from eigdist_core.io import load_json  # noqa: E402
from eigdist_core.sensitivities import read_table  # noqa: E402


def lab(folder: Path, true: str, observers: int, trials: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trials of ``observers`` simulated participants seeing through ``true`` (``model:layer``), and the table."""
    manifest = load_json(folder / "manifest.json")
    sens = pd.DataFrame(read_table(folder, manifest))
    mine = true_s(sens, true)
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(observers):
        factor = np.exp(rng.normal(0, 0.2))
        for it in manifest["items"]:
            s = max(mine[it["item_id"]], 1e-300)
            rows.append((f"p{p:02d}", it["image_id"], it["model"], it["layer"], it["weights"], it["direction"],
                         it["item_id"], 0.02 * factor / np.sqrt(s / mine.median())))
    truth = pd.DataFrame(rows, columns=[*TRACK_KEY, "item_id", "threshold"])
    out = simulate_trials(truth.drop(columns="item_id"), n_trials=trials, seed=seed, set_id=manifest["set_id"],
                          alpha_max=float(manifest["alpha_max"]))
    ids = truth.set_index(list(TRACK_KEY[1:]))["item_id"].to_dict()
    out["item_id"] = [ids[k] for k in out[list(TRACK_KEY[1:])].itertuples(index=False, name=None)]
    return out, sens


def true_s(sens: pd.DataFrame, true: str) -> pd.Series:
    """s of the observers per item: one layer (``model:layer``), or ``model:layer=share,...``: Σ share·s/g."""
    name = sens["model"] + ":" + sens["layer"]
    if "=" not in true:
        return sens[name == true].set_index("item_id")["s"]
    total = 0.0
    for layer, share in shares(true).items():
        s = sens[name == layer].set_index("item_id")["s"]
        total = total + share * s / np.exp(np.log(s[s > 0]).mean())
    return total


def shares(true: str) -> dict[str, float]:
    """``model:layer=share,...`` as a dict ({} for one layer)."""
    return {p.split("=")[0]: float(p.split("=")[1]) for p in true.split(",")} if "=" in true else {}


def mixture_recovery(args: argparse.Namespace, folder: Path | None) -> None:
    """Fraction of labs whose mixture recovers every true share (w with --linear) within ±0.1."""
    hits, errors, start = 0, [], time.perf_counter()
    for seed in range(args.labs):
        if args.linear:
            from tests.test_mixture import mixed_lab

            truth, column = {"lin:a0": 0.5, "lin:a1": 0.5}, "w"
            trials, sens = mixed_lab({"a0": 0.5, "a1": 0.5}, n_people=args.observers, per_item=args.trials, seed=seed)
        else:
            truth, column = shares(args.true), "share"
            trials, sens = lab(folder, args.true, args.observers, args.trials, seed)
        mix = compare_models(trials, sens, None, CompareOptions(n_boot=args.n_boot, seed=seed)).mixture
        got = mix.set_index(mix["model"] + ":" + mix["layer"])[column]
        error = max(abs(got.get(layer, 0.0) - share) for layer, share in truth.items())
        hits += error <= 0.1
        errors.append(error)
    print(f"mixture {truth} ({column}): all within ±0.1 in {hits} of {args.labs} labs ({args.observers} observers, "
          f"{args.trials} trials per item); median largest error {np.median(errors):.3f}, worst {max(errors):.3f}; "
          f"{time.perf_counter() - start:.0f} s")


def timed_analyze(trials: pd.DataFrame, folder: Path, out: str, n_boot: int) -> tuple[float, float]:
    """Wall and CPU seconds of `eigdist analyze` on these trials (CPU time is what a shared machine's load
    disturbs least)."""
    from analysis.report import save_table
    from eigdist.cli.main import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        for p, rows in trials.groupby("participant"):
            save_table(rows, Path(tmp) / f"{p}_trials.csv")
        start, cpu = time.perf_counter(), time.process_time()
        code = cli(["analyze", tmp, "--out", out, "--stimuli", str(folder), "--n-boot", str(n_boot)])
        if code:
            raise SystemExit(f"eigdist analyze exited {code}")
        return time.perf_counter() - start, time.process_time() - cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stimuli")
    ap.add_argument("--true", default="frontend:lgg")
    ap.add_argument("--observers", type=int, default=6)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--labs", type=int, default=0, help="recovery: labs to simulate (no analyze)")
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--analyze", help="run `eigdist analyze` on one lab into this folder and time it")
    ap.add_argument("--linear", action="store_true", help="recovery of w = (½, ½) on the linear layers of the tests")
    args = ap.parse_args()
    if not (args.stimuli or args.linear):
        ap.error("--stimuli is required without --linear")
    folder = Path(args.stimuli) if args.stimuli else None
    if args.labs and (args.linear or shares(args.true)):
        mixture_recovery(args, folder)
    elif args.labs:
        wins, p_best, start = 0, [], time.perf_counter()
        for seed in range(args.labs):
            trials, sens = lab(folder, args.true, args.observers, args.trials, seed)
            fits = fit_thresholds(trials.assign(alpha_max=trials["alpha_ceiling"]),
                                  options=FitOptions(gof_draws=0, intervals=False))
            table = compare_models(trials, sens, fits, CompareOptions(n_boot=args.n_boot, seed=seed)).comparison
            first = table.iloc[0]
            wins += f"{first['model']}:{first['layer']}" == args.true
            own = table[(table["model"] + ":" + table["layer"]) == args.true].iloc[0]
            p_best.append(own["p_best"])
        print(f"{args.true}: best in {wins} of {args.labs} labs ({args.observers} observers, {args.trials} trials "
              f"per item); median P(best) {np.median(p_best):.2f}; {time.perf_counter() - start:.0f} s")
    if args.analyze:
        from analysis import comparison_tables

        trials, _ = lab(folder, args.true, args.observers, args.trials, 0)
        kept = comparison_tables.mixture
        print(f"eigdist analyze: {len(trials)} trials, {args.observers} observers, {args.n_boot} draws "
              "(wall s, CPU s; alternating, twice each):")
        for run in range(4):
            mixed = run % 2 == 1
            comparison_tables.mixture = kept if mixed else (lambda *a: "no mixture: switched off by the benchmark")
            wall, cpu = timed_analyze(trials, folder, args.analyze + ("" if mixed else "_without_mixture"), args.n_boot)
            print(f"  {'with' if mixed else 'without'} the mixture: {wall:.0f} s wall, {cpu:.1f} s CPU")
        comparison_tables.mixture = kept
        print(pd.read_csv(Path(args.analyze) / "mixture.csv").to_string())
        print(pd.read_csv(Path(args.analyze) / "comparison.csv")[["model", "layer", "bits", "ci_low", "ci_high",
                                                                  "p_best", "explainable"]].to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
