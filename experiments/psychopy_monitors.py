"""Monitor profiles to and from PsychoPy's Monitor Center files (``<folder>/<name>.json``).

A PsychoPy monitor holds calibrations keyed by date; each has ``width``, ``distance``,
``sizePix``, ``calibDate`` (epoch seconds), ``notes``, the photometer readings ``levelsPre``
(0 … 255) and ``lumsPre`` (rows lum, R, G, B, or one row) and the fitted ``gammaGrid`` (rows
lum, R, G, B; columns minLum, maxLum, gamma). An eigdist profile maps onto it one to one: its
calibration and its ``history`` become PsychoPy calibrations, and back. Readings are refitted
on import with :func:`experiments.calibration.fit_calibration`, so a round trip gives the same curves.

PsychoPy keeps no refresh rate, bit depth or chromaticities in these files: they are asked for on
import, and chromaticities stay in the eigdist profile only.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .calibration import calibrated, fit_calibration
from .psychopy_home import import_psychopy
from .monitor import GUNS, Calibration, MonitorProfile, ProfileError, gamma_curve, new_profile, parse_date

#: ``levelsPre`` are 8-bit output values in PsychoPy.
PSYCHOPY_TOP = 255
#: Readings sampled from a ``gammaGrid`` when a PsychoPy calibration has no ``lumsPre``.
GRID_SAMPLES = 17


@contextlib.contextmanager
def _folder(folder: str | os.PathLike | None) -> Iterator[Path]:
    """PsychoPy reads and writes monitors in one module-level folder; point it at ``folder`` for a while."""
    import_psychopy()
    from psychopy.monitors import calibTools

    old = calibTools.monitorFolder
    path = Path(folder) if folder else Path(old)
    calibTools.monitorFolder = str(path)
    try:
        yield path
    finally:
        calibTools.monitorFolder = old


def quiet_monitor(name: str) -> Any:
    """``psychopy.monitors.Monitor(name)`` without its "Monitor specification not found" warning (expected here)."""
    from psychopy import logging, monitors

    level = logging.console.level
    logging.console.setLevel(logging.ERROR)
    try:
        mon = monitors.Monitor(name, autoLog=False, verbose=False)
        logging.flush()  # messages are filtered when flushed
    finally:
        logging.console.setLevel(level)
    return mon


def _calib_name(cal: Calibration) -> str:
    """PsychoPy's calibration key: its date, ``YYYY_MM_DD HH:MM:SS`` (UTC, seconds kept so keys stay distinct)."""
    return parse_date(cal.date, "calibration.date").strftime("%Y_%m_%d %H:%M:%S")


def _psychopy_calib(profile: MonitorProfile, cal: Calibration) -> dict[str, Any]:
    """One PsychoPy calibration dict of ``cal`` (readings as measured, gamma grid from the fits)."""
    from psychopy import __version__

    curves = [cal.grey, *((cal.guns or {}).values())]
    levels = np.asarray(cal.levels) * PSYCHOPY_TOP / (profile.n_levels - 1)
    same_levels = all(c.levels == cal.levels for c in curves)
    lums = np.array([c.luminance for c in curves]) if same_levels else np.array([cal.luminance])
    grid = np.array([[c.gamma["lum0"], c.gamma["lum1"], c.gamma["gamma"]] for c in curves])
    if len(curves) == 1:
        grid = np.vstack([grid, np.tile([0.0, 1.0, 1.0], (3, 1))])  # no per-gun fit: PsychoPy's default rows
    return {
        "calibDate": parse_date(cal.date, "calibration.date").timestamp(), "width": profile.width_cm,
        "distance": profile.distance_cm, "sizePix": list(profile.resolution), "notes": profile.notes,
        "gamma": None, "gammaGrid": grid, "linearizeMethod": 1, "levelsPre": levels, "lumsPre": lums,
        "meanLum": cal.lum_mean, "useBits": False, "psychopyVersion": __version__,
    }


def write_psychopy_monitor(profile: MonitorProfile, folder: str | os.PathLike | None = None) -> Path:
    """Write ``profile`` (every calibration, oldest first) as the PsychoPy monitor ``<folder>/<name>.json``.

    ``folder`` defaults to PsychoPy's own monitor folder. A profile without a calibration gives a
    monitor with geometry only. Returns the file written.

    Note: PsychoPy loads a monitor's ``gammaGrid`` into the hardware ramp when a PsychoPy window
    uses it; eigdist never does (its windows get a fresh monitor with the default grid).
    """
    with _folder(folder) as path:
        path.mkdir(parents=True, exist_ok=True)
        mon = quiet_monitor(profile.name)
        mon.calibs, mon.calibNames = {}, []
        cals = [*profile.history, *([profile.calibration] if profile.calibration else [])]
        if not cals:
            mon.newCalib(width=profile.width_cm, distance=profile.distance_cm, notes=profile.notes, verbose=False)
            mon.setSizePix(list(profile.resolution))
        for cal in cals:
            name = _calib_name(cal)
            mon.calibs[name] = _psychopy_calib(profile, cal)
            mon.calibNames.append(name)
        mon.saveMon()
        return path / f"{profile.name}.json"


def _readings(calib: dict[str, Any], bits: int, where: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """Per-curve ``(levels, luminance)`` of a PsychoPy calibration, and where they came from."""
    top = 2**bits - 1
    lums = calib.get("lumsPre")
    levels = calib.get("levelsPre")
    if lums is not None and levels is not None and np.size(lums) > 0:
        lums = np.atleast_2d(np.asarray(lums, dtype=float))
        lv = np.asarray(levels, dtype=float).ravel() * top / PSYCHOPY_TOP
        if lums.shape[0] not in (1, 4) or lums.shape[1] != lv.size:
            raise ProfileError(f"{where}: lumsPre must be 1 or 4 rows of {lv.size} readings, got shape {lums.shape}")
        return {g: (lv, lums[i]) for i, g in enumerate(GUNS[: lums.shape[0]])}, "lumsPre"
    grid = calib.get("gammaGrid")
    if grid is None:
        raise ProfileError(f"{where}: neither photometer readings (lumsPre) nor a gammaGrid")
    grid = np.atleast_2d(np.asarray(grid, dtype=float))
    lv = np.rint(np.linspace(0, top, GRID_SAMPLES))
    rows = 4 if grid.shape[0] == 4 and not np.allclose(grid[1:, :3], [0.0, 1.0, 1.0]) else 1
    return {g: (lv, gamma_curve(lv / top, *grid[i, :3])) for i, g in enumerate(GUNS[:rows])}, "gammaGrid"


def read_psychopy_monitor(name: str, folder: str | os.PathLike | None = None, *, refresh_hz: float,
                          bits: int = 8, profile_name: str | None = None) -> MonitorProfile:
    """Build a profile from PsychoPy's monitor ``name``: geometry of its newest calibration, every
    calibration refitted (the newest used, the others in ``history``).

    Parameters
    ----------
    name
        The PsychoPy monitor (file ``<folder>/<name>.json``).
    folder
        Its folder (default: PsychoPy's own).
    refresh_hz, bits
        What PsychoPy does not record.
    profile_name
        The eigdist profile's name (default ``name``).
    """
    with _folder(folder) as path:
        file = path / f"{name}.json"
        if not file.is_file():
            have = sorted(p.stem for p in path.glob("*.json")) if path.is_dir() else []
            raise FileNotFoundError(f"no PsychoPy monitor {name!r} in {path} (monitors there: "
                                    f"{', '.join(have) or 'none'}); give the folder with --psychopy-folder")
        try:
            mon = quiet_monitor(name)
        except ValueError as exc:
            raise ProfileError(f"{file}: not a readable PsychoPy monitor ({exc})") from None
    newest = mon.calibs[mon.calibNames[-1]]
    where = f"{file} calibration"
    size = newest.get("sizePix")
    profile = new_profile(profile_name or name, width_cm=newest.get("width"), distance_cm=newest.get("distance"),
                          resolution=tuple(int(v) for v in size) if size is not None else (), refresh_hz=refresh_hz,
                          bits=bits, notes=str(newest.get("notes") or ""))
    for key in mon.calibNames:
        calib = mon.calibs[key]
        if calib.get("lumsPre") is None and calib.get("gammaGrid") is None:
            continue  # geometry only: nothing measured
        curves, origin = _readings(calib, bits, f"{where} {key!r}")
        date = datetime.fromtimestamp(float(calib["calibDate"]), timezone.utc)
        guns = {g: curves[g] for g in GUNS[1:]} if len(curves) == 4 else None
        profile = calibrated(profile, fit_calibration(*curves["grey"], bits, date=date, guns=guns,
                                                      source=f"PsychoPy monitor {file} calibration {key!r} ({origin})"))
    return profile


__all__ = ["quiet_monitor", "read_psychopy_monitor", "write_psychopy_monitor"]
