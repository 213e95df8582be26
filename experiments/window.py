"""The PsychoPy window: open it checked against the monitor profile, read its frames back.

Besides ``session.py`` only this module, :mod:`experiments.pixel_image` and
:mod:`experiments.check_screen` import PsychoPy's display parts (imported inside the functions, so
``import experiments.window`` needs no X display). The luminance mapping itself is pure and lives
in :mod:`experiments.luminance`.

The hardware gamma ramp stays identity (real sessions set ``gamma=1``); linearisation happens in
software. Frames are read from the back buffer before ``flip()``: llvmpipe's front buffer reads
black after a flip.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eigdist_core.errors import EigdistError

from .luminance import background_level, level_to_signed
from .monitor import MonitorProfile, parse_date

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
