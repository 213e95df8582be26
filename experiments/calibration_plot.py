"""Figure of a profile's calibration: readings, gamma fit, LUT and residuals (matplotlib, no window)."""

from __future__ import annotations

import io
import os

import numpy as np

from eigdist_core.io import atomic_write_bytes

from .monitor import MonitorProfile, gamma_curve


def calibration_figure(profile: MonitorProfile, path: str | os.PathLike) -> str:
    """Plot ``profile``'s calibration to a PNG at ``path``; return the file's sha256."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cal = profile.calibration
    if cal is None:
        raise ValueError(f"monitor {profile.name!r} has no calibration to plot")
    top = profile.n_levels - 1
    lv, lum = np.asarray(cal.levels), np.asarray(cal.luminance)
    grid = np.arange(top + 1)
    fit = gamma_curve(grid / top, **cal.gamma)
    fig, (ax, res) = plt.subplots(2, 1, figsize=(6.4, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    ax.plot(lv, lum, "o", ms=5, color="k", label="photometer readings")
    ax.plot(grid, fit, "-", color="C0", label=f"gamma fit (γ = {cal.gamma['gamma']:.3f})")
    ax.plot(grid, cal.lut, "--", color="C1", label="monotone LUT (PCHIP)")
    for name, value in (("Lmin", cal.lum_min), ("Lmean", cal.lum_mean), ("Lmax", cal.lum_max)):
        ax.axhline(value, color="0.7", lw=0.8, zorder=0)
        ax.text(0, value, f" {name} {value:.2f}", va="bottom", fontsize=8, color="0.4")
    ax.set_ylabel("luminance (cd/m²)")
    ax.set_title(f"{profile.name}: {profile.bits}-bit, calibrated {cal.date[:10]}, inverted curve: {cal.curve}")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.92), fontsize=8)
    res.axhline(0, color="0.5", lw=0.8)
    res.plot(lv, lum - gamma_curve(lv / top, **cal.gamma), "o-", ms=4, color="C0", label="reading − gamma fit")
    res.plot(lv, lum - np.asarray(cal.lut)[np.rint(lv).astype(int)], "s", ms=3, color="C1", label="reading − LUT")
    res.set_xlabel("output level")
    res.set_ylabel("residual (cd/m²)")
    res.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
