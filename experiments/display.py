"""The PsychoPy side of the display: open a checked window, draw pixel-exact images, read frames back.

Besides ``session.py`` this is the only module that imports PsychoPy's display parts (imported
inside the functions, so ``import experiments.display`` needs no X display). The luminance
mapping itself is pure and lives in :mod:`experiments.luminance`.

The hardware gamma ramp stays identity (real sessions set ``gamma=1``); linearisation happens in
software. Frames are read from the back buffer before ``flip()``: llvmpipe's front buffer reads
black after a flip.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eigdist_core.errors import EigdistError

from .luminance import (
    DITHER_MODES, Mapped, as_channels, background_level, background_value, channel_tables, continuous_levels,
    level_table, level_to_signed, pixel_offset, quantise, size_deg, texture,
)
from .monitor import GUNS, MonitorProfile, parse_date

#: Relative difference between measured and profile refresh rate that counts as a mismatch.
REFRESH_TOLERANCE = 0.02


class DisplayError(EigdistError):
    """The screen does not match the profile (size, refresh, bit depth, gamma ramp); names both values."""


@dataclass
class WindowReport:
    """What the opened window turned out to be, next to what the profile asked for."""

    requested_size: tuple[int, int]
    framebuffer_size: tuple[int, int]
    screen_size: tuple[int, int]
    profile_resolution: tuple[int, int]
    refresh_hz_profile: float
    refresh_hz_measured: float | None
    red_bits: int
    bits_profile: int
    hardware_ramp: str
    problems: list[str] = field(default_factory=list)
    #: Whether a mismatch stops the run: not under ``--pilot``, nor for a simulated observer
    #: (it sees the arrays, not the physical screen); the problems are recorded either way.
    enforced: bool = True


def window_problems(report: WindowReport, *, check_refresh: bool) -> list[str]:
    """Every mismatch between the opened window and the profile, each naming both values (pure)."""
    out = []
    if report.screen_size != report.profile_resolution:
        out.append(
            f"screen is {report.screen_size[0]}x{report.screen_size[1]} px but the profile says "
            f"{report.profile_resolution[0]}x{report.profile_resolution[1]} (pixels per degree would be wrong)"
        )
    if report.framebuffer_size != report.requested_size:
        out.append(
            f"window drawable is {report.framebuffer_size[0]}x{report.framebuffer_size[1]} px but "
            f"{report.requested_size[0]}x{report.requested_size[1]} was requested (HiDPI scaling? pixels would "
            f"not map one to one)"
        )
    if report.red_bits < report.bits_profile:
        out.append(f"frame buffer has {report.red_bits} bits per gun but the profile says {report.bits_profile}")
    if check_refresh:
        measured = report.refresh_hz_measured
        if measured is None:
            out.append(f"refresh rate could not be measured (profile says {report.refresh_hz_profile:g} Hz)")
        elif abs(measured - report.refresh_hz_profile) > REFRESH_TOLERANCE * report.refresh_hz_profile:
            out.append(f"measured refresh is {measured:.2f} Hz but the profile says {report.refresh_hz_profile:g} Hz")
    return out


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


def require_display() -> None:
    """Raise :class:`DisplayError` when no X display can be reached (before PsychoPy tries and crashes)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise DisplayError(
            "no display to open a window on (DISPLAY is not set): run this on the machine's desktop, or for a "
            "simulated run under a virtual screen, e.g. xvfb-run -s '-screen 0 1920x1080x24' eigdist ..."
        )


def psychopy_monitor(profile: MonitorProfile) -> Any:
    """A PsychoPy ``Monitor`` with the profile's geometry and readings (not saved to disk).

    The gamma grid is left at its default so PsychoPy never loads the curve into the hardware ramp.
    """
    from .psychopy_monitors import quiet_monitor

    # never a monitor PsychoPy saved under this name: its gamma would reach the ramp, and its file may be unreadable
    mon = quiet_monitor(profile.name)
    mon.newCalib(width=profile.width_cm, distance=profile.distance_cm, notes=profile.notes, verbose=False)
    mon.setSizePix(list(profile.resolution))
    cal = profile.calibration
    if cal is not None:
        mon.setCalibDate(parse_date(cal.date, "calibration.date").timestamp())  # PsychoPy keeps epoch seconds
        mon.setLevelsPre(list(cal.levels))
        mon.setLumsPre(list(cal.luminance))
    return mon


def _gl_int(name: Any) -> int:
    from pyglet import gl

    value = gl.GLint()
    gl.glGetIntegerv(name, value)
    return int(value.value)


def _window_settings(profile: MonitorProfile, requested: tuple[int, int], *, fullscreen: bool, screen: int,
                     simulated: bool, identity_ramp: bool) -> dict[str, Any]:
    """The keyword arguments of PsychoPy's ``visual.Window`` for ``profile``.

    Parameters
    ----------
    profile
        Monitor geometry, calibration and bit depth (``bpc``); its background level is the window colour.
    requested
        Window size ``(w, h)`` in pixels.
    fullscreen, screen
        As for :func:`open_window`.
    simulated
        ``waitBlanking`` off: a simulated observer counts frames, it does not wait for the screen.
    identity_ramp
        Set the hardware gamma ramp to identity (``gamma=1``, failing loudly); otherwise leave the OS ramp.

    Returns
    -------
    dict
        Everything ``visual.Window`` is called with.
    """
    bg = float(level_to_signed(background_level(profile), profile.bits))
    return dict(
        size=requested, fullscr=fullscreen, screen=screen, units="pix", color=(bg, bg, bg),
        colorSpace="rgb", monitor=psychopy_monitor(profile), bpc=(profile.bits,) * 3,
        gamma=1.0 if identity_ramp else None, gammaErrorPolicy="raise", waitBlanking=not simulated,
        checkTiming=False, allowGUI=not fullscreen, useRetina=False, autoLog=False,
    )


def _create_window(profile: MonitorProfile, requested: tuple[int, int], *, fullscreen: bool, screen: int,
                   simulated: bool, identity_ramp: bool) -> Any:
    """A PsychoPy window with :func:`_window_settings`; its failures become a :class:`DisplayError` naming the cause.

    Parameters
    ----------
    profile, requested, fullscreen, screen, simulated, identity_ramp
        As for :func:`_window_settings`.

    Returns
    -------
    psychopy.visual.Window

    Raises
    ------
    DisplayError
        The screen offers no frame buffer of the profile's depth, or the identity gamma ramp cannot be set.
    """
    from .psychopy_home import import_psychopy

    import_psychopy()  # PsychoPy's per-user files under this account's lock (sessions may start at once)
    from psychopy import visual

    try:
        return visual.Window(**_window_settings(profile, requested, fullscreen=fullscreen, screen=screen,
                                                simulated=simulated, identity_ramp=identity_ramp))
    except RuntimeError as exc:
        if "configuration is not supported" not in str(exc):  # pyglet: no GL config with these bits per gun
            raise
        raise DisplayError(
            f"monitor {profile.name!r}: the screen offers no {profile.bits}-bit frame buffer "
            f"(bpc={(profile.bits,) * 3}: {exc}); use a 30-bit screen mode or a profile with --bits 8"
        ) from exc
    except OSError as exc:
        raise DisplayError(
            f"could not set the hardware gamma ramp to identity ({exc}); linearisation is done in "
            f"software and needs an identity ramp: fix the driver, or run with --pilot"
        ) from exc


def _window_report(win: Any, profile: MonitorProfile, requested: tuple[int, int], *, simulated: bool,
                   identity_ramp: bool, enforced: bool) -> WindowReport:
    """What the opened window turned out to be, next to the profile, with its :func:`window_problems`.

    Parameters
    ----------
    win
        The opened window.
    profile
        What it should be.
    requested
        The size it was opened with.
    simulated
        Leave the refresh rate unmeasured and unchecked (a simulated run counts frames).
    identity_ramp
        Whether the hardware gamma ramp was set to identity (else the OS ramp was left).
    enforced
        Whether the problems stop the run (:attr:`WindowReport.enforced`).

    Returns
    -------
    WindowReport
    """
    from pyglet import gl

    handle = win.winHandle
    report = WindowReport(
        requested_size=requested,
        framebuffer_size=tuple(int(v) for v in handle.get_framebuffer_size()),
        screen_size=(int(handle.screen.width), int(handle.screen.height)),
        profile_resolution=tuple(profile.resolution),
        refresh_hz_profile=profile.refresh_hz,
        refresh_hz_measured=None if simulated else win.getActualFrameRate(),
        red_bits=_gl_int(gl.GL_RED_BITS),
        bits_profile=profile.bits,
        hardware_ramp="identity" if identity_ramp else "os",
        enforced=enforced,
    )
    report.problems = window_problems(report, check_refresh=not simulated)
    return report


def _refuse_or_warn(win: Any, profile: MonitorProfile, report: WindowReport, *, pilot: bool) -> None:
    """Close ``win`` and raise on the report's problems when enforced; else log each as a warning.

    Parameters
    ----------
    win
        The opened window.
    profile
        Named in the error.
    report
        From :func:`_window_report`.
    pilot
        Names the warnings ``pilot:`` (else ``not enforced:``).

    Raises
    ------
    DisplayError
        Listing every problem, when the report is enforced.
    """
    from psychopy import logging

    if report.problems and report.enforced:
        win.close()
        raise DisplayError(f"monitor {profile.name!r}: " + "; ".join(report.problems) + " (use --pilot to go on)")
    for problem in report.problems:
        logging.warning(f"{'pilot' if pilot else 'not enforced'}: {problem}")


def open_window(
    profile: MonitorProfile,
    *,
    fullscreen: bool = False,
    size: tuple[int, int] | None = None,
    pilot: bool = False,
    simulated: bool = False,
    screen: int = 0,
    enforce: bool | None = None,
) -> tuple[Any, WindowReport]:
    """Open a PsychoPy window for ``profile`` and check it against the profile.

    Parameters
    ----------
    profile
        The monitor profile (resolution, refresh, bit depth, calibration).
    fullscreen
        Full screen at the profile's resolution; otherwise a window of ``size``.
    size
        Window size ``(w, h)`` in pixels when not full screen (default: the profile's resolution).
    pilot
        Mismatches become warnings and the OS gamma ramp is left as it is.
    simulated
        A simulated observer: ``waitBlanking`` off, refresh not measured (timing is counted in
        frames), OS gamma ramp left as it is, and the screen need not match the profile (the
        observer sees the arrays; mismatches are recorded in the report, not refused).
    screen
        Screen number.
    enforce
        Refuse mismatches; default ``not (pilot or simulated)``. ``calibrate check --frames``
        counts frames like a simulated run but enforces, as a real session does.

    Returns
    -------
    (window, WindowReport)
        The window (units ``pix``, background at Lmean) and what was found.

    Raises
    ------
    DisplayError
        On any mismatch (screen size, drawable size, bit depth, refresh) when enforced; when there is
        no display, the identity gamma ramp cannot be set or the screen offers no frame buffer of the
        profile's depth.
    """
    require_display()
    requested = tuple(profile.resolution) if fullscreen or size is None else (int(size[0]), int(size[1]))
    real = not (pilot or simulated)
    win = _create_window(profile, requested, fullscreen=fullscreen, screen=screen, simulated=simulated,
                         identity_ramp=real)
    report = _window_report(win, profile, requested, simulated=simulated, identity_ramp=real,
                            enforced=real if enforce is None else enforce)
    _refuse_or_warn(win, profile, report, pilot=pilot)
    return win, report


class PixelImage:
    """An image drawn pixel for pixel (units pix, no interpolation), dithered, optionally magnified.

    Grey images (``H × W`` or ``1 × H × W``) go through the grey curve; colour images (``3 × H × W``)
    through each gun's curve, with independent dithering noise per gun. Dithering is per image
    pixel; magnification then replicates every pixel into a ``k × k`` block of screen pixels.

    Parameters
    ----------
    win
        The window from :func:`open_window`.
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


def capture_levels(win: Any, bits: int) -> np.ndarray:
    """Read the back buffer (call before ``flip()``) as integer output levels, ``H × W × 3``, row 0 at top.

    Unlike ``win.getMovieFrame`` (8-bit images) this reads floats, so 10-bit frames keep all
    1024 levels.
    """
    from pyglet import gl

    w, h = (int(v) for v in win.winHandle.get_framebuffer_size())
    buf = (gl.GLfloat * (w * h * 3))()
    gl.glReadBuffer(gl.GL_BACK)
    gl.glPixelStorei(gl.GL_PACK_ALIGNMENT, 1)
    gl.glReadPixels(0, 0, w, h, gl.GL_RGB, gl.GL_FLOAT, buf)
    frame = np.frombuffer(buf, dtype=np.float32).reshape(h, w, 3)[::-1]
    return np.rint(frame * (2**bits - 1)).astype(np.int32)


def save_frame_png(levels: np.ndarray, bits: int, path: str) -> str:
    """Write captured levels as an 8-bit PNG (through :mod:`eigdist_core.io`); return its sha256."""
    import io

    from PIL import Image

    from eigdist_core.io import atomic_write_bytes

    img = np.rint(levels * (255.0 / (2**bits - 1))).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())



#: Stimulus values of the photometer patches on the ``calibrate check`` screen.
CHECK_PATCHES = (0.0, 0.25, 0.5, 0.75, 1.0)


def check_pattern(width: int, height: int, background: float) -> tuple[np.ndarray, list[tuple[float, int, int]]]:
    """The ``calibrate check`` screen as values: a 0→1 ramp above a row of uniform patches (pure).

    Returns the ``height × width`` values and, per patch, ``(value, centre column, centre row)``.
    """
    values = np.full((height, width), background)
    x0, x1 = width // 10, width - width // 10
    values[height // 8: height // 4, x0:x1] = np.linspace(0.0, 1.0, x1 - x0)
    side = max(1, min(width // (2 * len(CHECK_PATCHES)), height // 4))
    patches = []
    for i, v in enumerate(CHECK_PATCHES):
        cx, cy = int(width * (i + 1) / (len(CHECK_PATCHES) + 1)), int(height * 0.55)
        top, left = cy - side // 2, cx - side // 2
        values[top - 2: top + side + 2, left - 2: left + side + 2] = 0.0  # dark outline: the Lmean patch shows
        values[top: top + side, left: left + side] = v
        patches.append((v, cx, cy))
    return values, patches


def gun_values(values: np.ndarray, gun: str) -> np.ndarray:
    """The check screen for one gun: ``values`` on that gun (``3 × H × W``, the others at 0), or grey as is."""
    if gun == "grey":
        return values
    out = np.zeros((3, *values.shape))
    out[GUNS.index(gun) - 1] = values
    return out


def run_check(profile: MonitorProfile, *, fullscreen: bool = False, size: tuple[int, int] | None = None,
              pilot: bool = False, frames: int | None = None, save: str | None = None,
              gun: str = "grey") -> list[str]:
    """Show the check screen (dithered every frame) until Escape or ``frames``; return a summary.

    Each patch is labelled with the luminance it should measure; ``gun`` (``grey``, ``r``, ``g``,
    ``b``) shows the patches of that gun alone (the others at level 0), as it was calibrated;
    ``save`` writes the first frame as read back from the back buffer.
    """
    if gun not in GUNS:
        raise DisplayError(f"gun must be one of {', '.join(GUNS)}, got {gun!r}")
    table = level_table(profile) if gun == "grey" else channel_tables(profile, 3)[GUNS.index(gun) - 1]
    require_display()
    from psychopy import event, visual

    win, report = open_window(profile, fullscreen=fullscreen, size=size, pilot=pilot,
                              simulated=frames is not None, enforce=not pilot)
    w, h = (int(v) for v in win.size)
    values, patches = check_pattern(w, h, background_value(profile))
    image = PixelImage(win, profile, dither="frame")
    image.set_values(gun_values(values, gun))
    lines = [f"window {w}x{h}, {profile.bits}-bit, ramp {report.hardware_ramp}, gun {gun}"] + [
        f"pilot: {p}" for p in report.problems]
    labels = []
    for v, cx, cy in patches:
        lum = table[0] + v * (table[-1] - table[0])
        level = float(continuous_levels(np.array([[v]]), table)[0][0, 0])
        text = f"{lum:.2f} cd/m²" if profile.calibration else f"value {v:.2f} (uncalibrated)"
        lines.append(f"{gun} patch value {v:.2f}: {text.replace('²', '2')} (level {level:.2f})")
        labels.append(visual.TextStim(win, text=text, pos=(cx - w / 2, h / 2 - cy - h / 8),
                                      height=max(10, h // 40), units="pix", color=(-1, -1, -1), autoLog=False))
    n = 0
    try:
        while frames is None or n < frames:
            image.draw()
            for label in labels:
                label.draw()
            if n == 0 and save:
                save_frame_png(capture_levels(win, profile.bits), profile.bits, save)
                lines.append(f"wrote {save}")
            win.flip()
            n += 1
            if event.getKeys(["escape", "q"]):
                break
    finally:
        win.close()
    return lines
