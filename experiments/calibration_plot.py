"""Figure of a profile's calibration: readings, gamma fit, LUT and residuals of every curve.

Builds a :class:`matplotlib.figure.Figure` directly (no pyplot state, no backend switch at
import); the caller writes it (``eigdist calibrate show``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .monitor import GUNS, Curve, MonitorProfile, gamma_curve
from eigdist_core.errors import EigdistError

#: Line colour of each curve.
_COLOURS = {"grey": "0.25", "r": "tab:red", "g": "tab:green", "b": "tab:blue"}


def _panel(ax: Any, res: Any, curve: Curve, top: int, name: str) -> None:
    """One curve: readings, gamma fit and LUT above, residuals below."""
    colour = _COLOURS[name]
    lv, lum = np.asarray(curve.levels), np.asarray(curve.luminance)
    grid = np.arange(top + 1)
    ax.plot(lv, lum, "o", ms=4, color=colour, label="readings")
    ax.plot(grid, gamma_curve(grid / top, **curve.gamma), "-", color=colour, lw=1,
            label=f"gamma fit (γ = {curve.gamma['gamma']:.3f})")
    ax.plot(grid, curve.lut, "--", color="C1", lw=1, label="monotone LUT")
    ax.set_title(f"{name}: {lum.min():.2f}–{lum.max():.2f} cd/m², inverted: {curve.curve}", fontsize=9)
    ax.set_ylabel("cd/m²")
    ax.legend(fontsize=7, loc="upper left")
    res.axhline(0, color="0.5", lw=0.8)
    res.plot(lv, lum - gamma_curve(lv / top, **curve.gamma), "o-", ms=3, color=colour, lw=0.8, label="− gamma")
    res.plot(lv, lum - np.asarray(curve.lut)[np.rint(lv).astype(int)], "s", ms=2.5, color="C1", label="− LUT")
    res.set_ylabel("residual")
    res.set_xlabel("output level")
    res.legend(fontsize=7)


def calibration_figure(profile: MonitorProfile) -> Any:
    """A figure of ``profile``'s newest calibration: grey and, when measured, the R, G and B guns.

    Returns
    -------
    matplotlib.figure.Figure
        Save it with ``fig.savefig(buffer, format="png")``.
    """
    from matplotlib.figure import Figure

    cal = profile.calibration
    if cal is None:
        raise EigdistError(f"monitor {profile.name!r} has no calibration to plot")
    curves = {"grey": cal.grey, **(cal.guns or {})}
    names = [g for g in GUNS if g in curves]
    fig = Figure(figsize=(3.6 * len(names), 5.4), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    for i, name in enumerate(names):
        _panel(axes[0, i], axes[1, i], curves[name], profile.n_levels - 1, name)
    chroma = ""
    if cal.chromaticity:
        chroma = "; CIE xy " + ", ".join(f"{k} ({x:.3f}, {y:.3f})" for k, (x, y) in cal.chromaticity.items())
    fig.suptitle(f"{profile.name}: {profile.bits}-bit, calibrated {cal.date[:10]} "
                 f"({len(profile.history)} earlier calibration(s) kept){chroma}", fontsize=10)
    return fig
