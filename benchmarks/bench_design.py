"""Offline design selection: its time, and the gain simulated labs see at equal trial budget.

Speed: ``select`` over N candidate items × L layers (random log-normal sensitivities, 20 images).
Gain: a synthetic pool of linear layers (per image, layer m is A_m = G + σ R_m on a d-pixel patch, F_m =
A_mᵀA_m; the pool holds every layer's max/min eigendistortions, the generalized top/bottom pair of every
layer pair and random directions, s_m(v) = vᵀF_m v exactly). Labs of Weibull observers whose threshold is
k·c_p/√s_X(v) (X the true layer, c_p log-normal) answer constant-stimulus trials (``analysis.simulate``);
the comparison's cross-validated log-likelihood (``analysis.comparison``) names the layer. Designs at
equal trials per observer: ``selected`` (``eigdist_core.design_criterion.select``), ``random`` (random
items, two per image, ``step`` trials each) and ``own-pair`` (each layer's max and min items, the fixed
grid's D design, layers and images in turn).

Labs answer constant stimuli around the true threshold, or (``--method quest``) QUEST+ tracks
(``experiments.staircase``), both as Weibull draws (``analysis.simulate``), or (``--method engine``, a built
pool only) through the experiment's trial engine: model observers seeing through the true layer, one session
each on the design's subset (:class:`EngineLabs`). ``--observers 1 2 4 8`` runs every count; the report prints
accuracy per true layer, the issue's rule per true layer and other design (:func:`rule`: ≥ 10 points ahead at
N trials, or as accurate at a measured N′ ≤ 0.6 N; so give budgets that hold 0.6 N, e.g. 20 40 60 100), with
95 % Wilson intervals and whether one lab turns the verdict, and the confusion matrices, and draws the power
figure.

    python benchmarks/bench_design.py --speed                       # 10,000 items × 20 layers
    python benchmarks/bench_design.py --gain --labs 20 --out out/design
    python benchmarks/bench_design.py --gain --budgets 40 --observers 1 4 8 --method quest --out out/q
    python benchmarks/bench_design.py --tables out/design/design_gain.csv out/q/design_gain.csv --out out/all
    python benchmarks/bench_design.py --gain --make-pool out/pool --labs 10 --budgets 20 40 80 --observers 2
    python benchmarks/bench_design.py --gain --pool out/pool/pool --labs 10 ...    # that pool, built already
    python benchmarks/bench_design.py --gain --pool out/pool/pool --method engine --labs 10 --budgets 20 40
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.linalg
import scipy.stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.comparison import CompareOptions, cross_validate, folds, levels  # noqa: E402
from analysis.simulate import simulate_trials  # noqa: E402
from eigdist_core.contract import L2_MODEL, SELECTION_FIELDS, TRACK_KEY, candidate_name  # noqa: E402
from eigdist_core.design_criterion import Constraints, pair_contrasts, select, trial_divergence  # noqa: E402

DESIGNS = ("selected", "random", "own-pair")


def speed(n_items: int, n_layers: int, budget: int) -> None:
    rng = np.random.default_rng(0)
    s = np.exp(rng.normal(size=(n_items, n_layers)))
    image = np.repeat(np.arange(20), -(-n_items // 20))[:n_items]
    start = time.perf_counter()
    cpu = time.process_time()
    design = select(pair_contrasts(s), image, trial_divergence(3.0, 0.02, 0.5), Constraints(budget=budget))
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"| {n_items} items × {n_layers} layers, budget {budget} | {took:.1f} s ({cpu:.1f} s CPU) | "
          f"{int((design.trials > 0).sum())} items, worst pair {design.information.min():.3g} nats, "
          f"criterion {design.value:.3g} |")


def synthetic_pool(n_images: int, n_layers: int, dim: int, sigma: float, n_random: int, seed: int) -> pd.DataFrame:
    """One row per item: image, source (what made it), and s under each layer (columns L0, L1, …)."""
    rng = np.random.default_rng(seed)
    rows = []
    for im in range(n_images):
        g = rng.normal(size=(dim, dim))
        fs = [(a.T @ a) for a in (g + sigma * rng.normal(size=(n_layers, dim, dim)))]
        vectors, sources = [], []
        for m, f in enumerate(fs):
            vec = np.linalg.eigh(f)[1]
            vectors += [vec[:, -1], vec[:, 0]]
            sources += [f"L{m}:max", f"L{m}:min"]
        for a in range(n_layers):
            for b in range(a + 1, n_layers):
                gen = scipy.linalg.eigh(fs[a], fs[b])[1]
                vectors += [gen[:, -1], gen[:, 0]]
                sources += [f"L{a}/L{b}:top", f"L{a}/L{b}:bottom"]
        vectors += list(rng.normal(size=(n_random, dim)))
        sources += ["random"] * n_random
        for v, source in zip(vectors, sources):
            v = v / np.linalg.norm(v)
            rows.append({"image_id": f"img{im:02d}", "source": source, **{f"L{m}": float(v @ f @ v)
                                                                           for m, f in enumerate(fs)}})
    pool = pd.DataFrame(rows)
    pool["item_id"] = [f"{r.image_id}__{r.source}__{i}" for i, r in enumerate(pool.itertuples())]
    return pool


POOL_LAYERS = ("conv1", "maxpool", "layer1", "layer2", "layer3")


def make_pool(folder: Path) -> Path:
    """Build the benchmark's real pool: resnet18 (random:0) conv1…layer3 at 16 × 16 grey, max/min/random, on
    the 12 built-in images and 8 of them turned by 90° (20 images, 300 items), exact solver; return the set."""
    from eigdist_core.build import build_set
    from eigdist_core.images import BUILTIN_IMAGES, load_image

    folder.mkdir(parents=True, exist_ok=True)
    turned = []
    for name in BUILTIN_IMAGES[:8]:
        image = load_image(name, size=16, channels=1).numpy()[0]
        np.save(folder / f"{name}_turned.npy", np.ascontiguousarray(np.rot90(image)))
        turned.append(str(folder / f"{name}_turned.npy"))
    images = ", ".join(f'"{i}"' for i in [*BUILTIN_IMAGES, *turned])
    models = "".join(f'\n[[models]]\nspec = "resnet18:{layer}"\nweights = "random:0"\n' for layer in POOL_LAYERS)
    (folder / "pool.toml").write_text(f'name = "pool"\nimages = [{images}]\ncolor = "grey"\nsize = 16\n'
                                      'value_range = [0.2, 0.8]\nalpha_max = 2.0\ndirections = ["max", "min", "random"]\n'
                                      f'solver = "exact"\nresponse_points = 3\n{models}')
    return build_set(folder / "pool.toml", folder / "pool", jobs=2, progress=False)


def built_pool(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    """A built set's items as :func:`synthetic_pool` rows (its layers as columns), and the layer names.

    Items some layer sees as s = 0 are dropped (the comparison predicts them at chance). The labs show
    every α (no ceiling), so the selection's ceiling and display exclusions are not applied here.
    """
    from analysis.design_selection import read_pool

    pool = read_pool(folder)
    items = {it["item_id"]: it for it in pool.stimuli.items}
    sources = [f"{candidate_name(items[i]['model'], items[i]['layer'], items[i]['weights'])}:{items[i]['direction']}"
               for i in pool.item_ids]
    frame = pd.DataFrame({"image_id": pool.image_ids, "source": sources, "item_id": pool.item_ids,
                          **{name: pool.s[:, m] for m, name in enumerate(pool.layers)}})
    return frame[(pool.s > 0).all(axis=1)].reset_index(drop=True), pool.layers


def design_trials(pool: pd.DataFrame, layers: list[str], design: str, budget: int, step: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Trials per pool item of one design at ``budget`` trials per observer."""
    image = pd.factorize(pool["image_id"])[0]
    n = np.zeros(len(pool), int)
    if design == "selected":
        return select(pair_contrasts(pool[layers].to_numpy()), image, trial_divergence(3.0, 0.02, 0.5),
                      Constraints(budget=budget, step=step)).trials
    pairs = budget // (2 * step)
    if design == "random":
        for im in rng.permutation(image.max() + 1)[:pairs]:
            n[rng.choice(np.flatnonzero(image == im), 2, replace=False)] = step
        left = budget - n.sum()
        n[rng.choice(np.flatnonzero(n == 0), left // step, replace=False)] = step
        return n
    ends = [[(image == im) & (pool["source"] == f"{layer}:{end}").to_numpy() for end in ("max", "min")]
            for im in range(image.max() + 1) for layer in layers]  # own-pair: layers, then images, in turn
    ends = [pair for pair in ends if pair[0].any() and pair[1].any()]  # both ends in the pool
    for p in range(pairs):
        for end in ends[p % len(ends)]:
            n[end] += step
    return n


def lab(pool: pd.DataFrame, trials: np.ndarray, true: str, observers: int, seed: int,
        method: str = "constant") -> pd.DataFrame:
    """Trial rows of ``observers`` Weibull observers seeing through ``true``: constant stimuli around the true
    threshold, or ``quest``: the experiment's QUEST+ track per item (α_max 4 × the largest true threshold shown,
    the track's default three decades below it)."""
    rng = np.random.default_rng(seed)
    s = pool[true].to_numpy()
    shown = np.flatnonzero(trials)
    scale = np.exp(np.median(0.5 * np.log(s)))
    out = []
    for p in range(observers):
        factor = np.exp(rng.normal(0, 0.2))
        truth = pd.DataFrame({
            "participant": f"p{p:02d}", "image_id": pool["image_id"].to_numpy()[shown], "model": "syn",
            "layer": pool["item_id"].to_numpy()[shown], "weights": "none", "direction": "max",
            "threshold": 0.05 * factor * scale / np.sqrt(s[shown]), "n": trials[shown]})
        track = {"alpha_max": 1e9}
        if method == "quest":
            from experiments.staircase import make_track

            track = {"method": "quest", "make_track": make_track, "alpha_max": 4 * float(truth["threshold"].max())}
        for n, group in truth.groupby("n"):
            rows = simulate_trials(group[[*TRACK_KEY, "threshold"]], n_trials=int(n), seed=int(rng.integers(2**31)),
                                   **track)
            out.append(rows.assign(item_id=rows["layer"]))
    return pd.concat(out, ignore_index=True)


class EngineLabs:
    """Labs through the experiment's trial engine (``tests.recovery_labs.engine_lab``, as bench_recovery's): model
    observers (additive noise on the true layer's responses) each run one session of QUEST+ tracks on the
    design's subset of the built pool (written with its ``selection.trials``, which the session plans).

    Every observer's σ puts the pool's median item at ``threshold`` (default: the selection's typical threshold,
    alpha_max · 10^−1.5), whatever the subset: the same observers for every design.
    """

    def __init__(self, folder: Path, threshold: float | None, scratch: Path) -> None:
        import torch

        from eigdist_core.stimulus_set import StimulusSet
        from tests.recovery_labs import EngineLab, readout_linearity

        torch.set_num_threads(1)
        self.parent, self.pool = StimulusSet.open(folder), EngineLab.open(folder)
        self.threshold = threshold or float(self.parent.manifest["alpha_max"]) * 10 ** -1.5
        scratch.mkdir(parents=True, exist_ok=True)
        self.scratch, self.subsets = Path(tempfile.mkdtemp(dir=scratch)), {}
        for spec in self.specs().values():  # σ from the pool, before any subset
            rho, above = readout_linearity(self.pool, {spec: 1.0}, self.threshold)
            print(f"engine labs: {spec} at the median threshold {self.threshold:.3g}: ρ {rho.min():.2f}–{rho.max():.2f}"
                  f" (1: thresholds follow s), {above} of {len(rho)} above the displayable maximum")

    def measurable(self, pool: pd.DataFrame, linear_only: bool = False) -> pd.DataFrame:
        """The items of ``pool`` that ``eigdist design select`` keeps at this threshold (its exclusions: a predicted
        threshold above the item's ceiling or below the display's step under any layer, too few per image);
        ``linear_only``: also without the items the sensitivity table flags ``nonlinear`` under any layer."""
        from analysis.design_selection import Observer, exclusions, read_pool

        excluded = set(exclusions(read_pool(self.parent.path), Observer(typical_threshold=self.threshold), per_image=2))
        if linear_only:
            excluded |= set(self.pool.sens.loc[self.pool.sens["nonlinear"].astype(str).str.lower() == "true", "item_id"])
        kept = pool[~pool["item_id"].isin(excluded)]
        return kept[kept.groupby("image_id")["item_id"].transform("size") >= 2].reset_index(drop=True)

    def specs(self) -> dict[str, str]:
        """Pool column (candidate name) → the model:layer an observer sees through."""
        sens = self.pool.sens.drop_duplicates(["model", "layer", "weights"])
        return {candidate_name(r.model, r.layer, r.weights): f"{r.model}:{r.layer}"
                for r in sens.itertuples() if (r.model, r.layer, r.weights) != L2_MODEL}

    def __call__(self, pool: pd.DataFrame, trials: np.ndarray, true: str, observers: int, seed: int) -> pd.DataFrame:
        from eigdist_core.stimulus_subset import write_subset
        from tests.recovery_labs import CachedSource, EngineLab, engine_lab

        key = tuple(trials)
        if key not in self.subsets:
            folder = self.scratch / f"subset{len(self.subsets)}"
            chosen = {i: int(n) for i, n in zip(pool["item_id"], trials) if n}
            stub = {f: None for f in SELECTION_FIELDS if f != "trials"}
            subset = write_subset(self.parent, folder, chosen, {**stub, "criterion": "bench_design"})
            self.subsets[key] = EngineLab(CachedSource(subset), self.pool.sens[self.pool.sens["item_id"].isin(chosen)],
                                          self.pool.models, self.pool.readouts)
        return engine_lab(self.subsets[key], self.specs()[true], observers=observers, per_condition=1, seed=seed,
                          root=self.scratch, threshold=self.threshold)


def sensitivity_rows(pool: pd.DataFrame, layers: list[str]) -> pd.DataFrame:
    """The comparison's sensitivity table of the pool: every layer and the L2 baseline (s = 1)."""
    frames = [pd.DataFrame({"item_id": pool["item_id"], "model": "syn", "layer": m, "weights": "none", "s": pool[m]})
              for m in layers]
    l2 = pd.DataFrame({"item_id": pool["item_id"], "model": L2_MODEL[0], "layer": L2_MODEL[1],
                       "weights": L2_MODEL[2], "s": 1.0})
    return pd.concat([*frames, l2], ignore_index=True)


def identify(trials: pd.DataFrame, sens: pd.DataFrame, layers: list[str]) -> str:
    """The layer with the largest cross-validated log-likelihood (the comparison's score, no bootstrap)."""
    lv = levels(trials, sens[sens["item_id"].isin(set(trials["item_id"]))], None)
    ll, _ = cross_validate(lv, folds(lv.table), CompareOptions(n_boot=1))
    total = {c[1]: np.nansum(ll[i]) for i, c in enumerate(lv.candidates) if c[1] in layers}
    return max(total, key=total.get)


def gain(args: argparse.Namespace) -> pd.DataFrame:
    if args.pool:
        pool, layers = built_pool(args.pool)
        print(f"pool: {args.pool}: {len(pool)} items, {pool['image_id'].nunique()} images, {len(layers)} layers")
    else:
        layers = [f"L{m}" for m in range(args.layers)]
        pool = synthetic_pool(args.images, args.layers, args.dim, args.sigma, args.random, args.seed)
        print(f"pool: {len(pool)} items, {args.images} images, {args.layers} layers (d = {args.dim}, σ = {args.sigma})")
    engine = EngineLabs(args.pool, args.threshold, args.scratch) if args.method == "engine" else None
    if engine:  # the engine's tracks stop at each item's ceiling: every design draws from what a lab can measure
        pool = engine.measurable(pool, args.linear_only)
        print(f"engine labs: {len(pool)} measurable items (eigdist design select's exclusions at the threshold)")
    sens = sensitivity_rows(pool, layers)
    rows = []
    for observers in args.observers:
        for budget in args.budgets:
            for d, design in enumerate(DESIGNS):
                if design not in args.designs:
                    continue
                for lab_seed in range(args.first_lab, args.first_lab + args.labs):
                    rng = np.random.default_rng([args.seed, budget, d, lab_seed])
                    trials = design_trials(pool, layers, design, budget, args.step, rng)
                    for t, true in enumerate(layers):
                        seed = hash((budget, d, lab_seed, t) + ((observers,) if observers != 2 else ())) % 2**31
                        data = (engine(pool, trials, true, observers, seed) if engine
                                else lab(pool, trials, true, observers, seed, args.method))
                        rows.append((observers, budget, design, lab_seed, true, identify(data, sens, layers)))
    return pd.DataFrame(rows, columns=["observers", "budget", "design", "lab", "true", "chosen"])


def report(table: pd.DataFrame, out: Path | None, budget: int, observers: int) -> None:
    """Accuracy per true layer, the issue's rule per true layer, confusion matrices; the power figure into ``out``."""
    table["hit"] = table["true"] == table["chosen"]
    keys = ["observers", "budget", "design"]
    acc = table.pivot_table(index=keys, columns="true", values="hit", aggfunc="mean")
    acc["all"] = table.groupby(keys)["hit"].mean()
    print("\nidentification accuracy per true layer (share of labs):")
    print(acc.round(2).to_string())
    print("\n" + "\n".join(rule_lines(rule(table))))
    for (k, b), part in table.groupby(["observers", "budget"]):
        for design in DESIGNS:
            cell = part[part["design"] == design]
            if len(cell):
                print(f"\nconfusion, {design}, {b} trials per observer, {k} observers (rows: true, columns: named):")
                print(pd.crosstab(cell["true"], cell["chosen"]).to_string())
    if out is not None:
        figure(table, out, budget, observers)


def wilson(hits: int, labs: int) -> str:
    """The share of labs and its 95 % Wilson interval, e.g. ``0.90 [0.77, 0.96]``."""
    low, high = scipy.stats.binomtest(int(hits), int(labs)).proportion_ci(method="wilson")
    return f"{hits / labs:.2f} [{low:.2f}, {high:.2f}]"


def passes(mine: float, fewer: dict[int, float], theirs: float) -> str:
    """The rule for one true layer: "+10" when ``mine`` ≥ ``theirs`` + 0.10, else the smallest budget N′ of
    ``fewer`` (N′ → selected's accuracy, N′ ≤ 0.6 N) that reaches ``theirs``, else "fail"."""
    if mine >= theirs + 0.1 - 1e-9:
        return "+10"
    reached = [b for b, a in fewer.items() if a >= theirs - 1e-9]
    return f"{min(reached)} trials" if reached else "fail"


def rule(table: pd.DataFrame) -> pd.DataFrame:
    """The issue's bar per observers × budget N × other design × true layer (:func:`passes`; accuracies are shares
    of labs), and whether one lab of the selected design more or less would turn the verdict (``one_lab``)."""
    counts = table.groupby(["observers", "budget", "design", "true"])["hit"].agg(["sum", "count"])
    acc = counts["sum"] / counts["count"]
    rows = []
    for (k, n, other, true), theirs in acc.items():
        if other == "selected" or (k, n, "selected", true) not in acc.index:
            continue
        mine = acc[(k, n, "selected", true)]
        fewer = {b: a for (kk, b, d, t), a in acc.items() if (kk, d, t) == (k, "selected", true) and b <= 0.6 * n}
        verdict = passes(mine, fewer, theirs)
        one = (1 if verdict == "fail" else -1) / counts.loc[(k, n, "selected", true), "count"]
        turned = passes(mine + one, {b: a + one for b, a in fewer.items()}, theirs)
        rows.append({"observers": k, "budget": n, "other": other, "true": true,
                     "selected": wilson(*counts.loc[(k, n, "selected", true)]),
                     "theirs": wilson(*counts.loc[(k, n, other, true)]), "margin": round(mine - theirs, 2),
                     "passes": verdict, "one_lab": (turned == "fail") != (verdict == "fail")})
    return pd.DataFrame(rows)


def rule_lines(verdict: pd.DataFrame) -> list[str]:
    """The rule's table (markdown) and, per observers × budget × other design, whether every true layer passes."""
    lines = ["rule (per true layer): selected ≥ other + 0.10 at N trials (+10), or selected at N′ ≤ 0.6 N ≥ other "
             "at N (N′ trials); shares of labs with 95 % Wilson intervals",
             "| observers | trials N | other | true layer | selected at N | other at N | margin | passes | one lab turns it |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.observers} | {r.budget} | {r.other} | {r.true} | {r.selected} | {r.theirs} | {r.margin:+.2f} | "
              f"{r.passes} | {'yes' if r.one_lab else ''} |" for r in verdict.itertuples()]
    lines.append("\nevery true layer:")
    for (k, n, other), part in verdict.groupby(["observers", "budget", "other"]):
        failed = part.loc[part["passes"] == "fail", "true"].tolist()
        close = part.loc[part["one_lab"], "true"].tolist()
        lines.append(f"  {k} observers, {n} trials, vs {other}: {'holds' if not failed else 'fails'}"
                     + (f" ({', '.join(failed)})" if failed else "")
                     + (f"; one lab turns {', '.join(close)}" if close else ""))
    return lines


def figure(table: pd.DataFrame, out: Path, budget: int, observers: int) -> None:
    """Accuracy against trials (at ``observers``) and against observers (at ``budget``), thick: all true layers,
    thin: each; and the three designs' confusion matrices at ``budget`` trials and ``observers`` observers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5))
    panels = (("budget", "observers", observers), ("observers", "budget", budget))
    for ax, (axis, fixed, value) in zip(axes[0, :2], panels):
        part = table[table[fixed] == value]
        for design, colour in zip(DESIGNS, ("C0", "C1", "C2")):
            mine = part[part["design"] == design]
            for _, layer in mine.groupby("true"):
                curve = layer.groupby(axis)["hit"].mean()
                ax.plot(curve.index, curve.to_numpy(), color=colour, lw=0.7, alpha=0.35)
            curve = mine.groupby(axis)["hit"].mean()
            ax.plot(curve.index, curve.to_numpy(), color=colour, marker="o", lw=2, label=design)
        ticks = sorted(part[axis].unique())
        label = "trials per observer" if axis == "budget" else "observers per lab"
        ax.set(xlabel=label, ylabel="identification accuracy", ylim=(0, 1.02), xscale="log", xticks=ticks,
               xticklabels=[str(t) for t in ticks],
               title=f"at {value} {'observers' if fixed == 'observers' else 'trials per observer'}")
        ax.minorticks_off()
        ax.legend(fontsize=8)
    cell = table[(table["budget"] == budget) & (table["observers"] == observers)]
    if cell.empty:
        raise SystemExit(f"no labs at {budget} trials and {observers} observers: give --figure-budget and "
                         "--figure-observers of a run")
    worst = cell.groupby(["design", "true"])["hit"].mean().unstack("design").reindex(columns=list(DESIGNS))
    worst.index = [t.split(" ")[0] for t in worst.index]  # a built pool's layers without their weights
    worst.plot.bar(ax=axes[0, 2], color=("C0", "C1", "C2"), legend=False, ylim=(0, 1.02), rot=30,
                   title=f"per true layer ({budget} trials, {observers} observers)", ylabel="identification accuracy")
    layers = sorted(table["true"].unique())
    for ax, design in zip(axes[1], DESIGNS):
        part = cell[cell["design"] == design]
        matrix = pd.crosstab(part["true"], part["chosen"]).reindex(index=layers, columns=layers, fill_value=0)
        ax.imshow(matrix.to_numpy(), cmap="Blues", vmin=0, vmax=max(1, matrix.to_numpy().sum(axis=1).max()))
        for (r, c), v in np.ndenumerate(matrix.to_numpy()):
            ax.text(c, r, str(v), ha="center", va="center", fontsize=8,
                    color="white" if v > matrix.to_numpy().sum(axis=1).max() / 2 else "black")
        ax.set(xticks=range(len(layers)), yticks=range(len(layers)), xlabel="named", ylabel="true",
               title=f"{design}: confusion ({budget} trials, {observers} obs.)")
        ax.set_xticklabels([t.split(" ")[0] for t in layers], rotation=45, fontsize=7)
        ax.set_yticklabels([t.split(" ")[0] for t in layers], fontsize=7)
    fig.suptitle("true layer identified by simulated labs (not the criterion); thin lines: each true layer")
    fig.tight_layout()
    fig.savefig(out / "design_power.png", dpi=110)
    print(f"\nwrote {out}/design_gain.csv and {out}/design_power.png")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--speed-layers", type=int, default=20)
    ap.add_argument("--speed-budget", type=int, default=2000)
    ap.add_argument("--gain", action="store_true")
    ap.add_argument("--pool", type=Path, help="a built set with sensitivities (default: the synthetic pool)")
    ap.add_argument("--make-pool", type=Path, help="build the real pool (resnet18, 20 images) into this folder, "
                    "then use it")
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument("--random", type=int, default=10, help="random directions per image")
    ap.add_argument("--observers", type=int, nargs="+", default=[2], help="observers per lab (one run per count)")
    ap.add_argument("--designs", nargs="+", choices=DESIGNS, default=list(DESIGNS))
    ap.add_argument("--method", choices=("constant", "quest", "engine"), default="constant",
                    help="how the labs place trials: constant stimuli around the true threshold, QUEST+ tracks, or "
                    "model observers through the experiment's trial engine (a built --pool only)")
    ap.add_argument("--threshold", type=float, help="engine: the pool's median item's threshold (α; default "
                    "alpha_max · 10^-1.5, the selection's typical threshold)")
    ap.add_argument("--linear-only", action="store_true", help="engine: leave out the items the sensitivity table "
                    "flags nonlinear under any layer, for every design")
    ap.add_argument("--scratch", type=Path, default=Path("out/design_engine"), help="engine: subsets and sessions")
    ap.add_argument("--budgets", type=int, nargs="+", default=[100, 200, 400])
    ap.add_argument("--step", type=int, default=10)
    ap.add_argument("--labs", type=int, default=10)
    ap.add_argument("--first-lab", type=int, default=0, help="the first lab's seed (more labs of a run: --tables)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--tables", type=Path, nargs="+", help="report from these design_gain.csv files (no labs run)")
    ap.add_argument("--figure-budget", type=int, default=40, help="trials per observer of the figure's "
                    "observers axis and confusion matrices")
    ap.add_argument("--figure-observers", type=int, default=2, help="observers of its trials axis and matrices")
    args = ap.parse_args()
    if args.make_pool:
        args.pool = make_pool(args.make_pool)
    if args.method == "engine" and not args.pool:
        ap.error("--method engine runs the experiment's engine on a built set: give --pool or --make-pool")
    if args.speed:
        print("| selection | time | result |\n|---|---|---|")
        speed(args.items, args.speed_layers, args.speed_budget)
    if args.tables:
        table = pd.concat([pd.read_csv(t) for t in args.tables], ignore_index=True)
        report(table, args.out, args.figure_budget, args.figure_observers)
    if args.gain:
        start = time.perf_counter()
        table = gain(args)
        if args.out is not None:  # the labs first: the figure can be redrawn from it (--tables)
            args.out.mkdir(parents=True, exist_ok=True)
            table.to_csv(args.out / "design_gain.csv", index=False)
        report(table, args.out, args.figure_budget, args.figure_observers)
        print(f"gain: {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
