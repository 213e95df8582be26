"""The model comparison on simulated labs: recovery of the observers' layer, and the time of `eigdist analyze`.

Observers are Weibull observers (analysis.simulate) whose threshold for item v is k·c_p/√s_X(v), the
threshold an additive-noise observer seeing through layer X has in its linear range (c_p: the
participant's sensitivity, log-normal). The set must have a sensitivity table (``stimuli build`` writes it).

    python benchmarks/bench_comparison.py --stimuli stimuli/demo_quick --true frontend:lgg --labs 20
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
    mine = sens[(sens["model"] + ":" + sens["layer"]) == true].set_index("item_id")["s"]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stimuli", required=True)
    ap.add_argument("--true", default="frontend:lgg")
    ap.add_argument("--observers", type=int, default=6)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--labs", type=int, default=0, help="recovery: labs to simulate (no analyze)")
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--analyze", help="run `eigdist analyze` on one lab into this folder and time it")
    args = ap.parse_args()
    folder = Path(args.stimuli)
    if args.labs:
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
        from analysis.report import save_table

        trials, _ = lab(folder, args.true, args.observers, args.trials, 0)
        with tempfile.TemporaryDirectory() as tmp:
            for p, rows in trials.groupby("participant"):
                save_table(rows, Path(tmp) / f"{p}_trials.csv")
            from eigdist.cli.main import main as cli

            start = time.perf_counter()
            code = cli(["analyze", tmp, "--out", args.analyze, "--stimuli", str(folder), "--n-boot", str(args.n_boot)])
            print(f"eigdist analyze: {len(trials)} trials, {args.observers} observers: exit {code} in "
                  f"{time.perf_counter() - start:.0f} s")
        print(pd.read_csv(Path(args.analyze) / "comparison.csv")[["model", "layer", "bits", "ci_low", "ci_high",
                                                                  "p_best", "explainable"]].to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
