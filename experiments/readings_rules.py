"""Rules that photometer readings must meet before they become a calibration (pure: numbers in, an
error out). :mod:`experiments.calibration` applies them when it fits, and a colour session applies
the per-gun rule again to the profile it is given (a profile fitted before the rule existed).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from eigdist_core.errors import EigdistError

#: Largest step between two neighbouring measured levels, as a fraction of the level range (85 of
#: 255, 341 of 1023): beyond it the LUT is a guess over most of a stretch (levels 0–4 and 255 leave
#: mid-grey 13–25 % off), so such readings are refused.
MAX_LEVEL_GAP = 1 / 3
#: Per-gun readings must add up to grey: at every level, r + g + b above black may differ from grey
#: above black by at most this fraction of grey's range (displays are additive to a few per cent; a
#: larger miss is a mislabelled gun or a reading of another patch).
ADDITIVITY_TOLERANCE = 0.10


def check_level_gaps(levels: np.ndarray, top: int, gun: str) -> None:
    """Refuse readings whose distinct, sorted ``levels`` (0 … ``top``) leave a gap wider than
    :data:`MAX_LEVEL_GAP` of the range: the LUT there would be a guess.

    Raises
    ------
    EigdistError
        Naming the curve ``gun``, the two levels around the widest gap and the largest allowed.
    """
    gaps = np.diff(levels)
    if gaps.max() > MAX_LEVEL_GAP * top + 1e-9:
        i = int(np.argmax(gaps))
        step = math.floor(MAX_LEVEL_GAP * top + 1e-9)
        raise EigdistError(
            f"{gun}: no readings between levels {levels[i]:g} and {levels[i + 1]:g} ({100 * gaps[i] / top:.0f}% of "
            f"the range 0..{top} unmeasured; at most {step} levels apart): the LUT there would be a guess; measure "
            f"levels spread over the whole range, e.g. every {max(1, top // 16)}"
        )


def check_additivity(grey: Sequence[float], guns: dict[str, Sequence[float]]) -> None:
    """Refuse per-gun curves that cannot belong with the grey curve: the rule grey ≈ r + g + b.

    Each gun alone must stay dimmer than grey (all guns on) at the top level, and at every level
    r + g + b above black (each curve's level 0, where every gun is off) must match grey above black
    within :data:`ADDITIVITY_TOLERANCE` of grey's range. Checked on the LUTs ``grey`` and ``guns``
    (luminance of every output level: the monotone fits through the readings), so the levels
    measured need not be the same for every curve.

    Raises
    ------
    EigdistError
        Naming the gun (or the level) and the luminances, with the likely cause.
    """
    grey_lut = np.asarray(grey, dtype=float) - grey[0]
    gun_luts = {g: np.asarray(lut, dtype=float) - lut[0] for g, lut in guns.items()}
    top = len(grey_lut) - 1
    brighter = sorted((g for g, lut in gun_luts.items() if lut[-1] >= grey_lut[-1]), key=lambda g: -gun_luts[g][-1])
    if brighter:
        g = brighter[0]
        also = " and ".join(f"{o} {gun_luts[o][-1]:.4g}" for o in brighter[1:])
        raise EigdistError(
            f"{g}: at level {top} the {g} gun alone reads {gun_luts[g][-1]:.4g} cd/m2 above black but grey (all guns "
            f"on) only {grey_lut[-1]:.4g}{f' ({also} also outshine it)' if also else ''}: one gun cannot outshine all "
            f"three; are the labels grey and {g} swapped?"
        )
    total = sum(gun_luts.values())
    miss = np.abs(total - grey_lut)
    if miss.max() > ADDITIVITY_TOLERANCE * grey_lut[-1]:
        i = int(np.argmax(miss))
        parts = ", ".join(f"{g} {lut[i]:.3g}" for g, lut in gun_luts.items())
        raise EigdistError(
            f"per-gun readings do not add up to grey: at level {i} r + g + b read {total[i]:.3g} cd/m2 above black "
            f"({parts}) but grey {grey_lut[i]:.3g}, more than {100 * ADDITIVITY_TOLERANCE:g}% of grey's range "
            f"{grey_lut[-1]:.3g} apart: check the gun labels and measure the guns again"
        )
