"""Looking at a stimulus set: one contact sheet per image, and the eigenvalues per layer.

Written under ``<set>/previews/`` as PNG (through :mod:`eigdist_core.io`):
``<image_id>.png``, ``eigenvalues.png`` and ``response_curves.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .contract import CONTRAST_WEIGHTS, ITEM_DIRECTIONS, LAYER_KEY
from .plots import save_figure, show_array
from .errors import EigdistError
from .io import check_output_folder
from .stimulus_set import StimulusSet, open_verified



def conditions(sset: StimulusSet) -> list[tuple[str, str, str]]:
    """The set's (model, layer, weights) triples, in manifest order."""
    seen: dict[tuple, None] = {}
    for it in sset.items:
        seen.setdefault(tuple(it[k] for k in LAYER_KEY), None)
    return list(seen)


def _row_label(cond: tuple[str, str, str]) -> str:
    """A layer as ``model:layer`` over its weights; a contrast as its kind over its name."""
    if cond[2] == CONTRAST_WEIGHTS:
        return f"{cond[0]}\n" + cond[1].replace("_vs_", "\nvs ")
    return f"{cond[0]}:{cond[1]}\n{cond[2]}"


def _value_label(entry: dict) -> str:
    """What a preview says of an item's size: λ (its layer's eigenvalue or eᵀFe), a generalized ratio, or V."""
    if entry.get("contrast", {}).get("kind") == "principal":
        return f"V={entry['contrast']['objective']:.3g}"
    value = entry["eigenvalue"] if entry["eigenvalue"] is not None else entry["rayleigh"]
    return f"{'ratio' if 'contrast' in entry else 'λ'}={value:.3g}"


def nonlinear_items(sset: StimulusSet) -> set[str]:
    """Items whose linearity ratio ρ under their own layer leaves the band (empty without a sensitivity table)."""
    if "sensitivities" not in sset.manifest:
        return set()
    from .sensitivities import read_table

    table = read_table(sset.path, sset.manifest)
    own = {it["item_id"]: tuple(it[k] for k in LAYER_KEY) for it in sset.items}
    return {i for i, m, l, w, flag in zip(*(table[c] for c in ("item_id", "model", "layer", "weights", "nonlinear")))
            if flag and own[i] == (m, l, w)}


def contact_sheet(sset: StimulusSet, image_id: str, alpha: float, nonlinear: set[str] = frozenset()):
    """One row per layer (then per contrast): the image, then each direction's distortion and image + α·e.

    Distortions are scaled to their own maximum (zero is mid-grey); image + α·e
    is clipped to [0, 1] for display only, and the title says when it clips, and when the
    item is in ``nonlinear`` (its layer does not respond linearly at the amplitudes shown).
    """
    image = sset.image(image_id)
    rows = conditions(sset)
    dirs = {cond: [d for d in ITEM_DIRECTIONS if any(it["direction"] == d and tuple(it[k] for k in LAYER_KEY) == cond
                                                      for it in sset.items)] for cond in rows}
    width = max(len(d) for d in dirs.values())
    fig = Figure(figsize=(1.9 * (1 + 2 * width), 2.1 * len(rows)))
    axes = fig.subplots(len(rows), 1 + 2 * width, squeeze=False)
    for r, cond in enumerate(rows):
        show_array(axes[r, 0], image, f"{image_id}")
        axes[r, 0].text(-0.08, 0.5, _row_label(cond), transform=axes[r, 0].transAxes,
                        rotation=90, ha="right", va="center", fontsize=8)
        for ax in axes[r, 1 + 2 * len(dirs[cond]):]:
            ax.set_axis_off()
        for c, direction in enumerate(dirs[cond]):
            entry = _entry(sset, image_id, cond, direction)
            ax_e, ax_sum = axes[r, 1 + 2 * c], axes[r, 2 + 2 * c]
            if entry is None:
                ax_e.set_axis_off(), ax_sum.set_axis_off()
                continue
            e = sset.item(entry["item_id"])
            flag = "\nρ out of band" if entry["item_id"] in nonlinear else ""
            show_array(ax_e, e, f"{direction} ({_value_label(entry)}){flag}", symmetric=True)
            clips = " clipped" if alpha > entry["alpha_displayable_max"] else ""
            show_array(ax_sum, image + alpha * e, f"+ {alpha:g}·{direction}{clips}")
    fig.suptitle(f"{sset.manifest['name']} ({sset.set_id}): {image_id}", fontsize=10)
    fig.tight_layout()
    return fig


def eigenvalue_summary(sset: StimulusSet):
    """λ_max, λ_min and the random direction's eᵀFe per layer, one point per image (log scale)."""
    rows = [cond for cond in conditions(sset) if cond[2] != CONTRAST_WEIGHTS]
    fig = Figure(figsize=(max(5.0, 1.1 * len(rows) + 2), 4))
    ax = fig.subplots()
    marks = {"max": ("^", "C3"), "min": ("v", "C0"), "random": ("o", "C7")}
    for direction, (marker, color) in marks.items():
        xs, ys = [], []
        for x, cond in enumerate(rows):
            for it in sset.items:
                if tuple(it[k] for k in LAYER_KEY) == cond and it["direction"] == direction and it["index"] == 0:
                    xs.append(x + {"max": -0.15, "min": 0.15, "random": 0.0}[direction])
                    ys.append(max(it["rayleigh"], 1e-12))  # log axis: a null direction sits at the floor
        if xs:
            ax.scatter(xs, ys, marker=marker, color=color, label=direction if direction == "random" else f"λ {direction}")
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)), [f"{m}\n{l}\n{w}" for m, l, w in rows], fontsize=8)
    ax.set_ylabel("eᵀFe (eigenvalue for max, min)")
    ax.set_title(f"{sset.manifest['name']}: eigenvalues per layer, one point per image", fontsize=10)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def response_summary(sset: StimulusSet):
    """Per layer: ‖f(x + αe) − f(x)‖ / (√(eᵀFe)·α) against α; 1 where the Fisher (local) approximation holds.

    A contrast's panel shows its first layer's response to its items (the layer their ``rayleigh`` is of).
    """
    rows = conditions(sset)
    fig = Figure(figsize=(2.6 * len(rows) + 0.5, 2.8))
    axes = fig.subplots(1, len(rows), squeeze=False, sharey=True)
    colors = dict(zip(ITEM_DIRECTIONS, ("C3", "C0", "C7", "C1", "C2", "C4", "C5")))
    for ax, cond in zip(axes[0], rows):
        for it in sset.items:
            if tuple(it[k] for k in LAYER_KEY) != cond or it["index"] != 0:
                continue
            alpha = np.array(it["response_curve"]["alpha"][1:])
            dist = np.array(it["response_curve"]["distance"][1:])
            ratio = dist / (np.sqrt(max(it["rayleigh"], 1e-30)) * alpha)
            ax.plot(alpha, ratio, color=colors[it["direction"]], alpha=0.7, lw=1)
        ax.axhline(1.0, color="k", lw=0.5, ls=":")
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_title(_row_label(cond), fontsize=8)
        ax.set_xlabel("α", fontsize=8)
    axes[0, 0].set_ylabel("‖Δf‖ / (√(eᵀFe)·α)", fontsize=8)
    shown = {it["direction"] for it in sset.items}
    handles = [Line2D([], [], color=c, label=d) for d, c in colors.items() if d in shown]
    axes[0, -1].legend(handles=handles, fontsize=7)
    fig.suptitle(f"{sset.manifest['name']}: response change relative to the Fisher prediction (1 = local)", fontsize=9)
    fig.tight_layout()
    return fig


def write_previews(folder: str | os.PathLike, alpha: float | None = None, dpi: int = 80) -> list[Path]:
    """Write ``previews/<image_id>.png`` per image, ``eigenvalues.png`` and ``response_curves.png``; return the paths.

    ``alpha`` defaults to the set's ``alpha_max``. The set is verified first (:func:`open_verified`),
    and the previews folder checked to be writable before any figure is drawn.
    """
    sset = open_verified(folder)
    alpha = sset.manifest["alpha_max"] if alpha is None else float(alpha)
    if not alpha >= 0:
        raise EigdistError(f"alpha must be >= 0, got {alpha!r}")
    out = check_output_folder(Path(folder) / "previews", "the set's previews folder")
    flagged = nonlinear_items(sset)
    figures = [(out / f"{im['image_id']}.png", contact_sheet(sset, im["image_id"], alpha, flagged))
               for im in sset.images]
    figures.append((out / "eigenvalues.png", eigenvalue_summary(sset)))
    figures.append((out / "response_curves.png", response_summary(sset)))
    for path, fig in figures:
        save_figure(fig, path, dpi=dpi)
    return [path for path, _ in figures]


def _entry(sset: StimulusSet, image_id: str, cond: tuple, direction: str) -> dict | None:
    for it in sset.items:
        if it["image_id"] == image_id and it["direction"] == direction and it["index"] == 0 \
                and tuple(it[k] for k in LAYER_KEY) == cond:
            return it
    return None
