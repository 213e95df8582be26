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
        Integer output levels in 0 … 2**bits − 1, row 0 = top of the image: ``H × W`` for grey
        (every gun alike), ``H × W × 3`` for colour (one level per gun).
    clipped
        How many pixels asked for a value outside [0, 1] in some channel (shown at its Lmin or Lmax).
    bits
        The output bit depth.
    """

    levels: np.ndarray
    clipped: int
    bits: int


def level_table(profile: MonitorProfile) -> np.ndarray:
    """Luminance (cd/m²) of every output level of the grey curve; identity (linear) for an uncalibrated pilot profile."""
    if profile.calibration is None:
        return np.linspace(0.0, 1.0, profile.n_levels)
    return profile.calibration.table()


def channel_tables(profile: MonitorProfile, channels: int) -> np.ndarray:
    """``channels × 2**bits`` luminance tables: the grey curve (1) or each gun's curve (3).

    Colour needs the profile's per-gun calibration (:class:`~experiments.monitor.ProfileError`
    otherwise); an uncalibrated pilot profile is linear in every gun.
    """
    if channels == 1 or profile.calibration is None:
        return np.tile(level_table(profile), (channels, 1))
    return profile.calibration.gun_tables()


def as_channels(values: np.ndarray) -> np.ndarray:
    """A float ``C × H × W`` image (C = 1 grey, 3 colour) from ``H × W``, ``1 × H × W`` or ``3 × H × W``."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] not in (1, 3) or arr.size == 0:
        raise ValueError(f"stimulus must be H×W, 1×H×W (grey) or 3×H×W (RGB), got shape {np.shape(values)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"stimulus has {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    return arr


def _invert(v: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Continuous levels of one channel's values (clipped to [0, 1]) under one non-decreasing table."""
    target = table[0] + np.clip(v, 0.0, 1.0) * (table[-1] - table[0])
    k = np.clip(np.searchsorted(table, target, side="left") - 1, 0, table.size - 2)  # first level of a flat run
    step = table[k + 1] - table[k]
    frac = np.divide(target - table[k], step, out=np.zeros_like(target), where=step > 0)
    return k + np.clip(frac, 0.0, 1.0)


def continuous_levels(values: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, int]:
    """Continuous output levels whose luminance is the intended one, and the clipped-pixel count.

    Parameters
    ----------
    values
        Linear values per channel (:func:`as_channels`), 0 → the table's first luminance, 1 → its last.
    table
        Non-decreasing luminance of each output level: one row for every channel (1-D or ``1 × n``)
        or one row per channel (``3 × n``, each gun inverted through its own curve).

    Returns
    -------
    levels, clipped
        ``H × W`` (grey) or ``H × W × 3`` (colour) continuous levels; pixels with any channel outside [0, 1].
    """
    v = as_channels(values)
    tables = np.atleast_2d(table)
    if tables.shape[0] not in (1, v.shape[0]):
        raise ValueError(f"{v.shape[0]}-channel stimulus but {tables.shape[0]} luminance tables")
    clipped = int(np.count_nonzero(((v < 0) | (v > 1)).any(axis=0)))
    level = np.stack([_invert(c, tables[i % tables.shape[0]]) for i, c in enumerate(v)], axis=-1)
    return (level[..., 0] if v.shape[0] == 1 else level), clipped


def quantise(level: np.ndarray, bits: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Continuous levels → integer levels: noisy-bit dithering ``floor(level + u)``, or rounding if ``rng`` is None.

    The noise is drawn per element, so each gun of a colour pixel is dithered independently.
    """
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
        ``H × W``, ``1 × H × W`` (grey) or ``3 × H × W`` (RGB) linear values in [0, 1] (outside:
        clipped and counted); colour needs the profile's per-gun calibration.
    profile
        The monitor profile (its calibration curves and bit depth).
    rng
        Source of the dithering noise; ``None`` rounds to the nearest level (no dithering).
    """
    level, clipped = continuous_levels(values, channel_tables(profile, as_channels(values).shape[0]))
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


def replicate(levels: np.ndarray, magnification: int) -> np.ndarray:
    """Each pixel as a ``magnification × magnification`` block (integer replication: no interpolation)."""
    return np.repeat(np.repeat(levels, magnification, axis=0), magnification, axis=1)


def texture(mapped: Mapped, magnification: int = 1) -> np.ndarray:
    """The float32 array an ``ImageStim`` draws pixel for pixel: replicated, rows flipped.

    PsychoPy draws array row 0 at the bottom; the stimulus' row 0 is its top. A grey (``H × W``)
    array is a luminance texture in PsychoPy's signed units, level k → ``2k/(2**bits − 1) − 1``; an
    RGB (``H × W × 3``) array goes through PsychoPy's RGB shader, which takes values in [0, 1]:
    level k → ``k/(2**bits − 1)``. Both give level k exactly on screen.
    """
    levels = replicate(mapped.levels, magnification)[::-1]
    if levels.ndim == 3:
        return np.ascontiguousarray(levels, dtype=np.float32) / np.float32(2**mapped.bits - 1)
    return np.ascontiguousarray(level_to_signed(levels, mapped.bits), dtype=np.float32)


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
    """Width and height of an image of ``image_size`` screen pixels in degrees of visual angle (at the centre)."""
    return image_size[0] / profile.ppd, image_size[1] / profile.ppd
