"""Stimulus values → output levels: inverse of the measured curve, noisy-bit dithering, clipping (pure).

Values are linear luminance: 0 → Lmin, 1 → Lmax of the profile (docs/formats.md, "Values on
screen"). The measured curve gives the luminance of every output level; a value becomes a
*continuous* level by inverting that table piecewise-linearly, and noisy-bit dithering
(Allard & Faubert 2008) turns it into an integer level: ``floor(level + u)``, u ~ U[0, 1).
Its expectation is the continuous level exactly, so the mean luminance over frames or
neighbouring pixels is the intended one, well below one output step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .monitor import MonitorProfile

#: When fresh dithering noise is drawn.
DITHER_MODES = ("frame", "trial", "off")


@dataclass(frozen=True)
class Mapped:
    """Output levels of one stimulus.

    Attributes
    ----------
    levels
        Integer output levels, ``H × W`` (row 0 = top of the image), in 0 … 2**bits − 1.
    clipped
        How many pixels asked for a value outside [0, 1] (shown at Lmin or Lmax).
    bits
        The output bit depth.
    """

    levels: np.ndarray
    clipped: int
    bits: int


def level_table(profile: MonitorProfile) -> np.ndarray:
    """Luminance (cd/m²) of every output level; identity (linear) for an uncalibrated pilot profile."""
    if profile.calibration is None:
        return np.linspace(0.0, 1.0, profile.n_levels)
    return profile.calibration.table()


def as_grey(values: np.ndarray) -> np.ndarray:
    """A float ``H × W`` image from ``H × W`` or ``1 × H × W``; colour is refused (no per-gun calibration)."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(
            f"stimulus must be H×W or 1×H×W (grey: per-gun calibration does not exist yet), got shape {np.shape(values)}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"stimulus has {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    return arr


def continuous_levels(values: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, int]:
    """Continuous output levels whose luminance is the intended one, and the clipped-pixel count.

    Parameters
    ----------
    values
        Linear values, 0 → ``table[0]``, 1 → ``table[-1]``.
    table
        Non-decreasing luminance of each output level.
    """
    v = as_grey(values)
    clipped = int(np.count_nonzero((v < 0) | (v > 1)))
    target = table[0] + np.clip(v, 0.0, 1.0) * (table[-1] - table[0])
    k = np.clip(np.searchsorted(table, target, side="left") - 1, 0, table.size - 2)  # first level of a flat run
    step = table[k + 1] - table[k]
    frac = np.divide(target - table[k], step, out=np.zeros_like(target), where=step > 0)
    return k + np.clip(frac, 0.0, 1.0), clipped


def quantise(level: np.ndarray, bits: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Continuous levels → integer levels: noisy-bit dithering ``floor(level + u)``, or rounding if ``rng`` is None."""
    if rng is None:
        out = np.rint(level)
    else:
        out = np.floor(level + rng.random(level.shape, dtype=np.float32))
    return np.clip(out, 0, 2**bits - 1).astype(np.int32)


def map_values(
    values: np.ndarray, profile: MonitorProfile, rng: np.random.Generator | None = None
) -> Mapped:
    """Stimulus values → integer output levels of ``profile``.

    Parameters
    ----------
    values
        ``H × W`` or ``1 × H × W`` linear values in [0, 1] (outside: clipped and counted).
    profile
        The monitor profile (its calibration curve and bit depth).
    rng
        Source of the dithering noise; ``None`` rounds to the nearest level (no dithering).
    """
    level, clipped = continuous_levels(values, level_table(profile))
    return Mapped(levels=quantise(level, profile.bits, rng), clipped=clipped, bits=profile.bits)


def background_value(profile: MonitorProfile) -> float:
    """The stimulus value of the background, Lmean (0.5 for an uncalibrated pilot profile)."""
    cal = profile.calibration
    if cal is None:
        return 0.5
    return (cal.lum_mean - cal.lum_min) / (cal.lum_max - cal.lum_min)


def background_level(profile: MonitorProfile) -> int:
    """The output level drawn as the (undithered) background: the one nearest Lmean."""
    return int(map_values(np.full((1, 1), background_value(profile)), profile).levels[0, 0])


def level_to_signed(levels: np.ndarray, bits: int) -> np.ndarray:
    """Integer levels → PsychoPy's signed ``rgb`` values, ``2k/(2**bits − 1) − 1`` (level k exactly)."""
    return 2.0 * np.asarray(levels, dtype=np.float32) / np.float32(2**bits - 1) - 1.0


def texture(mapped: Mapped) -> np.ndarray:
    """The float32 array an ``ImageStim`` draws pixel for pixel: signed values, rows flipped.

    PsychoPy draws array row 0 at the bottom; the stimulus' row 0 is its top.
    """
    return np.ascontiguousarray(level_to_signed(mapped.levels, mapped.bits)[::-1], dtype=np.float32)


def pixel_offset(window_size: tuple[int, int], image_size: tuple[int, int]) -> tuple[float, float]:
    """``pos`` (pix) that puts an image exactly on pixels, its top-left at ``(win − img) // 2``.

    A centred image whose size differs from the window's in parity would have its edges on
    pixel centres; half a pixel left / up moves them onto pixel boundaries.
    """
    dx = -0.5 if (window_size[0] - image_size[0]) % 2 else 0.0
    dy = 0.5 if (window_size[1] - image_size[1]) % 2 else 0.0
    return dx, dy


def top_left(window_size: tuple[int, int], image_size: tuple[int, int]) -> tuple[int, int]:
    """Row and column (from the top) of the image's first pixel in a frame, given :func:`pixel_offset`."""
    return (window_size[1] - image_size[1]) // 2, (window_size[0] - image_size[0]) // 2


def size_deg(image_size: tuple[int, int], profile: MonitorProfile) -> tuple[float, float]:
    """Width and height of an image in degrees of visual angle (at the screen centre)."""
    return image_size[0] / profile.ppd, image_size[1] / profile.ppd
