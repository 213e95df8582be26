"""Monitor profiles to and from PsychoPy's Monitor Center files (``<folder>/<name>.json``).

A PsychoPy monitor holds calibrations keyed by date; each has ``width``, ``distance``,
``sizePix``, ``calibDate`` (epoch seconds), ``notes``, the photometer readings ``levelsPre``
(0 … 255) and ``lumsPre`` (rows lum, R, G, B, or one row) and the fitted ``gammaGrid`` (rows
lum, R, G, B; columns minLum, maxLum, gamma). An eigdist profile maps onto it one to one: its
calibration and its ``history`` become PsychoPy calibrations, and back. Readings are refitted
on import with :func:`experiments.calibration.fit_calibration`, so a round trip gives the same curves.

A PsychoPy calibration without readings whose ``gammaGrid`` keeps PsychoPy's default luminances
(minLum 0, maxLum 1: Monitor Center's new, unmeasured calibration) measured nothing: it gives
geometry only, never a calibration. Export adds to a monitor PsychoPy already has and keeps its
other calibrations.

PsychoPy keeps no refresh rate, bit depth or chromaticities in these files: they are asked for on
import, and chromaticities stay in the eigdist profile only. The files are read and written with
``json_tricks``, as PsychoPy does (it ships with PsychoPy).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from eigdist_core.errors import EigdistError
from eigdist_core.io import atomic_write_bytes, decode_text

from .calibration import calibrated, fit_calibration
from .monitor import (
    GUNS, Calibration, MonitorProfile, ProfileError, gamma_curve, new_profile, parse_date, utc_now,
)
from .psychopy_home import import_psychopy, quiet_console

#: ``levelsPre`` are 8-bit output values in PsychoPy.
PSYCHOPY_TOP = 255
#: Readings sampled from a ``gammaGrid`` when a PsychoPy calibration has no ``lumsPre``.
GRID_SAMPLES = 17
#: PsychoPy's ``gammaGrid`` row of a gun nobody measured (minLum, maxLum, gamma).
DEFAULT_GRID_ROW = (0.0, 1.0, 1.0)


def psychopy_folder(folder: str | os.PathLike | None = None) -> Path:
    """``folder``, or PsychoPy's own monitor folder (``~/.psychopy3/monitors``) when it is not given."""
    if folder:
        return Path(folder)
    import_psychopy()
    from psychopy.monitors import calibTools

    return Path(calibTools.monitorFolder)


def quiet_monitor(name: str) -> Any:
    """A fresh ``psychopy.monitors.Monitor(name)``, without its "Monitor specification not found" warning.

    It never reads PsychoPy's saved file of that name (which may hold anything, or be unreadable):
    PsychoPy is pointed at an empty folder while the monitor is built.
    """
    import tempfile

    import_psychopy()
    from psychopy import monitors

    with quiet_console(), tempfile.TemporaryDirectory() as empty, monitor_folder(empty):
        return monitors.Monitor(name, autoLog=False, verbose=False)


@contextlib.contextmanager
def monitor_folder(folder: str | os.PathLike) -> Iterator[None]:
    """PsychoPy reads and saves its monitors in ``folder`` while inside; its own folder is restored after,
    also on an exception (``calibTools.monitorFolder`` is a module global: the whole process's)."""
    import_psychopy()
    from psychopy.monitors import calibTools

    saved = calibTools.monitorFolder
    calibTools.monitorFolder = str(folder)
    try:
        yield
    finally:
        calibTools.monitorFolder = saved


def _load_calibs(file: Path) -> dict[str, dict[str, Any]]:
    """The calibrations of the PsychoPy monitor file ``file`` by name; an unreadable file is named."""
    import json_tricks
    from json_tricks.decoders import json_numpy_obj_hook

    try:  # arrays decoded, nothing else: json_tricks' other hooks would build any class a file names
        calibs = json_tricks.loads(decode_text(file.read_bytes(), file), ignore_comments=False, preserve_order=False,
                                   obj_pairs_hooks=[json_numpy_obj_hook])
    except (ValueError, TypeError, KeyError) as exc:  # not text, not JSON, or a malformed array
        raise ProfileError(f"{file}: not a readable PsychoPy monitor file ({exc}); open it in PsychoPy's Monitor "
                           f"Center or restore it from a backup") from None
    if not isinstance(calibs, dict):
        raise ProfileError(f"{file}: not a PsychoPy monitor file (an object of calibrations keyed by date), got "
                           f"{type(calibs).__name__}")
    for key, calib in calibs.items():
        if not isinstance(calib, dict):
            raise ProfileError(f"{file} calibration {key!r}: must be an object of PsychoPy fields (width, distance, "
                               f"sizePix, calibDate, …), got {type(calib).__name__}")
    return calibs


def _array(calib: dict[str, Any], field: str, where: str) -> np.ndarray | None:
    """The PsychoPy field ``field`` as a float array with at least 2 dimensions (``None``: absent or empty)."""
    value = calib.get(field)
    if value is None or np.size(value) == 0:
        return None
    try:
        return np.atleast_2d(np.asarray(value, dtype=float))
    except (TypeError, ValueError):
        raise ProfileError(f"{where}: PsychoPy field {field!r} must hold numbers, got {value!r:.80}") from None


def _measured(calib: dict[str, Any], where: str) -> bool:
    """Whether a PsychoPy calibration holds luminances: readings (``lumsPre``) or a grey ``gammaGrid`` row
    whose minLum, maxLum are not PsychoPy's defaults 0 and 1 (a gamma typed in alone measured no luminance)."""
    if _array(calib, "lumsPre", where) is not None:
        return True
    grid = _array(calib, "gammaGrid", where)
    return grid is not None and grid.shape[-1] >= 2 and not np.allclose(grid[0, :2], DEFAULT_GRID_ROW[:2])


def _calib_name(cal: Calibration) -> str:
    """PsychoPy's calibration key: its date, ``YYYY_MM_DD HH:MM:SS`` (UTC, seconds kept so keys stay distinct)."""
    return parse_date(cal.date, "calibration.date").strftime("%Y_%m_%d %H:%M:%S")


def _psychopy_calib(profile: MonitorProfile, cal: Calibration | None) -> dict[str, Any]:
    """One PsychoPy calibration dict of ``cal`` (readings as measured, gamma grid from the fits); ``None``:
    geometry only, dated now, with PsychoPy's default grid (what Monitor Center saves before measuring)."""
    from psychopy import __version__

    common = {"width": profile.width_cm, "distance": profile.distance_cm, "sizePix": list(profile.resolution),
              "notes": profile.notes, "gamma": None, "linearizeMethod": 1, "useBits": False,
              "psychopyVersion": __version__}
    if cal is None:
        return {**common, "calibDate": utc_now().replace(microsecond=0).timestamp(),
                "gammaGrid": np.tile(DEFAULT_GRID_ROW, (4, 1))}
    curves = [cal.grey, *((cal.guns or {}).values())]
    levels = np.asarray(cal.levels) * PSYCHOPY_TOP / (profile.n_levels - 1)
    same_levels = all(c.levels == cal.levels for c in curves)
    lums = np.array([c.luminance for c in curves]) if same_levels else np.array([cal.luminance])
    grid = np.array([[c.gamma["lum0"], c.gamma["lum1"], c.gamma["gamma"]] for c in curves])
    if len(curves) == 1:
        grid = np.vstack([grid, np.tile(DEFAULT_GRID_ROW, (3, 1))])  # no per-gun fit: PsychoPy's default rows
    return {**common, "calibDate": parse_date(cal.date, "calibration.date").timestamp(), "gammaGrid": grid,
            "levelsPre": levels, "lumsPre": lums, "meanLum": cal.lum_mean}


def write_psychopy_monitor(profile: MonitorProfile,
                           folder: str | os.PathLike | None = None) -> tuple[Path, list[str]]:
    """Add every calibration of ``profile`` to the PsychoPy monitor ``<folder>/<name>.json``.

    ``folder`` defaults to PsychoPy's own monitor folder. Calibrations PsychoPy already has are
    kept; one with the same date as a profile's calibration is that calibration exported before,
    and is replaced. A profile without a calibration adds geometry only (PsychoPy's default grid),
    unless the monitor's newest calibration already is that. The file is written atomically, and
    an existing file PsychoPy could not read is refused, never replaced.

    Returns
    -------
    tuple
        The file written and the names of every calibration it holds, in PsychoPy's order (it
        uses the last).

    Note: PsychoPy loads a monitor's ``gammaGrid`` into the hardware ramp when a PsychoPy window
    uses it; eigdist never does (its windows get a fresh monitor with the default grid).
    """
    import json_tricks

    file = psychopy_folder(folder) / f"{profile.name}.json"
    calibs = _load_calibs(file) if file.exists() else {}
    mine: list[str] = []
    for cal in [*profile.history, *([profile.calibration] if profile.calibration else [])]:
        key = _calib_name(cal)
        # two calibrations of the same second keep a key each, numbered in the profile's order (the newest last)
        key += f" ({sum(k.split(' (')[0] == key for k in mine) + 1})" if key in mine else ""
        mine.append(key)
        calibs[key] = _psychopy_calib(profile, cal)
    newest = calibs[max(calibs)] if calibs else None
    if profile.calibration is None and (newest is None or _measured(newest, str(file))
                                        or not _same_geometry(profile, newest)):
        geometry_only = _psychopy_calib(profile, None)
        key = datetime.fromtimestamp(geometry_only["calibDate"], timezone.utc).strftime("%Y_%m_%d %H:%M:%S")
        calibs[key] = geometry_only
    atomic_write_bytes(file, json_tricks.dumps(calibs, indent=2, allow_nan=True).encode())
    return file, sorted(calibs)


def _readings(calib: dict[str, Any], bits: int, where: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """Per-curve ``(levels, luminance)`` of a measured PsychoPy calibration, and where they came from."""
    top = 2**bits - 1
    lums = _array(calib, "lumsPre", where)
    if lums is not None:
        levels = _array(calib, "levelsPre", where)
        if levels is None:
            raise ProfileError(f"{where}: PsychoPy field 'levelsPre' is missing (the levels lumsPre was read at)")
        lv = levels.ravel() * top / PSYCHOPY_TOP
        if lums.ndim != 2 or lums.shape[0] not in (1, 4) or lums.shape[1] != lv.size:
            raise ProfileError(f"{where}: PsychoPy field 'lumsPre' must be 1 or 4 rows of {lv.size} readings "
                               f"(one per levelsPre), got shape {lums.shape}")
        return {g: (lv, lums[i]) for i, g in enumerate(GUNS[: lums.shape[0]])}, "lumsPre"
    grid = _array(calib, "gammaGrid", where)
    if grid.ndim != 2 or grid.shape[1] < 3 or grid.shape[0] not in (1, 4):
        raise ProfileError(f"{where}: PsychoPy field 'gammaGrid' must be 1 or 4 rows of (minLum, maxLum, gamma), "
                           f"got shape {grid.shape}")
    lv = np.rint(np.linspace(0, top, GRID_SAMPLES))
    rows = 4 if grid.shape[0] == 4 and not np.allclose(grid[1:, :3], DEFAULT_GRID_ROW) else 1
    return {g: (lv, gamma_curve(lv / top, *grid[i, :3])) for i, g in enumerate(GUNS[:rows])}, "gammaGrid"


def _date(calib: dict[str, Any], where: str) -> datetime:
    """A PsychoPy ``calibDate`` (seconds since 1970) as a UTC time; a bad one names the field."""
    value = calib.get("calibDate")
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(value)
        return datetime.fromtimestamp(float(value), timezone.utc)
    except (ValueError, OverflowError, OSError):  # NaN, or beyond the year 9999
        raise ProfileError(f"{where}: PsychoPy field 'calibDate' must be the calibration time in seconds since "
                           f"1970, got {value!r}; set it in Monitor Center or the file") from None


def _geometry(calib: dict[str, Any], where: str) -> dict[str, Any]:
    """``width_cm``, ``distance_cm``, ``resolution`` of a PsychoPy calibration; a missing or bad field is named."""
    out = {}
    for field, key in (("width", "width_cm"), ("distance", "distance_cm")):
        value = calib.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ProfileError(f"{where}: PsychoPy field {field!r} must be a positive number (cm), got {value!r}; "
                               f"set it in Monitor Center")
        out[key] = float(value)
    size = calib.get("sizePix")
    try:
        out["resolution"] = tuple(int(v) for v in size) if size is not None and np.size(size) == 2 else None
    except (TypeError, ValueError):
        out["resolution"] = None
    if out["resolution"] is None or min(out["resolution"]) < 1:
        raise ProfileError(f"{where}: PsychoPy field 'sizePix' must be the screen size [width, height] in pixels, "
                           f"got {size!r}; set it in Monitor Center")
    return out


def _same_geometry(profile: MonitorProfile, calib: dict[str, Any]) -> bool:
    """Whether a PsychoPy calibration has the profile's width, distance and size."""
    try:
        return _geometry(calib, "") == {"width_cm": profile.width_cm, "distance_cm": profile.distance_cm,
                                        "resolution": profile.resolution}
    except ProfileError:
        return False


def read_psychopy_monitor(name: str, folder: str | os.PathLike | None = None, *, refresh_hz: float,
                          bits: int = 8, profile_name: str | None = None) -> MonitorProfile:
    """Build a profile from PsychoPy's monitor ``name``: geometry of its newest calibration (the one
    PsychoPy uses: the last by name), every measured calibration refitted, the newest used and the
    others in ``history``. When the newest calibration measured nothing the profile is uncalibrated
    (the measured ones go to ``history``), as it is for PsychoPy.

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

    Raises
    ------
    ProfileError
        Naming the file, the calibration and the PsychoPy field that is missing or wrong.
    """
    path = psychopy_folder(folder)
    file = path / f"{name}.json"
    if not file.is_file():
        have = sorted(p.stem for p in path.glob("*.json")) if path.is_dir() else []
        raise FileNotFoundError(f"no PsychoPy monitor {name!r} in {path} (monitors there: "
                                f"{', '.join(have) or 'none'}); give the folder with --psychopy-folder")
    calibs = _load_calibs(file)
    if not calibs:
        raise ProfileError(f"{file}: no calibrations (PsychoPy keeps each monitor's settings in a calibration "
                           f"keyed by date); add one in Monitor Center (width, distance, sizePix) and save")
    names = sorted(calibs)  # PsychoPy's own order: the last name is the calibration it uses
    where = f"{file} calibration"
    profile = new_profile(profile_name or name, **_geometry(calibs[names[-1]], f"{where} {names[-1]!r}"),
                          refresh_hz=refresh_hz, bits=bits, notes=str(calibs[names[-1]].get("notes") or ""))
    for key in names:
        calib, at = calibs[key], f"{where} {key!r}"
        if not _measured(calib, at):
            continue  # geometry only: nothing measured
        curves, origin = _readings(calib, bits, at)
        date = _date(calib, at)
        guns = {g: curves[g] for g in GUNS[1:]} if len(curves) == 4 else None
        try:
            cal = fit_calibration(*curves["grey"], bits, date=date, guns=guns,
                                  source=f"PsychoPy monitor {file} calibration {key!r} ({origin})")
        except EigdistError as exc:  # the readings' own checks, named with the file and calibration
            raise ProfileError(f"{at} ({origin}): {exc}") from None
        profile = calibrated(profile, cal)
    if not _measured(calibs[names[-1]], where) and profile.calibration is not None:
        profile = replace(profile, calibration=None, history=(*profile.history, profile.calibration))
    return profile


__all__ = ["DEFAULT_GRID_ROW", "monitor_folder", "psychopy_folder", "quiet_monitor", "read_psychopy_monitor", "write_psychopy_monitor"]
