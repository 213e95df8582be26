"""Figures and the HTML report of an analysis (plain matplotlib Figures; files via eigdist_core.io).

Each figure function takes plain tables and returns a matplotlib Figure;
:func:`write_report` saves them and writes ``report.html``, which refers only
to the files it has just written.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from eigdist_core.io import atomic_write_bytes
from eigdist_core.plots import save_figure as _save_png

from .psychometric import FLAGS, QUALITY_FLAGS, psychometric
from .ranking import ALL, LAYER, MIN_VALID_SHARE

DIRECTION_COLOURS = {"max": "tab:red", "min": "tab:blue", "random": "tab:grey", "gen_top": "tab:orange",
                     "gen_bottom": "tab:green", "principal_a": "tab:purple", "principal_b": "tab:brown"}
MAX_CURVES = 40  # fitted curves drawn per panel


def layer_label(row: Mapping) -> str:
    """``model:layer (weights)``."""
    return f"{row['model']}:{row['layer']} ({row['weights']})"


def forest_plot(ranking: pd.DataFrame, control: pd.DataFrame) -> Figure:
    """D per layer with its 95 % CI, the control D_random below each, and the zero line."""
    n = len(ranking)
    fig = Figure(figsize=(7, 1.6 + 0.55 * n))
    ax = fig.subplots()
    y = np.arange(n)[::-1]
    ax.errorbar(ranking["D"], y, xerr=[ranking["D"] - ranking["ci_low"], ranking["ci_high"] - ranking["D"]],
                fmt="o", color="k", capsize=3, label="D = log10 T_min − log10 T_max")
    ctrl = control.set_index(LAYER).loc[pd.MultiIndex.from_frame(ranking[LAYER])]
    pooled = control[control["model"] == ALL]
    cy = np.append(y - 0.25, -1.0)
    cd = np.append(ctrl["D_random"], pooled["D_random"])
    ax.errorbar(cd, cy, xerr=[cd - np.append(ctrl["ci_low"], pooled["ci_low"]),
                              np.append(ctrl["ci_high"], pooled["ci_high"]) - cd],
                fmt="s", color="tab:grey", ms=4, capsize=2, label="control D_random = log10 T_random − log10 T_max")
    ax.axvline(0, color="tab:red", lw=1)
    labels = [f"{r}. {layer_label(row)}" for r, row in zip(ranking["rank"], ranking.to_dict("records"))]
    ax.set_yticks([*y, -1.0], [*labels, "control, all layers"])
    ax.set_xlabel("D (log10 units; 95 % cluster-bootstrap CI)")
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    return fig


def fits_figure(fits: pd.DataFrame, trials: pd.DataFrame) -> Figure:
    """Per layer (rows) and direction (columns): fitted curves, thresholds with 95 % intervals, data.

    Curves: solid; dashed where censored; dotted where the threshold carries a
    quality flag (few trials, slope at bound, poor fit, unconverged). Each
    threshold is a dot at its criterion level with its interval as an error bar
    (an arrow to the right where the interval is open). Panel titles count the flags.
    """
    layers = fits[LAYER].drop_duplicates().sort_values(LAYER).to_dict("records")
    directions = [d for d in DIRECTION_COLOURS if d in set(fits["direction"])]
    fig = Figure(figsize=(3.4 * len(directions), 2.6 * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), len(directions), squeeze=False, sharex=True, sharey=True)
    data = trials[~trials["is_catch"]]
    alpha = np.geomspace(max(data["alpha"][data["alpha"] > 0].min() / 2, 1e-6), data["alpha"].max() * 1.5, 200)
    quality = fits[list(QUALITY_FLAGS)].any(axis=1)
    for i, layer in enumerate(layers):
        for j, direction in enumerate(directions):
            ax = axes[i, j]
            colour = DIRECTION_COLOURS[direction]
            sel = (fits[LAYER] == pd.Series(layer)).all(axis=1) & (fits["direction"] == direction)
            shown = fits[sel & ~fits["not_estimable"]].head(MAX_CURVES)
            flagged = quality[shown.index]
            curves = [np.column_stack([alpha, psychometric(alpha, r.threshold_fit, r.slope, r.lapse, r.guess,
                                                           r.function)]) for r in shown.itertuples()]
            styles = [":" if f else "--" if c else "-" for c, f in zip(shown["censored"], flagged)]
            ax.add_collection(LineCollection(curves, colors=colour, linewidths=0.7, alpha=0.4, linestyles=styles))
            level = shown["guess"] + (1 - shown["guess"] - shown["lapse"]) * shown["criterion"]
            t = shown["threshold"].to_numpy()
            low = np.clip(shown["ci_low"].fillna(alpha[0]).to_numpy(), alpha[0], t)
            high = np.minimum(shown["ci_high"].fillna(alpha[-1]).to_numpy(), alpha[-1])
            ax.errorbar(t, level, xerr=np.vstack([t - low, np.maximum(high - t, 0)]), fmt="o", ms=2.5, color=colour,
                        elinewidth=0.6, capsize=1.5, alpha=0.8)
            open_high = shown["ci_high"].to_numpy() > alpha[-1]
            ax.scatter(high[open_high], level[open_high], marker=">", s=10, color=colour)
            mask = (data[LAYER] == pd.Series(layer)).all(axis=1) & (data["direction"] == direction)
            if mask.any():
                a = data.loc[mask, "alpha"]
                bins = np.geomspace(a.min() * 0.999, a.max() * 1.001, 9)
                groups = data.loc[mask, "correct"].groupby(pd.cut(a, bins), observed=True)
                centres = np.sqrt(bins[:-1] * bins[1:])[groups.size().index.codes]
                ax.scatter(centres, groups.mean(), s=8 + groups.size() / groups.size().max() * 30, color="k", zorder=3)
            ax.set_xscale("log")
            ax.set_ylim(0.3, 1.02)
            counts = {f: int(fits.loc[sel, f].sum()) for f in FLAGS if f in fits and fits.loc[sel, f].any()}
            note = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()) or "no flags"
            ax.set_title(f"{direction}: {int(sel.sum())} fits; {note}", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"{layer['model']}:{layer['layer']}\n{layer['weights']}", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("α (amplitude)")
    axes[0, 0].set_xlim(alpha[0], alpha[-1])
    fitter = ", ".join(sorted(set(fits["fitter"])))
    fig.suptitle(f"Psychometric fits ({fitter}): curves (dashed censored, dotted flagged), thresholds with 95 % "
                 "intervals, pooled proportion correct (black)", fontsize=8)
    return fig


def d_per_image_figure(d: pd.DataFrame) -> Figure:
    """Mean D per image and layer (± SEM across participants)."""
    stats = d.groupby([*LAYER, "image_id"])["D"].agg(["mean", "sem"]).reset_index()
    images = sorted(stats["image_id"].unique())
    fig = Figure(figsize=(max(5, 1.1 * len(images) + 3), 4))
    ax = fig.subplots()
    layers = stats[LAYER].drop_duplicates().to_dict("records")
    for k, layer in enumerate(layers):
        sel = stats[(stats[LAYER] == pd.Series(layer)).all(axis=1)]
        x = np.array([images.index(i) for i in sel["image_id"]]) + (k - (len(layers) - 1) / 2) * 0.08
        ax.errorbar(x, sel["mean"], yerr=sel["sem"].fillna(0), fmt="o-", ms=4, capsize=2, label=layer_label(layer))
    ax.axhline(0, color="tab:red", lw=1)
    ax.set_xticks(range(len(images)), images, rotation=30)
    ax.set_ylabel("D (mean ± SEM over participants)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def ratio_figure(d: pd.DataFrame, eigen: pd.DataFrame) -> Figure | None:
    """Measured T_min / T_max against the model's predicted √(λ_max / λ_min), per layer × image."""
    wide = eigen.pivot_table(index=["image_id", *LAYER], columns="direction", values="eigenvalue")
    if "max" not in wide or "min" not in wide:
        return None
    predicted = (0.5 * np.log10(wide["max"] / wide["min"])).rename("predicted").reset_index()
    measured = d.groupby(["image_id", *LAYER])["D"].mean().rename("measured").reset_index()
    both = predicted.merge(measured, on=["image_id", *LAYER]).dropna()
    if both.empty:
        return None
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for layer, sel in both.groupby(LAYER):
        ax.scatter(10 ** sel["predicted"], 10 ** sel["measured"], s=20, label=layer_label(dict(zip(LAYER, layer))))
    lim = [10 ** min(both["predicted"].min(), both["measured"].min(), 0) / 1.3,
           10 ** max(both["predicted"].max(), both["measured"].max()) * 1.3]
    ax.plot(lim, lim, color="k", lw=0.8, label="measured = predicted")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted √(λ_max / λ_min)")
    ax.set_ylabel("measured T_min / T_max (geometric mean over participants)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def response_curves_figure(curves: pd.DataFrame) -> Figure | None:
    """The stimulus set's response curves ‖f(x + αe) − f(x)‖ per layer, coloured by direction."""
    if curves.empty:
        return None
    layers = curves[LAYER].drop_duplicates().sort_values(LAYER).to_dict("records")
    cols = min(4, len(layers))
    rows = int(np.ceil(len(layers) / cols))
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, layer in zip(axes.flat, layers):
        sel = curves[(curves[LAYER] == pd.Series(layer)).all(axis=1)]
        for (image, direction), c in sel.groupby(["image_id", "direction"]):
            ax.plot(c["alpha"], c["distance"], color=DIRECTION_COLOURS[direction], lw=0.8, alpha=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(layer_label(layer), fontsize=8)
        ax.set_xlabel("α")
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("model response distance")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: Path) -> None:
    """PNG through the project's one figure writer (atomic)."""
    _save_png(fig, path, dpi=110)


def save_table(table: pd.DataFrame, path: Path) -> None:
    """CSV (booleans as true/false) through the project's atomic writer."""
    out = table.copy()
    for column in out.columns:
        if out[column].dtype == bool:
            out[column] = out[column].map({True: "true", False: "false"})
    atomic_write_bytes(path, out.to_csv(index=False, lineterminator="\n", float_format="%.6g").encode("utf-8"))


def _html_table(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p><em>none</em></p>"
    # Wide tables (the comparison has 20 columns) scroll inside their box instead of running off the page;
    # na_rep keeps pandas' "<NA>" of an unranked row out of the page.
    return ("<div class='wide'>" + table.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0,
                                                 classes="t", escape=True, na_rep="") + "</div>")


CAPTIONS = {
    "forest.png": "D per layer with 95 % two-level cluster-bootstrap CIs (black) and the random-direction "
                  "control (grey); the red line is 0.",
    "fits.png": "Psychometric fits per condition: curves, thresholds (at the criterion level) with their 95 % "
                "intervals, and the flags counted per panel (flags.csv lists them per layer).",
    "d_per_image.png": "D per image.",
    "ratio.png": "Measured threshold ratio against the model's prediction √(λ_max/λ_min).",
    "response_curves.png": "Response curves of the stimulus set (red max, blue min, grey random).",
}


def _estimability_note(ranking: pd.DataFrame) -> str:
    """A sentence naming the layers without any D (no rank, no p_best), or nothing."""
    if "estimable" not in ranking or ranking["estimable"].all():
        return ""
    names = ", ".join(layer_label(r) for r in ranking[~ranking["estimable"]].to_dict("records"))
    return (f"<p><b>Not estimable</b> (no D: no estimable max and min threshold of the same participant × "
            f"image; left out of the ranks and p_best): {html.escape(names)}</p>")


def _valid_draws_note(ranking: pd.DataFrame, pairwise: pd.DataFrame, n_boot: object) -> str:
    """A warning when P(best) or a P(D_a > D_b) rests on fewer than MIN_VALID_SHARE of the draws."""
    if not isinstance(n_boot, int) or n_boot < 1:
        return ""
    counts = [("p_best", int(ranking["n_valid_draws"].min()))] if ranking["estimable"].any() else []
    counts += [(f"P({r['layer_a']} > {r['layer_b']})", int(r["n_valid_draws"]))
               for r in pairwise.to_dict("records")]
    few = [f"{name}: {n} of {n_boot}" for name, n in counts if n < MIN_VALID_SHARE * n_boot]
    if not few:
        return ""
    return (f"<p><b>Few valid bootstrap draws</b> (fewer than {MIN_VALID_SHARE:.0%} of the draws have a mean D "
            "for every layer compared; the probabilities use only those draws): "
            f"{html.escape('; '.join(few))}</p>")


def write_report(out: str | os.PathLike, *, tables: Mapping[str, pd.DataFrame],
                 figures: Mapping[str, Figure | None], settings: Mapping[str, object],
                 exclusions: pd.DataFrame, sections: Sequence[tuple[str, Mapping[str, Figure | None]]] = (),
                 captions: Mapping[str, str] | None = None) -> Path:
    """Write the tables, the figures and ``report.html`` into ``out``; return the report's path.

    Parameters
    ----------
    tables
        File name → table (``ranking.csv``, ``thresholds.csv``, …), written as CSV.
    figures
        File name → figure; ``None`` entries (no data for that figure) are left out.
    settings
        Shown as a table (seed, bootstrap draws, fit options, sources).
    exclusions
        From :func:`analysis.exclusions.apply_exclusions`.
    sections
        Further sections after the flags: (HTML, its figures), each figure shown after its HTML.
    captions
        Captions of the sections' figures.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        save_table(table, out / name)
    shown = {name: fig for name, fig in figures.items() if fig is not None}
    extra = {name: fig for _, figs in sections for name, fig in figs.items() if fig is not None}
    for name, fig in {**shown, **extra}.items():
        save_figure(fig, out / name)
    captions = {**CAPTIONS, **(captions or {})}
    ranking = tables["ranking.csv"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>eigdist analysis</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:3px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}div.wide{overflow-x:auto}img{max-width:100%}figure{margin:1em 0}"
        "</style></head><body>",
        "<h1>eigdist: ranking of model layers by observers' thresholds</h1>",
        f"<p><b>Observers analysed:</b> {html.escape(str(settings.get('observers analysed', '')))}. "
        f"<b>Fitter:</b> {html.escape(str(settings.get('fitter', 'eigdist')))}.</p>",
        "<p>D = log10 T_min − log10 T_max per participant × image; higher is better. CIs: two-level "
        "cluster bootstrap (participants, then images). p_best: share of bootstrap draws in which the "
        "layer has the highest mean D, over the n_valid_draws draws in which every ranked layer has a mean "
        "D (a tie splits its draw equally). n_censored: D values that involve a threshold reported as a bound "
        "(censored at its ceiling alpha_ceiling, or below the tested range); D is then a bound, and unknown "
        "(left out of the mean) when its two bounds point opposite ways.</p>",
        "<h2>Ranking</h2>", _html_table(ranking), _estimability_note(ranking),
        _valid_draws_note(ranking, tables["pairwise.csv"], settings.get("bootstrap draws")),
        "<h2>Threshold flags</h2><p>Thresholds per layer and how many carry each flag. A D built on a "
        "threshold flagged few_trials, slope_at_bound, poor_fit or unconverged stays in the mean and is "
        "counted in the ranking's n_flagged; not-estimable thresholds enter no D.</p>",
        _html_table(tables["flags.csv"]) if "flags.csv" in tables else "<p><em>no flags computed</em></p>",
    ]
    for text, figs in sections:
        parts.append(text)
        parts += [_figure_html(name, captions) for name in figs if name in extra]
    for name, fig in shown.items():
        parts.append(_figure_html(name, captions))
        if name == "forest.png":
            parts += ["<h2>Random-direction control</h2>", _html_table(tables["control.csv"]),
                      "<h2>Paired differences</h2>", _html_table(tables["pairwise.csv"])]
    parts += ["<h2>Exclusions</h2>", _html_table(exclusions),
              "<h2>Settings</h2>", _html_table(pd.DataFrame({"setting": list(settings),
                                                             "value": [str(v) for v in settings.values()]})),
              "<h2>Files</h2><ul>"]
    parts += [f"<li><a href='{html.escape(n)}'>{html.escape(n)}</a></li>" for n in [*tables, *shown, *extra]]
    parts.append("</ul></body></html>")
    path = out / "report.html"
    atomic_write_bytes(path, "\n".join(parts).encode("utf-8"))
    return path


def _figure_html(name: str, captions: Mapping[str, str]) -> str:
    return (f"<figure><img src='{html.escape(name)}' alt='{html.escape(name)}'>"
            f"<figcaption>{html.escape(captions.get(name, name))}</figcaption></figure>")


def power_figure(table: pd.DataFrame) -> Figure:
    """Power against observers, one line per trial count."""
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    for trials, sel in table.groupby("trials"):
        ax.plot(sel["observers"], sel["power"], "o-", label=f"{trials} trials per condition")
    ax.axhline(0.8, color="k", lw=0.8, ls=":")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("observers")
    ax.set_ylabel("power (95 % CI of ΔD above 0)")
    ax.set_title(f"ΔD = {table['delta_d'].iloc[0]:g}, {table['images'].iloc[0]} images, "
                 f"{table['labs'].iloc[0]} labs per point", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
