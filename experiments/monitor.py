"""Monitor profiles: geometry, photometer calibration, fit and expiry (pure: no window).

A profile is one JSON file ``<folder>/<name>.json`` written through
:func:`eigdist_core.io.save_json`. Its fields map one to one onto a PsychoPy
``Monitor`` (``width``, ``distance``, ``sizePix``, ``calibDate``, the gamma grid and
the measured ``levelsPre``/``lumsPre``); :func:`experiments.display.psychopy_monitor`
builds that object. The luminance curve is used in software (the hardware ramp
stays identity): :mod:`experiments.luminance` inverts it and dithers.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from eigdist_core.errors import EigdistError
from eigdist_core.io import load_json, save_json

#: Tag stored in every profile file, so a PsychoPy monitor file in the same folder is not misread.
FORMAT = "eigdist-monitor/1"
#: Days after which a calibration is refused for a real session.
DEFAULT_EXPIRY_DAYS = 30
#: Bit depths a profile may declare (8: noisy-bit dithering; 10: native ``bpc=(10, 10, 10)``).
BIT_DEPTHS = (8, 10)
#: Luminance curves the mapping can invert.
CURVES = ("lut", "gamma")
#: Fewest distinct photometer levels :func:`fit_calibration` accepts.
MIN_READINGS = 5
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class ProfileError(EigdistError):
    """A monitor profile that is missing, malformed, incomplete or expired (the message names the field)."""


@dataclass(frozen=True)
class Calibration:
    """A fitted photometer calibration.

    Attributes
    ----------
    date
        ISO 8601 UTC time the readings were fitted.
    levels, luminance
        The photometer readings: output level (0 … 2**bits − 1) and cd/m².
    gamma
        Fitted model ``L(x) = lum0 + (lum1 − lum0)·x**gamma`` with x = level / (2**bits − 1):
        ``{"lum0": …, "lum1": …, "gamma": …}``.
    lut
        Monotone luminance (cd/m²) of every output level (PCHIP through the isotonic readings).
    lum_min, lum_mean, lum_max
        Luminance of value 0, of the background, of value 1 (cd/m²).
    curve
        Which curve the mapping inverts: ``lut`` (default) or ``gamma``.
    source
        Where the readings came from (file name and sha256), for the record.
    """

    date: str
    levels: tuple[float, ...]
    luminance: tuple[float, ...]
    gamma: dict[str, float]
    lut: tuple[float, ...]
    lum_min: float
    lum_mean: float
    lum_max: float
    curve: str = "lut"
    source: str = ""

    def table(self) -> np.ndarray:
        """Luminance (cd/m²) of every output level under the chosen curve, non-decreasing."""
        if self.curve == "gamma":
            x = np.linspace(0.0, 1.0, len(self.lut))
            return gamma_curve(x, **self.gamma)
        return np.asarray(self.lut, dtype=float)


@dataclass(frozen=True)
class MonitorProfile:
    """One display as the experiment sees it.

    Attributes
    ----------
    name
        Profile name (file ``<name>.json``), letters, digits, ``_.-``.
    width_cm, distance_cm
        Visible width of the screen and viewing distance.
    resolution
        ``(width, height)`` in pixels, as the screen runs during the experiment.
    refresh_hz
        Nominal refresh rate.
    bits
        Output bit depth per gun: 8 (noisy-bit dithering on an 8-bit frame buffer) or 10 (native).
    expiry_days
        Age in days after which the calibration is refused for a real session.
    calibration
        The fitted calibration, or ``None`` before ``eigdist calibrate fit``.
    notes
        Free text.
    """

    name: str
    width_cm: float
    distance_cm: float
    resolution: tuple[int, int]
    refresh_hz: float
    bits: int = 8
    expiry_days: int = DEFAULT_EXPIRY_DAYS
    calibration: Calibration | None = None
    notes: str = ""

    @property
    def n_levels(self) -> int:
        """Output levels per gun, 2**bits."""
        return 2**self.bits

    @property
    def ppd(self) -> float:
        """Pixels per degree of visual angle at the screen centre."""
        return pixels_per_degree(self.width_cm, self.resolution[0], self.distance_cm)


def pixels_per_degree(width_cm: float, width_px: int, distance_cm: float) -> float:
    """Pixels per degree at the screen centre: the pixels covering 1° straight ahead.

    One degree centred on the line of sight spans ``2·d·tan(0.5°)`` cm.
    """
    return 2.0 * distance_cm * math.tan(math.radians(0.5)) * width_px / width_cm


def gamma_curve(x: np.ndarray, lum0: float, lum1: float, gamma: float) -> np.ndarray:
    """Luminance of normalised level ``x`` ∈ [0, 1]: ``lum0 + (lum1 − lum0)·x**gamma``."""
    return lum0 + (lum1 - lum0) * np.power(np.clip(x, 0.0, 1.0), gamma)


# ---------------------------------------------------------------- validation


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ProfileError(f"monitor name must match [A-Za-z0-9_.-]+, got {name!r}")
    return name


def _positive(field_name: str, value: Any, allow_zero: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        kind = "a number >= 0" if allow_zero else "a positive number"
        raise ProfileError(f"field {field_name!r} must be {kind}, got {value!r}")
    return float(value)


def parse_resolution(text: str) -> tuple[int, int]:
    """``'1920x1080'`` → ``(1920, 1080)``; the error names the text and the expected form."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        raise ValueError(f"resolution must be WxH in pixels, e.g. 1920x1080, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def new_profile(
    name: str,
    *,
    width_cm: float,
    distance_cm: float,
    resolution: Sequence[int],
    refresh_hz: float,
    bits: int = 8,
    expiry_days: int = DEFAULT_EXPIRY_DAYS,
    notes: str = "",
) -> MonitorProfile:
    """A checked, uncalibrated profile (every bad field raises :class:`ProfileError` naming it)."""
    _check_name(name)
    if bits not in BIT_DEPTHS:
        raise ProfileError(f"field 'bits' must be one of {BIT_DEPTHS}, got {bits!r}")
    if len(resolution) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in resolution):
        raise ProfileError(f"field 'resolution' must be two positive integers [width, height], got {resolution!r}")
    if isinstance(expiry_days, bool) or not isinstance(expiry_days, int) or expiry_days <= 0:
        raise ProfileError(f"field 'expiry_days' must be a positive integer, got {expiry_days!r}")
    return MonitorProfile(
        name=name,
        width_cm=_positive("width_cm", width_cm),
        distance_cm=_positive("distance_cm", distance_cm),
        resolution=(int(resolution[0]), int(resolution[1])),
        refresh_hz=_positive("refresh_hz", refresh_hz),
        bits=bits,
        expiry_days=expiry_days,
        notes=notes,
    )


def _floats(data: dict, key: str, where: str) -> tuple[float, ...]:
    value = _require(data, key, where)
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ProfileError(f"{where}: field {key!r} must be a list of numbers, got {value!r:.80}") from None


def _require(data: dict, key: str, where: str) -> Any:
    if key not in data or data[key] is None:
        raise ProfileError(f"{where}: field {key!r} is missing")
    return data[key]


def _calibration_from_dict(data: Any, bits: int, where: str) -> Calibration:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: field 'calibration' must be an object, got {type(data).__name__}")
    w = f"{where}: calibration"
    date = _require(data, "date", w)
    try:
        parse_date(date, "calibration.date")
    except ProfileError as exc:
        raise ProfileError(f"{where}: {exc}") from None
    levels = _floats(data, "levels", w)
    luminance = _floats(data, "luminance", w)
    if len(levels) != len(luminance) or len(levels) < MIN_READINGS:
        raise ProfileError(
            f"{w}: fields 'levels' and 'luminance' must be equally long with at least {MIN_READINGS} "
            f"readings, got {len(levels)} and {len(luminance)}"
        )
    gamma = _require(data, "gamma", w)
    for key in ("lum0", "lum1", "gamma"):
        _require(gamma, key, f"{w}.gamma")
    lut = _floats(data, "lut", w)
    if len(lut) != 2**bits or np.any(np.diff(lut) < 0) or not np.all(np.isfinite(lut)):
        raise ProfileError(
            f"{w}: field 'lut' must hold {2**bits} non-decreasing finite luminances (bits={bits}), got {len(lut)} values"
        )
    lums = {k: _positive(f"calibration.{k}", _require(data, k, w), True) for k in ("lum_min", "lum_mean", "lum_max")}
    if not lums["lum_min"] <= lums["lum_mean"] <= lums["lum_max"] or lums["lum_min"] == lums["lum_max"]:
        raise ProfileError(f"{w}: need lum_min <= lum_mean <= lum_max and lum_min < lum_max, got {lums}")
    curve = data.get("curve", "lut")
    if curve not in CURVES:
        raise ProfileError(f"{w}: field 'curve' must be one of {CURVES}, got {curve!r}")
    return Calibration(
        date=date, levels=levels, luminance=luminance, lut=lut, curve=curve, source=str(data.get("source", "")),
        gamma={k: float(gamma[k]) for k in ("lum0", "lum1", "gamma")}, **lums,
    )


def profile_from_dict(data: Any, where: str = "profile") -> MonitorProfile:
    """Check a profile's JSON object and build the profile; errors name the bad or missing field."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProfileError(f"{where}: not an eigdist monitor profile (field 'format' must be {FORMAT!r})")
    fields = {k: _require(data, k, where) for k in ("name", "width_cm", "distance_cm", "resolution", "refresh_hz")}
    try:
        profile = new_profile(
            fields["name"], width_cm=fields["width_cm"], distance_cm=fields["distance_cm"],
            resolution=tuple(fields["resolution"]) if isinstance(fields["resolution"], list) else (),
            refresh_hz=fields["refresh_hz"],
            bits=data.get("bits", 8), expiry_days=data.get("expiry_days", DEFAULT_EXPIRY_DAYS),
            notes=str(data.get("notes", "")),
        )
    except ProfileError as exc:
        raise ProfileError(f"{where}: {exc}") from None
    if data.get("calibration") is not None:
        profile = replace(profile, calibration=_calibration_from_dict(data["calibration"], profile.bits, where))
    return profile


def profile_to_dict(profile: MonitorProfile) -> dict[str, Any]:
    """The JSON object of a profile (plain types only)."""
    data = asdict(profile)
    data["resolution"] = list(profile.resolution)
    data["format"] = FORMAT
    data["ppd"] = round(profile.ppd, 6)  # for the reader; recomputed on load
    if profile.calibration is not None:
        cal = data["calibration"]
        for key in ("levels", "luminance", "lut"):
            cal[key] = list(cal[key])
    return data


# ---------------------------------------------------------------- files


def monitors_dir(folder: str | os.PathLike | None = None) -> Path:
    """The profile folder: ``folder`` if given, else ``$EIGDIST_MONITORS``, else the per-user folder.

    The per-user folder is the platform's user data folder (``platformdirs``), e.g.
    ``~/.local/share/eigdist/monitors`` on Linux, ``%LOCALAPPDATA%\\eigdist\\monitors`` on Windows,
    ``~/Library/Application Support/eigdist/monitors`` on macOS: a lab's calibrations survive
    upgrades and never go into the installed package (which may be read-only).
    """
    if folder:
        return Path(folder)
    env = os.environ.get("EIGDIST_MONITORS")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("eigdist", appauthor=False)) / "monitors"


def _shipped_profile(name: str) -> Path | None:
    """The read-only example profile ``name`` shipped as package data, if there is one."""
    from importlib import resources

    path = resources.files("experiments") / "monitors" / f"{name}.json"
    return Path(str(path)) if path.is_file() else None


def profile_path(name: str, folder: str | os.PathLike | None = None) -> Path:
    """Where the profile ``name`` lives."""
    return monitors_dir(folder) / f"{_check_name(name)}.json"


def save_profile(profile: MonitorProfile, folder: str | os.PathLike | None = None) -> Path:
    """Write ``profile`` atomically to ``<folder>/<name>.json``; return the path."""
    path = profile_path(profile.name, folder)
    save_json(path, profile_to_dict(profile))
    return path


def load_profile(name: str, folder: str | os.PathLike | None = None) -> MonitorProfile:
    """Read and check the profile ``name``; a missing file names the folder and the profiles it holds."""
    path = profile_path(name, folder)
    if not path.is_file():
        path = _shipped_profile(name) or path  # the shipped example (read-only) when the folder has none
    if not path.is_file():
        have = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
        raise FileNotFoundError(
            f"no monitor profile {name!r} in {path.parent} (profiles there: {', '.join(have) or 'none'}); "
            f"create one with: eigdist calibrate new {name} --width-cm W --distance-cm D --resolution WxH --refresh HZ"
        )
    profile = profile_from_dict(load_json(path), where=str(path))
    if profile.name != name:
        raise ProfileError(f"{path}: field 'name' is {profile.name!r} but the file is named for {name!r}")
    return profile


# ---------------------------------------------------------------- dates and expiry


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def parse_date(text: Any, field_name: str) -> datetime:
    """An ISO 8601 date or time (naive means UTC); the error names ``field_name``."""
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError:
        raise ProfileError(f"field {field_name!r} must be an ISO 8601 date, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def check_calibrated(
    profile: MonitorProfile, *, now: datetime | None = None, expiry_days: int | None = None
) -> Calibration:
    """The profile's calibration, or :class:`ProfileError` if it is missing or expired.

    A real session calls this; ``--pilot`` skips it. ``expiry_days`` overrides the profile's.
    """
    cal = profile.calibration
    if cal is None:
        raise ProfileError(
            f"monitor {profile.name!r}: field 'calibration' is missing (uncalibrated profile); run "
            f"'eigdist calibrate fit READINGS.csv --monitor {profile.name}' or use --pilot"
        )
    days = profile.expiry_days if expiry_days is None else expiry_days
    age = (now or utc_now()) - parse_date(cal.date, "calibration.date")
    if age.total_seconds() < 0:
        raise ProfileError(f"monitor {profile.name!r}: field 'calibration.date' {cal.date} lies in the future")
    if age.days >= days:
        raise ProfileError(
            f"monitor {profile.name!r}: field 'calibration.date' {cal.date} is {age.days} days old; "
            f"calibrations expire after {days} days (field 'expiry_days'): measure again and run "
            f"'eigdist calibrate fit', or use --pilot"
        )
    return cal


# ---------------------------------------------------------------- fitting


def read_readings(rows: Iterable[dict[str, str]], where: str = "readings") -> tuple[np.ndarray, np.ndarray]:
    """Photometer readings from CSV rows with columns ``level`` and ``luminance_cd_m2``."""
    levels, lums = [], []
    for i, row in enumerate(rows, start=2):
        for col in ("level", "luminance_cd_m2"):
            if col not in row:
                raise ValueError(f"{where}: column {col!r} is missing (need columns level, luminance_cd_m2)")
        try:
            levels.append(float(row["level"]))
            lums.append(float(row["luminance_cd_m2"]))
        except (TypeError, ValueError):
            raise ValueError(f"{where} line {i}: level and luminance_cd_m2 must be numbers, got {row!r}") from None
    return np.asarray(levels), np.asarray(lums)


def fit_calibration(
    levels: Sequence[float],
    luminance: Sequence[float],
    bits: int,
    *,
    date: datetime | None = None,
    curve: str = "lut",
    source: str = "",
) -> Calibration:
    """Fit a gamma model and a monotone LUT to photometer readings.

    Parameters
    ----------
    levels
        Output levels measured, in 0 … 2**bits − 1; must include 0 and 2**bits − 1 (they
        define Lmin and Lmax). Repeated levels are averaged.
    luminance
        Readings in cd/m², finite and ≥ 0.
    bits
        The profile's bit depth.
    date
        Calibration time (default: now, UTC).
    curve
        ``lut`` or ``gamma``: which curve the display inverts.
    source
        Provenance text stored with the fit.

    Returns
    -------
    Calibration
        ``lum_min``/``lum_max`` are the curve at levels 0 and max; ``lum_mean`` is the luminance of
        the level nearest their midpoint, so the undithered background is exact.
    """
    from scipy.interpolate import PchipInterpolator
    from scipy.optimize import curve_fit, isotonic_regression

    top = 2**bits - 1
    lv, lum = np.asarray(levels, dtype=float), np.asarray(luminance, dtype=float)
    if curve not in CURVES:
        raise ValueError(f"curve must be one of {CURVES}, got {curve!r}")
    if lv.shape != lum.shape or lv.ndim != 1:
        raise ValueError(f"levels and luminance must be 1-D and equally long, got {lv.shape} and {lum.shape}")
    bad = ~np.isfinite(lv) | ~np.isfinite(lum) | (lum < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"readings must be finite, with luminance_cd_m2 >= 0; reading {i + 1} is level {lv[i]:g}, "
            f"luminance {lum[i]:g}"
        )
    if lv.size and (lv.min() < 0 or lv.max() > top):
        raise ValueError(f"level must lie in 0..{top} for a {bits}-bit profile, got {lv.min():g}..{lv.max():g}")
    uniq, inverse = np.unique(lv, return_inverse=True)
    if uniq.size < MIN_READINGS or uniq[0] != 0 or uniq[-1] != top:
        raise ValueError(
            f"need at least {MIN_READINGS} distinct levels including 0 and {top}, got {uniq.size} levels "
            f"spanning {uniq.min() if uniq.size else 'nothing'}..{uniq.max() if uniq.size else ''}"
        )
    mean = np.bincount(inverse, weights=lum) / np.bincount(inverse)
    if mean[-1] <= mean[0]:
        raise ValueError(f"luminance must rise with level: level 0 reads {mean[0]:g}, level {top} reads {mean[-1]:g}")
    x = uniq / top
    p0 = (mean[0], mean[-1], 2.2)
    (lum0, lum1, g), _ = curve_fit(
        gamma_curve, x, mean, p0=p0, bounds=([0.0, 0.0, 0.2], [np.inf, np.inf, 6.0]), maxfev=20000
    )
    iso = isotonic_regression(mean).x
    keep = np.r_[True, np.diff(iso) > 0] | np.r_[np.diff(iso) > 0, True]  # drop interior points of flat runs
    lut = np.maximum.accumulate(PchipInterpolator(uniq[keep], iso[keep])(np.arange(top + 1)))
    table = gamma_curve(np.linspace(0, 1, top + 1), lum0, lum1, g) if curve == "gamma" else lut
    lo, hi = float(table[0]), float(table[-1])
    mid = float(table[np.argmin(np.abs(table - (lo + hi) / 2))])
    return Calibration(
        date=(date or utc_now()).isoformat(timespec="seconds"),
        levels=tuple(float(v) for v in lv),
        luminance=tuple(float(v) for v in lum),
        gamma={"lum0": float(lum0), "lum1": float(lum1), "gamma": float(g)},
        lut=tuple(float(v) for v in lut),
        lum_min=lo,
        lum_mean=mid,
        lum_max=hi,
        curve=curve,
        source=source,
    )


def calibrated(profile: MonitorProfile, calibration: Calibration) -> MonitorProfile:
    """``profile`` with ``calibration`` attached (the bit depths must agree)."""
    if len(calibration.lut) != profile.n_levels:
        raise ValueError(
            f"calibration has {len(calibration.lut)} levels but monitor {profile.name!r} is {profile.bits}-bit"
        )
    return replace(profile, calibration=calibration)


__all__ = [
    "BIT_DEPTHS", "CURVES", "Calibration", "DEFAULT_EXPIRY_DAYS", "MonitorProfile", "ProfileError",
    "calibrated", "check_calibrated", "fit_calibration", "gamma_curve", "load_profile", "monitors_dir",
    "new_profile", "parse_date", "parse_resolution", "pixels_per_degree", "profile_from_dict",
    "profile_path", "profile_to_dict", "read_readings", "save_profile", "utc_now",
]
