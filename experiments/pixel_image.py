"""Stimulus images on the window: pixel for pixel, dithered, magnified by an integer factor.

:func:`choose_magnification` (pure) picks the pixel-replication factor for a wanted size in
degrees; :class:`PixelImage` maps an image's values through the monitor's curve
(:mod:`experiments.luminance`) and draws it with PsychoPy (imported inside the methods).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from eigdist_core.errors import EigdistError

from .luminance import (
    DITHER_MODES, Mapped, as_channels, channel_tables, continuous_levels, pixel_offset, quantise, size_deg, texture,
)
from .monitor import MonitorProfile
from .window import DisplayError


def choose_magnification(image_size: tuple[int, int], profile: MonitorProfile, window: tuple[int, int], *,
                         magnification: int | None = None, stimulus_deg: float | None = None,
                         tolerance: float = 0.05) -> tuple[int, float]:
    """The integer pixel-replication factor for an image, and the width it then subtends in degrees (pure).

    Parameters
    ----------
    image_size
        ``(width, height)`` of the stimulus in image pixels.
    profile
        Its pixels per degree.
    window
        ``(width, height)`` of the window: the magnified image must fit.
    magnification, stimulus_deg
        Either an integer factor, or the wanted width in degrees (the nearest integer factor is
        used); neither: 1.
    tolerance
        Largest relative difference between ``stimulus_deg`` and the achieved width.

    Raises
    ------
    DisplayError
        A size no integer factor reaches within ``tolerance`` (naming the nearest reachable sizes),
        or a magnified image larger than the window.
    """
    w, h = image_size
    ppd = profile.ppd
    if stimulus_deg is not None:
        exact = stimulus_deg * ppd / w
        k = max(1, int(round(exact)))
        achieved = k * w / ppd
        if abs(achieved - stimulus_deg) > tolerance * stimulus_deg:
            near = sorted({max(1, int(math.floor(exact))), max(1, int(math.ceil(exact)))})
            options = ", ".join(f"{n * w / ppd:.3f}° (x{n})" for n in near)
            raise DisplayError(
                f"display.stimulus_deg = {stimulus_deg:g}° needs a magnification of {exact:.2f} for a {w}-px image at "
                f"{ppd:.2f} px/deg (monitor {profile.name!r}); integer pixel replication reaches {options}, not "
                f"within display.size_tolerance = {tolerance:g}: choose one of those sizes, or change the distance"
            )
    else:
        k = magnification or 1
    if k * w > window[0] or k * h > window[1]:
        raise DisplayError(
            f"a {w}x{h}-px image magnified x{k} is {k * w}x{k * h} px, larger than the {window[0]}x{window[1]} window "
            f"(monitor {profile.name!r}, {ppd:.2f} px/deg): choose a smaller display.stimulus_deg or magnification"
        )
    return k, k * w / ppd


class PixelImage:
    """An image drawn pixel for pixel (units pix, no interpolation), dithered, optionally magnified.

    Grey images (``H × W`` or ``1 × H × W``) go through the grey curve; colour images (``3 × H × W``)
    through each gun's curve, with independent dithering noise per gun. Dithering is per image
    pixel; magnification then replicates every pixel into a ``k × k`` block of screen pixels.

    Parameters
    ----------
    win
        The window from :func:`experiments.window.open_window`.
    profile
        The monitor profile whose curve and bit depth map the values.
    dither
        ``frame`` (fresh noise every :meth:`draw`), ``trial`` (noise drawn once per
        :meth:`set_values`) or ``off`` (nearest level).
    rng
        Noise source (default: a fresh ``numpy`` generator).
    magnification
        Integer pixel replication factor (≥ 1).
    """

    def __init__(self, win: Any, profile: MonitorProfile, dither: str = "frame",
                 rng: np.random.Generator | None = None, magnification: int = 1) -> None:
        if dither not in DITHER_MODES:
            raise EigdistError(f"dither must be one of {DITHER_MODES}, got {dither!r}")
        if isinstance(magnification, bool) or not isinstance(magnification, int) or magnification < 1:
            raise EigdistError(f"magnification must be an integer >= 1, got {magnification!r}")
        self.win, self.profile, self.dither, self.magnification = win, profile, dither, magnification
        self.rng = rng if rng is not None else np.random.default_rng()
        self._level: np.ndarray | None = None  # continuous levels of the current values, float32
        self._clipped = 0
        self._stim: Any = None
        self.mapped: Mapped | None = None

    def _map(self) -> Mapped:
        levels = quantise(self._level, self.profile.bits, None if self.dither == "off" else self.rng)
        return Mapped(levels=levels, clipped=self._clipped, bits=self.profile.bits)

    def set_values(self, values: np.ndarray) -> Mapped:
        """Show ``values`` (H×W, 1×H×W or 3×H×W, linear in [0, 1]) from now on; return the mapping."""
        from psychopy import visual

        arr = as_channels(values)
        level, self._clipped = continuous_levels(arr, channel_tables(self.profile, arr.shape[0]))
        self._level = level.astype(np.float32)  # inverted once per trial; only the noise is per frame
        self.mapped = self._map()
        w, h = self.screen_size
        win_w, win_h = (int(v) for v in self.win.size)
        if w > win_w or h > win_h:
            raise EigdistError(f"stimulus is {w}x{h} px on screen but the window is only {win_w}x{win_h}: "
                             "it would be cropped")
        pos = pixel_offset((win_w, win_h), (w, h))
        tex = texture(self.mapped, self.magnification)
        if self._stim is None or tuple(self._stim.size) != (w, h) or np.shape(self._stim.image) != tex.shape:
            self._stim = visual.ImageStim(self.win, image=tex, units="pix", size=(w, h),
                                          pos=pos, interpolate=False, autoLog=False)
        else:
            self._stim.image = tex
            self._stim.pos = pos
        return self.mapped

    @property
    def screen_size(self) -> tuple[int, int]:
        """Width and height of the current image on screen, in pixels (after magnification)."""
        h, w = self.mapped.levels.shape[:2]
        return w * self.magnification, h * self.magnification

    @property
    def size_deg(self) -> tuple[float, float]:
        """Width and height of the current image on screen, in degrees."""
        return size_deg(self.screen_size, self.profile)

    def draw(self) -> None:
        """Draw the image (with fresh dithering noise in ``frame`` mode)."""
        if self._stim is None:
            raise RuntimeError("PixelImage.draw() before set_values()")
        if self.dither == "frame":
            self.mapped = self._map()
            self._stim.image = texture(self.mapped, self.magnification)
        self._stim.draw()
