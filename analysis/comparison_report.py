"""The model comparison in the report: scores with the ceiling band, the matrix heat map, predictions, text."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from eigdist_core.contract import MIXTURE, NOISE_CEILING, candidate_name

from .report import _html_table as html_table

#: The explainable fraction and its interval: "n/a" in the report's table where undefined.
EXPLAINABLE = ("explainable", "explainable_low", "explainable_high")
CAPTIONS = {
    "comparison_scores.png": "Cross-validated log-likelihood of every candidate, in bits per trial relative to the "
                             "L2 (pixel) baseline, with 95 % intervals (participants and images bootstrapped as "
                             "crossed factors); the grey band is the noise ceiling's interval.",
    "comparison_matrix.png": "Cross-prediction matrix: bits per trial vs L2 of each candidate (rows) on the trials "
                             "of each layer's max and min stimuli and of the random directions (columns). The "
                             "diagonal is the question D asks.",
    "comparison_predictions.png": "Predicted (k/√s, k fitted per participant) against fitted thresholds, one panel "
                                  "per candidate (log axes; red max, blue min, grey random items).",
    "comparison_mixture.png": "Mixture proportions w_m / Σ w of s = Σ w_m s_m (in the units of the sensitivity "
                              "table) with 95 % intervals (the scores' crossed bootstrap of participants and "
                              "images, each redraw refitted).",
}


def _name(row) -> str:
    return NOISE_CEILING if row["model"] == NOISE_CEILING else candidate_name(row["model"], row["layer"], row["weights"])


def scores_figure(comparison: pd.DataFrame) -> Figure:
    """Bits per trial vs L2 per candidate with its interval, and the ceiling as a band."""
    models = comparison[comparison["model"] != NOISE_CEILING]
    ceiling = comparison[comparison["model"] == NOISE_CEILING].iloc[0]
    fig = Figure(figsize=(7, 1.4 + 0.45 * len(models)))
    ax = fig.subplots()
    y = np.arange(len(models))[::-1]
    bits = models["bits"].to_numpy(dtype=float)
    ax.barh(y, bits, color=np.where(bits >= 0, "tab:green", "tab:grey"), alpha=0.6)
    ax.errorbar(bits, y, xerr=[bits - models["ci_low"], models["ci_high"] - bits], fmt="none", color="k", capsize=3)
    if np.isfinite(ceiling["bits"]):
        ax.axvspan(ceiling["ci_low"], ceiling["ci_high"], color="0.85", zorder=0, label="noise ceiling (95 %)")
        ax.axvline(ceiling["bits"], color="0.5", lw=1)
        ax.legend(loc="best", fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, [f"{_name(r)}" for r in models.to_dict("records")], fontsize=8)
    ax.set_xlabel(f"bits per trial vs L2 (cross-validated: {models['cv'].iloc[0]})")
    fig.tight_layout()
    return fig


def matrix_figure(matrix: pd.DataFrame) -> Figure:
    """Heat map of ``matrix.csv``: candidates × sources, diverging around 0 (L2)."""
    matrix = matrix.assign(candidate=[candidate_name(*r) for r in matrix[["model", "layer", "weights"]].itertuples(
        index=False)])
    wide = matrix.pivot_table(index="candidate", columns="source", values="bits", sort=False)
    wide = wide.reindex(index=list(dict.fromkeys(matrix["candidate"])), columns=list(dict.fromkeys(matrix["source"])))
    fig = Figure(figsize=(2.5 + 1.1 * wide.shape[1], 1.5 + 0.45 * wide.shape[0]))
    ax = fig.subplots()
    values = wide.to_numpy(dtype=float)
    limit = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(wide.shape[1]), wide.columns, rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(wide.shape[0]), wide.index, fontsize=7)
    ax.set_xlabel("stimuli made by")
    fig.colorbar(image, ax=ax, label="bits per trial vs L2")
    fig.tight_layout()
    return fig


def predictions_figure(predictions: pd.DataFrame) -> Figure | None:
    """Predicted against fitted thresholds, one panel per candidate."""
    if predictions.empty:
        return None
    colours = {"max": "tab:red", "min": "tab:blue", "random": "tab:grey"}
    groups = list(predictions.groupby(["model", "layer", "weights"], sort=False))
    cols = min(4, len(groups))
    rows = -(-len(groups) // cols)
    fig = Figure(figsize=(3 * cols, 2.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (cand, sel) in zip(axes, groups):
        ok = np.isfinite(sel["predicted"]) & (sel["predicted"] > 0)
        ax.scatter(sel.loc[ok, "predicted"], sel.loc[ok, "threshold"], s=8,
                   c=[colours.get(d, "k") for d in sel.loc[ok, "direction"]])
        if ok.any():
            lo = min(sel.loc[ok, "predicted"].min(), sel["threshold"].min())
            hi = max(sel.loc[ok, "predicted"].max(), sel["threshold"].max())
            ax.plot([lo, hi], [lo, hi], color="k", lw=0.6)
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_title(candidate_name(*cand), fontsize=8)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("fitted", fontsize=7)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def mixture_figure(mixture: pd.DataFrame) -> Figure | None:
    """The mixture proportions as bars with their intervals (None without a mixture)."""
    if mixture.empty:
        return None
    fig = Figure(figsize=(7, 1.2 + 0.45 * len(mixture)))
    ax = fig.subplots()
    y = np.arange(len(mixture))[::-1]
    w = mixture["w"].to_numpy(dtype=float)
    ax.barh(y, w, color="tab:purple", alpha=0.6)
    # clipped at 0: an interval whose end equals the estimate can differ from it by rounding (−1e-11)
    xerr = np.clip([w - mixture["ci_low"].to_numpy(float), mixture["ci_high"].to_numpy(float) - w], 0, None)
    ax.errorbar(w, y, xerr=xerr, fmt="none", color="k", capsize=3)
    ax.set_yticks(y, [candidate_name(*r) for r in mixture[["model", "layer", "weights"]].itertuples(index=False)],
                  fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("mixture proportion w / Σ w")
    fig.tight_layout()
    return fig


def mixture_html(mixture: pd.DataFrame, comparison: pd.DataFrame) -> str:
    """The mixture's section: what the proportions are, its score beside the best single candidate, the table."""
    parts = ["<h2>Mixture of the set's layers</h2>"]
    row = comparison[comparison["model"] == MIXTURE[0]]
    if mixture.empty or row.empty:
        return parts[0] + "<p>No mixture (the notes above say why).</p>"
    mix, best = row.iloc[0], comparison[comparison["rank"] == 1]
    than = (f" (the best single candidate, {_name(best.iloc[0])}: {best.iloc[0]['bits']:+.3f})"
            if not best.empty else "")
    parts.append(
        "<p>s = Σ w_m s_m over the layers that made the lab's stimuli, w_m ≥ 0 (Fisher information adds), "
        "fitted and cross-validated like every candidate; the weights carry the scale k. "
        "<b>w</b>: the <b>mixture proportions</b>, the fitted weights normalised to sum 1, in the units of the "
        "sensitivity table (a layer whose s is larger needs a smaller w for the same share); <b>share</b>: "
        "each layer's part of s at an item where every s_m is at its geometric mean over the lab's items "
        "(unit-free). Intervals: 95 % bootstrap over participants and images, each draw refitted. "
        f"Cross-validated score {mix['bits']:+.3f} bits per trial vs L2 [{mix['ci_low']:+.3f}, "
        f"{mix['ci_high']:+.3f}]{html.escape(than)}.</p>")
    parts.append(html_table(mixture))
    return "\n".join(parts)


def agreement(comparison: pd.DataFrame, ranking: pd.DataFrame) -> str:
    """One sentence: do D's best layer and the comparison's best candidate agree?"""
    ranked = comparison[comparison["rank"].notna()]
    d_best = ranking[ranking["rank"] == 1]
    if ranked.empty or d_best.empty:
        return ""
    best = ranked.iloc[0]
    d_name = candidate_name(*d_best.iloc[0][["model", "layer", "weights"]])
    if _name(best) == d_name:
        return f"D and the comparison agree: {d_name} comes first in both."
    return (f"D and the comparison disagree: D ranks {d_name} first (its own max and min stimuli only), the "
            f"comparison ranks {_name(best)} first (every trial, every stimulus).")


def comparison_html(comparison: pd.DataFrame, ranking: pd.DataFrame, notes: list[str]) -> str:
    """The report's section: what the scores mean, the table, the notes, and how they relate to D."""
    parts = [
        "<h2>Model comparison: every layer judges every stimulus</h2>",
        "<p>Each candidate predicts every trial: P(correct) = γ + (1 − γ − λ) F(α / T), T = k/√s with "
        "s = vᵀF v of the stimulus under the candidate (the set's sensitivity table), one scale k per "
        "candidate and slope and lapse per participant, fitted on training folds. <b>bits</b>: held-out "
        "log-likelihood per trial relative to the L2 (pixel) baseline (cv names the scheme). "
        "<b>explainable</b>: the fraction of the noise ceiling's gain over L2 (a free threshold per stimulus "
        "from the other participants). at_ceiling: the score is not below the ceiling's interval. spearman / "
        "pearson: predicted vs fitted log thresholds across items, r_ceiling their split-half reliability "
        "(descriptive for adaptive tracks). n_nonlinear: items whose linearity ratio ρ leaves the band. "
        "explainable is n/a where the ceiling is not reliably above L2 (the notes below say why).</p>",
        html_table(comparison.assign(**{c: [f"{v:.3g}" if np.isfinite(v) else "n/a" for v in comparison[c]]
                                        for c in EXPLAINABLE})),
    ]
    text = agreement(comparison, ranking)
    if text:
        parts.append(f"<p><b>{html.escape(text)}</b></p>")
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return "\n".join(parts)


def sensitivities_for(stimuli: str | None, manifest: dict | None, models: tuple[str, ...]) -> tuple:
    """The sensitivity table an analysis compares with, or (None, why not): called before any fitting.

    Without ``--stimuli``, or with a set that has no sensitivity table, there is no comparison and the
    text says why and how to add one; ``--models`` then is an error, as are extra models that cannot
    take the set's images.
    """
    from eigdist_core.errors import EigdistError
    from eigdist_core.sensitivities import SensitivityError

    from .manifest import sensitivity_table

    if manifest is None:
        if models:
            raise EigdistError("--models needs --stimuli: the sensitivities are computed on the set's items")
        return None, "no model comparison: it needs --stimuli DIR (the set's sensitivity table)"
    try:
        return sensitivity_table(stimuli, manifest, models), ""
    except SensitivityError as exc:
        if models:
            raise
        return None, f"no model comparison: {exc}"


def comparison_outputs(trials: pd.DataFrame, fits: pd.DataFrame, ranking: pd.DataFrame,
                       sensitivities: pd.DataFrame | None, why_not: str, options) -> tuple[dict, list, str]:
    """The comparison's tables, its report section and a one-line status (:func:`analysis.pipeline.analyze`)."""
    from .comparison_tables import compare_models

    if sensitivities is None:
        return {}, [(f"<h2>Model comparison</h2><p>{html.escape(why_not)}</p>", {})], why_not
    result = compare_models(trials, sensitivities, fits, options)
    tables = {"comparison.csv": result.comparison, "matrix.csv": result.matrix,
              "predictions.csv": result.predictions, "mixture.csv": result.mixture}
    figures = {"comparison_scores.png": scores_figure(result.comparison),
               "comparison_matrix.png": matrix_figure(result.matrix),
               "comparison_predictions.png": predictions_figure(result.predictions)}
    best = result.comparison.iloc[0]
    status = f"model comparison ({best['cv']} cross-validation): best {_name(best)}, {best['bits']:.3f} bits per trial vs L2"
    mixed = (mixture_html(result.mixture, result.comparison), {"comparison_mixture.png": mixture_figure(result.mixture)})
    return tables, [(comparison_html(result.comparison, ranking, result.notes), figures), mixed], status
