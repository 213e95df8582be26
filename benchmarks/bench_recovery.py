"""Recovery and calibration of the model comparison (issue 35) on simulated labs (tests/recovery_labs.py).

``recovery``: labs of additive-noise model observers seeing through a true layer of the recovery set (five
layers + L2, built once into --set), each observer one session through the experiment's trial engine
without a window; per true layer the share of labs whose best cross-validated candidate is the true layer,
and the median margin (bits per trial) of the true layer over the best other candidate (single candidates
only: the mixture is scored, not ranked, so it is not fitted). In the labs of the first true layer the same
trials are scored again with that layer listed twice (P(best) of each copy). Every lab is also a
calibration lab through the engine: candidates a and b are the true layer's ln s plus independent
N(0, τ²) per item (--perturbation; equally good by construction), and the lab's 95 % interval of a − b
(the comparison's crossed bootstrap) either covers 0 or not.
``mixture``: labs of model observers seeing through two layers at once (--shares A=0.5,B=0.5: s = Σ share_m
s_m/g_m, tests/recovery_labs.Readout), through the engine; the mixture's shares within ±0.1 of the truth (first
the readout's linearity at the items' thresholds, readout_linearity; --labs 0: that alone). Their
noise puts the median item's threshold at --threshold (default 0.25 α, where the readout is linear in α over
the tested range; at the recovery labs' 1.0 it is not, and its thresholds do not follow the mixture's s).
--decompose fits each lab twice more at its own levels, with expected counts instead of the answers: those of
the observers' own psychometric function at the response distances they saw (the limit of many trials: what
the data say) and those of observers that follow the law exactly (what the estimator gives with the law
true); --trials-dir keeps each lab's trials so that a second analysis skips the engine.
``calibration``: Weibull observers on synthetic labs of many images; candidates a and b are the true
layer with independently perturbed ln s (equally good by construction); the share of labs whose 95 %
interval of the paired difference a − b (the comparison's own bootstrap draws) excludes 0.

--csv appends one row per lab as it finishes, so a run cut short keeps its labs; --tables prints the table
of such files.

    python benchmarks/bench_recovery.py recovery --labs 100 [--budget-min 25] [--first-seed 0] [--csv FILE]
    python benchmarks/bench_recovery.py recovery --tables FILE ...   (the table of earlier runs together)
    python benchmarks/bench_recovery.py mixture --labs 40 [--shares frontend:ln=0.5,frontend:lgg=0.5] [--threshold 0.25]
        [--drop-nonlinear] [--decompose] [--trials-dir DIR] [--csv FILE]
    python benchmarks/bench_recovery.py mixture --tables FILE ...
    python benchmarks/bench_recovery.py calibration --labs 200 [--perturbation 0.5] [--bootstraps]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.comparison import CompareOptions, levels  # noqa: E402
from analysis.comparison_tables import compare_models  # noqa: E402
from eigdist_core.contract import CONDITION_KEY, NOISE_CEILING  # noqa: E402
from benchmarks.bench_comparison import shares  # noqa: E402
from analysis.mixture import fit_rows, layers_of, per_unit_log_s  # noqa: E402
from tests.recovery_labs import (MIXTURE_THRESHOLD, EngineLab, build_set, engine_lab, expected_correct,  # noqa: E402
                                 perturbed_pair, readout_linearity, synthetic_items, weibull_lab, with_copy)

TRUE_LAYERS = ("frontend:ln", "frontend:lgg", "frontend:onoff")


def outcome(table: pd.DataFrame, true: str) -> dict:
    """Whether the true layer ranks first, its margin over the best other candidate (bits/trial), its P(best)."""
    models = table[table["model"] != NOISE_CEILING]
    name = models["model"] + ":" + models["layer"]
    own, others = models[name == true].iloc[0], models[name != true]
    return {"best": name.iloc[0] == true, "margin": own["bits"] - others["bits"].max(), "p_best": own["p_best"]}


def run_recovery(args: argparse.Namespace) -> pd.DataFrame:
    """Labs round-robin over the true layers until ``--labs`` each or the time budget; one row per lab."""
    lab, options = open_lab(args), CompareOptions(n_boot=args.n_boot, mixture=False)
    rows, start = [], time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.labs):
        for true in args.true:
            if time.perf_counter() - start > 60 * args.budget_min:
                return pd.DataFrame(rows)
            t0 = time.perf_counter()
            trials = engine_lab(lab, true, observers=args.observers, per_condition=args.per_condition, seed=seed,
                                root=Path(args.scratch))
            t1 = time.perf_counter()
            row = {"true": true, "seed": seed, **outcome(compare_models(trials, lab.sens, None, options).comparison,
                                                         true)}
            row["engine_s"], row["compare_s"] = t1 - t0, time.perf_counter() - t1
            row["p_best_copy1"] = row["p_best_copy2"] = np.nan
            if true == args.true[0]:
                twice = compare_models(trials, with_copy(lab.sens, true), None, options).comparison
                copies = twice[(twice["model"] + ":" + twice["layer"]) == true]
                row["p_best_copy1"], row["p_best_copy2"] = sorted(copies["p_best"], reverse=True)
            items = lab.sens[(lab.sens["model"] + ":" + lab.sens["layer"]) == true][["item_id"]]
            items = items.assign(ln_s=np.log(lab.sens.loc[items.index, "s"].to_numpy()))
            pair = perturbed_pair(items, args.perturbation, np.random.default_rng([seed, 35]))
            row.update(paired_interval(compare_models(trials, pair, None, replace(options, seed=seed))))
            append_row(args.csv, row)
            rows.append(row)
            print(row, flush=True)
    return pd.DataFrame(rows)


def open_lab(args: argparse.Namespace) -> EngineLab:
    import torch

    torch.set_num_threads(1)
    return EngineLab.open(build_set(Path(args.set)))


def append_row(path: str | None, row: dict) -> None:
    """Add one lab's row to ``path`` (the header with the first)."""
    if path:
        pd.DataFrame([row]).to_csv(path, mode="a", header=not Path(path).exists(), index=False)


def recovery_table(labs: pd.DataFrame) -> str:
    lines = ["| true layer | labs | best in | fraction best | median margin, bits/trial (min) | median P(best) |",
             "|---|---|---|---|---|---|"]
    for true, g in labs.groupby("true", sort=False):
        lines.append(f"| {true} | {len(g)} | {int(g['best'].sum())} | {g['best'].mean():.2f} | "
                     f"{g['margin'].median():.4f} ({g['margin'].min():.4f}) | {g['p_best'].median():.2f} |")
    twice = labs.dropna(subset=["p_best_copy1"])
    if len(twice):
        lines += ["", f"Layer listed twice ({twice['true'].iloc[0]}, {len(twice)} labs): P(best) of the larger copy "
                  f"median {twice['p_best_copy1'].median():.2f}, max {twice['p_best_copy1'].max():.2f}; "
                  f"of both together median {(twice['p_best_copy1'] + twice['p_best_copy2']).median():.2f}"]
    covers = labs["covers"].astype(bool)
    lines += ["", f"Calibration through the engine (the same labs; a, b = true ln s + N(0, τ²) each): the 95 % "
              f"interval of a − b covers 0 in {int(covers.sum())} of {len(labs)} labs ({covers.mean():.3f}; "
              f"significant at 5 %: {1 - covers.mean():.3f}); sd of a − b across labs {labs['diff'].std():.4f}, "
              f"median bootstrap sd {labs['sd_boot'].median():.4f}"]
    lines.append(f"\nper lab: engine {labs['engine_s'].median():.1f} s, comparison {labs['compare_s'].median():.1f} s "
                 "(medians)")
    return "\n".join(lines)


def run_mixture(args: argparse.Namespace) -> pd.DataFrame:
    """Labs of observers seeing through ``--shares``; the mixture's fitted shares and proportions w per lab."""
    lab, truth = open_lab(args), shares(args.shares)
    rho, above = readout_linearity(lab, truth, args.threshold)
    print(f"readout at threshold {args.threshold}: ρ at the items' linear-theory thresholds median "
          f"{np.median(rho):.2f} ({rho.min():.2f}–{rho.max():.2f}), sd of ln ρ {np.log(rho).std():.3f}; "
          f"{above} of {len(rho)} thresholds above the displayable maximum", flush=True)
    if args.labs == 0:
        return pd.DataFrame()
    readout, _ = lab.readout(truth, args.threshold)
    w_true = np.array(readout.gains) / sum(readout.gains)  # s = Σ c_m s_m: proportions in the table's units
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.labs):
        t0 = time.perf_counter()
        trials = mixture_trials(lab, truth, seed, args)
        t1 = time.perf_counter()
        if args.drop_nonlinear:  # items whose ρ leaves the band under a layer the observers see
            seen = (lab.sens["model"] + ":" + lab.sens["layer"]).isin(truth)
            flagged = lab.sens[lab.sens["nonlinear"].astype(bool) & seen]
            trials = trials[~trials["item_id"].isin(flagged["item_id"])]
        mix = compare_models(trials, lab.sens, None, CompareOptions(n_boot=args.n_boot, seed=seed)).mixture
        fitted = mix.set_index(mix["model"] + ":" + mix["layer"])
        row = {"seed": seed, "engine_s": t1 - t0, "compare_s": time.perf_counter() - t1}
        for (layer, share), w in zip(truth.items(), w_true):
            row[f"share:{layer}"], row[f"w:{layer}"] = fitted.loc[layer, "share"], fitted.loc[layer, "w"]
            row[f"w_true:{layer}"] = w
        row["share_error"] = max(abs(row[f"share:{layer}"] - share) for layer, share in truth.items())
        row["w_error"] = max(abs(row[f"w:{layer}"] - row[f"w_true:{layer}"]) for layer in truth)
        if args.decompose:
            for case in ("shown", "law"):
                fit = expected_shares(trials, lab.sens, expected_correct(lab, truth, trials, case == "law"))
                row.update({f"share_{case}:{layer}": fit[layer] for layer in truth})
                row[f"share_error_{case}"] = max(abs(fit[layer] - share) for layer, share in truth.items())
        append_row(args.csv, row)
        rows.append(row)
        print(row, flush=True)
    return pd.DataFrame(rows)


def mixture_trials(lab: EngineLab, truth: dict[str, float], seed: int, args: argparse.Namespace) -> pd.DataFrame:
    """The trials of lab ``seed`` through the engine, or read back from ``--trials-dir`` (written there the
    first time: the engine is deterministic given the seed, so a second analysis of the same labs skips it)."""
    path = None
    if args.trials_dir:
        path = Path(args.trials_dir) / f"T{args.threshold:g}_o{args.observers}_pc{args.per_condition}_s{seed}.pkl"
        if path.exists():
            return pd.read_pickle(path)
    trials = engine_lab(lab, truth, observers=args.observers, per_condition=args.per_condition, seed=seed,
                        root=Path(args.scratch), threshold=args.threshold)
    if path:
        trials.to_pickle(path)
    return trials


def expected_shares(trials: pd.DataFrame, sens: pd.DataFrame, p: np.ndarray) -> dict[str, float]:
    """The mixture's shares fitted to all trials (as ``mixture.csv``'s) with each level's count of correct
    answers replaced by its expectation, the sum of the trials' probabilities ``p``: the limit of infinitely
    many trials at the lab's levels (its design held fixed)."""
    lv = levels(trials, sens, None)
    keys = ["participant", "item_id", *CONDITION_KEY, "alpha"]
    expected = trials.assign(p=p).groupby(keys)["p"].sum()
    lv.table["k"] = expected.reindex(pd.MultiIndex.from_frame(lv.table[keys])).to_numpy()
    layers = layers_of(lv)
    phi = fit_rows(lv, per_unit_log_s(lv, layers)[0], [np.arange(len(lv.table))], None, CompareOptions(),
                   participants=True)[0, 3:3 + len(layers)]
    return dict(zip((f"{model}:{layer}" for model, layer, _ in layers), special.softmax(phi)))


def mixture_table(labs: pd.DataFrame, truth: dict[str, float]) -> str:
    lines = [f"Mixture {truth} through the engine, {len(labs)} labs:"]
    for column in ("share", "w"):
        error = labs[f"{column}_error"]
        hits = int((error <= 0.1).sum())
        low, high = stats.binomtest(hits, len(labs)).proportion_ci(method="exact")
        lines.append(f"  {column}: every true layer within ±0.1 in {hits} of {len(labs)} labs "
                     f"({hits / len(labs):.3f}, exact binomial 95 % interval {low:.3f}–{high:.3f}); largest error per "
                     f"lab median {error.median():.3f}, worst {error.max():.3f}")
    for case, what in (("shown", "the observers' own P(correct) at the distances shown"),
                       ("law", "observers following the law exactly")):
        if f"share_error_{case}" in labs:
            error = labs[f"share_error_{case}"]
            lines.append(f"  share, expected counts of {what} at each lab's levels: within ±0.1 in "
                         f"{int((error <= 0.1).sum())} of {len(labs)} labs; largest error median {error.median():.3f}, "
                         f"worst {error.max():.3f}")
    for layer in truth:
        lines.append(f"  {layer}: share median {labs[f'share:{layer}'].median():.3f} (true {truth[layer]}), "
                     f"w median {labs[f'w:{layer}'].median():.3f} (true {labs[f'w_true:{layer}'].iloc[0]:.3f})")
    lines.append(f"  per lab: engine {labs['engine_s'].median():.1f} s, comparison {labs['compare_s'].median():.1f} s "
                 "(medians)")
    return "\n".join(lines)


def paired_interval(result) -> dict:
    """The paired difference a − b of candidates a and b, its 95 % bootstrap interval, and whether it covers 0."""
    layers = list(result.comparison["layer"])
    a, b = layers.index("a"), layers.index("b")
    diff = result.draws[:, a] - result.draws[:, b]
    lo, hi = np.percentile(diff, [2.5, 97.5])
    point = result.comparison["bits"].iloc[a] - result.comparison["bits"].iloc[b]
    return {"diff": point, "lo": lo, "hi": hi, "covers": lo <= 0 <= hi, "sd_boot": diff.std()}


def calibration_lab(seed: int, args: argparse.Namespace) -> dict:
    """One synthetic lab: the paired difference a − b, its bootstrap interval, and whether it covers 0."""
    rng = np.random.default_rng([seed, 35])
    items = synthetic_items(args.images, args.items, spread=1.5, rng=rng)
    sens = perturbed_pair(items, args.perturbation, rng)
    trials = weibull_lab(items, observers=args.observers, trials=args.trials, seed=seed)
    result = compare_models(trials, sens, None, CompareOptions(n_boot=args.n_boot, seed=seed))
    row = {"seed": seed, **paired_interval(result)}
    if args.bootstraps:
        row.update(other_bootstraps(trials, sens, args.n_boot, seed))
    return row


def other_bootstraps(trials: pd.DataFrame, sens: pd.DataFrame, n_boot: int, seed: int) -> dict:
    """Whether the nested (D ranking's) and the pigeonhole bootstrap's intervals of a − b cover 0 in this lab."""
    from analysis.comparison import folds, levels, cross_validate
    from analysis.ranking import bootstrap_means

    lv = levels(trials, sens, None)
    ll, _ = cross_validate(lv, folds(lv.table), CompareOptions())
    layers = [c[1] for c in lv.candidates]
    pi, people = pd.factorize(lv.table["participant"], sort=True)
    ii, images = pd.factorize(lv.table["image_id"], sort=True)
    total, count = np.zeros((1, len(people), len(images))), np.zeros((1, len(people), len(images)))
    np.add.at(total[0], (pi, ii), ll[layers.index("a")] - ll[layers.index("b")])
    np.add.at(count[0], (pi, ii), lv.table["n"].to_numpy(dtype=float))
    rng = np.random.default_rng(seed)
    w = rng.multinomial(len(people), np.full(len(people), 1 / len(people)), size=n_boot)
    v = rng.multinomial(len(images), np.full(len(images), 1 / len(images)), size=n_boot)
    draws = {"nested": bootstrap_means(total, count, n_boot, seed)[:, 0],
             "pigeonhole": np.einsum("bp,bi,pi->b", w, v, total[0]) / np.einsum("bp,bi,pi->b", w, v, count[0])}
    out = {}
    for name, d in draws.items():
        lo, hi = np.percentile(d, [2.5, 97.5])
        out[f"covers_{name}"] = lo <= 0 <= hi
    return out


def run_calibration(args: argparse.Namespace) -> pd.DataFrame:
    rows = []
    for seed in range(args.labs):
        rows.append(calibration_lab(seed, args))
    labs = pd.DataFrame(rows)
    print(f"{args.labs} labs, {args.observers} observers × {args.images} images × {args.items} items × "
          f"{args.trials} trials, ln s perturbed by N(0, {args.perturbation}²), {args.n_boot} draws:")
    print(f"intervals of a − b cover 0 in {labs['covers'].mean():.3f} (significant at 5 %: {1 - labs['covers'].mean():.3f}); "
          f"sd of the difference across labs {labs['diff'].std():.4f}, median bootstrap sd {labs['sd_boot'].median():.4f} "
          f"(ratio {labs['sd_boot'].median() / labs['diff'].std():.2f})")
    for name in ("nested", "pigeonhole"):
        if f"covers_{name}" in labs:
            print(f"  {name} bootstrap instead: cover 0 in {labs[f'covers_{name}'].mean():.3f}")
    return labs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("check", choices=("recovery", "mixture", "calibration"))
    ap.add_argument("--labs", type=int, default=100, help="labs per true layer (recovery) or in all (calibration)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--observers", type=int, default=4)
    ap.add_argument("--csv", help="append one row per lab here as it finishes")
    ap.add_argument("--perturbation", type=float, default=0.5, help="calibration: sd of the noise added to ln s")
    rec = ap.add_argument_group("recovery and mixture (through the engine)")
    rec.add_argument("--set", default="out/recovery/recovery", help="the recovery set's folder (built if missing)")
    rec.add_argument("--true", nargs="+", default=list(TRUE_LAYERS))
    rec.add_argument("--shares", default="frontend:ln=0.5,frontend:lgg=0.5", help="mixture: the observers' shares")
    rec.add_argument("--threshold", type=float, default=MIXTURE_THRESHOLD,
                     help="mixture: the observers' threshold at the median item, in α (1.0: the recovery labs')")
    rec.add_argument("--drop-nonlinear", action="store_true",
                     help="mixture: fit without the items the table flags nonlinear under the observers' layers")
    rec.add_argument("--decompose", action="store_true",
                     help="mixture: also fit each lab's expected counts (the observers' own, and the law's)")
    rec.add_argument("--trials-dir", help="mixture: keep each lab's trials here, and read them back if there")
    rec.add_argument("--per-condition", type=int, default=16, help="QUEST+ trials per item and observer")
    rec.add_argument("--tables", nargs="+", help="print the table of these --csv files of earlier runs instead")
    rec.add_argument("--first-seed", type=int, default=0, help="seeds first_seed … first_seed + labs − 1")
    rec.add_argument("--budget-min", type=float, default=float("inf"), help="stop starting labs after this")
    rec.add_argument("--scratch", default="/dev/shm/eigdist_recovery", help="where sessions write their files")
    cal = ap.add_argument_group("calibration")
    cal.add_argument("--images", type=int, default=8)
    cal.add_argument("--items", type=int, default=6, help="items per image")
    cal.add_argument("--trials", type=int, default=30, help="trials per item and observer")
    cal.add_argument("--bootstraps", action="store_true", help="also the nested and the pigeonhole bootstrap")
    args = ap.parse_args()
    earlier = pd.concat(map(pd.read_csv, args.tables), ignore_index=True) if args.tables else None
    if args.check == "recovery":
        print(recovery_table(run_recovery(args) if earlier is None else earlier))
    elif args.check == "mixture":
        labs = run_mixture(args) if earlier is None else earlier
        if len(labs):
            print(mixture_table(labs, shares(args.shares)))
    else:
        labs = run_calibration(args)
        if args.csv:
            labs.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
