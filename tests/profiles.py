"""Monitor profiles for tests, calibrated now from exact gamma readings (their LUTs are known in closed form)."""

from __future__ import annotations

import numpy as np

from experiments.calibration import calibrated, fit_calibration
from experiments.monitor import gamma_curve, new_profile

#: Known per-gun gammas and peak luminances of the colour profile.
GUN_GAMMAS = {"r": 1.9, "g": 2.2, "b": 2.5}
GUN_PEAKS = {"r": 30.0, "g": 60.0, "b": 10.0}


def make_profile(bits: int = 8, gamma: float = 2.2, resolution: tuple[int, int] = (800, 600), name: str = "g",
                 guns: bool = False):
    """A profile calibrated now from exact gamma readings (so its LUT is known in closed form);
    ``guns``: also R, G, B curves with gammas 1.9, 2.2, 2.5."""
    top = 2**bits - 1
    levels = np.rint(np.linspace(0, top, 33))
    lum = gamma_curve(levels / top, 0.5, 100.0, gamma)
    per_gun = {g: (levels, gamma_curve(levels / top, 0.2, GUN_PEAKS[g], GUN_GAMMAS[g])) for g in GUN_GAMMAS}
    base = new_profile(name, width_cm=40.0, distance_cm=57.0, resolution=resolution, refresh_hz=60.0, bits=bits)
    return calibrated(base, fit_calibration(levels, lum, bits, curve="gamma", guns=per_gun if guns else None))
