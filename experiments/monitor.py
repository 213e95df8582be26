"""Monitor profiles: geometry, calibration curves, files and expiry (pure: no window).

A profile is one JSON file ``<folder>/<name>.json`` written through
:func:`eigdist_core.io.save_json`. Its fields map one to one onto a PsychoPy
``Monitor`` (``width``, ``distance``, ``sizePix``, ``calibDate``, the gamma grid and
the measured ``levelsPre``/``lumsPre``); :func:`experiments.window.psychopy_monitor`
builds that object. The luminance curve is used in software (the hardware ramp
stays identity): :mod:`experiments.luminance` inverts it and dithers. Photometer readings
become a calibration in :mod:`experiments.calibration`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from eigdist_core.errors import EigdistError, FileFormatError
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
#: The curves a profile may hold: the grey ramp (all guns together) and each gun alone.
GUNS = ("grey", "r", "g", "b")
#: Chromaticities that may be stored: each primary and the white (CIE 1931 xy).
CHROMATICITIES = ("r", "g", "b", "white")
#: Largest luminance accepted from a photometer, cd/m² (HDR displays peak near 10 000).
MAX_LUMINANCE = 1e5
#: Largest screen side in pixels (16K); beyond this a resolution is a typo.
MAX_RESOLUTION = 16384
#: A reading may fall below the one at the previous level by this fraction of the curve's range
#: (photometer noise near black); a larger fall is a measuring mistake and is refused.
FALL_TOLERANCE = 0.05
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class ProfileError(EigdistError):
    """A monitor profile that is missing, malformed, incomplete or expired (the message names the field)."""


@dataclass(frozen=True)
class Curve:
    """One luminance curve: photometer readings of one gun (or of grey) and the fits through them.

    Attributes
    ----------
    levels, luminance
        The photometer readings: output level (0 … 2**bits − 1) and cd/m².
    gamma
        Fitted model ``L(x) = lum0 + (lum1 − lum0)·x**gamma`` with x = level / (2**bits − 1):
        ``{"lum0": …, "lum1": …, "gamma": …}``.
    lut
        Monotone luminance (cd/m²) of every output level (PCHIP through the isotonic readings).
    curve
        Which curve the mapping inverts: ``lut`` (default) or ``gamma``.
    """

    levels: tuple[float, ...]
    luminance: tuple[float, ...]
    gamma: dict[str, float]
    lut: tuple[float, ...]
    curve: str = "lut"

    def table(self) -> np.ndarray:
        """Luminance (cd/m²) of every output level under the chosen curve, non-decreasing."""
        if self.curve == "gamma":
            x = np.linspace(0.0, 1.0, len(self.lut))
            return gamma_curve(x, **self.gamma)
        return np.asarray(self.lut, dtype=float)


@dataclass(frozen=True)
class Calibration(Curve):
    """A fitted photometer calibration: the grey curve (its fields inherited), optional per-gun curves.

    Attributes
    ----------
    date
        ISO 8601 UTC time the readings were fitted.
    lum_min, lum_mean, lum_max
        Luminance of grey value 0, of the background, of grey value 1 (cd/m²).
    source
        Where the readings came from (file name and sha256), for the record.
    guns
        ``{"r": Curve, "g": Curve, "b": Curve}`` measured one gun at a time (the others at 0), or
        ``None``: colour stimuli need them.
    chromaticity
        CIE 1931 ``(x, y)`` of the primaries and the white (keys of :data:`CHROMATICITIES`), when
        a colorimeter gave them; for the record only.
    """

    date: str = ""
    lum_min: float = 0.0
    lum_mean: float = 0.0
    lum_max: float = 0.0
    source: str = ""
    guns: dict[str, Curve] | None = None
    chromaticity: dict[str, tuple[float, float]] | None = None

    @property
    def grey(self) -> Curve:
        """The grey curve alone."""
        return Curve(self.levels, self.luminance, self.gamma, self.lut, self.curve)

    def gun_tables(self) -> np.ndarray:
        """``3 × 2**bits`` luminance of every level of the R, G and B guns (:class:`ProfileError` if not measured)."""
        if self.guns is None:
            raise ProfileError(
                f"calibration of {self.date}: field 'guns' is missing (no per-gun calibration): colour stimuli "
                "need readings of the r, g and b guns (eigdist calibrate fit with a 'gun' column)"
            )
        return np.stack([self.guns[g].table() for g in GUNS[1:]])


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
        The newest fitted calibration, or ``None`` before ``eigdist calibrate fit``.
    notes
        Free text.
    history
        Every earlier calibration, oldest first (kept, never overwritten: PsychoPy's Monitor
        Center keeps its calibrations by date in the same way).
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
    history: tuple[Calibration, ...] = ()

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
    """``'1920x1080'`` → ``(1920, 1080)``; the error names the text, the expected form and the limit."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m or not all(1 <= int(v) <= MAX_RESOLUTION for v in m.groups()):
        raise EigdistError(
            f"resolution must be WxH in pixels, e.g. 1920x1080, got {text!r} (each side 1..{MAX_RESOLUTION})"
        )
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
    if len(resolution) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_RESOLUTION
                                   for v in resolution):
        raise ProfileError(
            f"field 'resolution' must be two integers [width, height], each 1..{MAX_RESOLUTION}, got {resolution!r}"
        )
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


def _curve_fields(data: dict, bits: int, where: str) -> dict[str, Any]:
    """The checked fields of one :class:`Curve` (grey: the calibration object itself; a gun: its object)."""
    levels = _floats(data, "levels", where)
    luminance = _floats(data, "luminance", where)
    if len(levels) != len(luminance) or len(levels) < MIN_READINGS:
        raise ProfileError(
            f"{where}: fields 'levels' and 'luminance' must be equally long with at least {MIN_READINGS} "
            f"readings, got {len(levels)} and {len(luminance)}"
        )
    gamma = _require(data, "gamma", where)
    if not isinstance(gamma, dict):
        raise ProfileError(f"{where}: field 'gamma' must be an object {{lum0, lum1, gamma}}, got {gamma!r:.80}")
    for key in ("lum0", "lum1", "gamma"):
        _require(gamma, key, f"{where}.gamma")
    lut = _floats(data, "lut", where)
    if len(lut) != 2**bits or np.any(np.diff(lut) < 0) or not np.all(np.isfinite(lut)):
        raise ProfileError(
            f"{where}: field 'lut' must hold {2**bits} non-decreasing finite luminances (bits={bits}), "
            f"got {len(lut)} values"
        )
    curve = data.get("curve", "lut")
    if curve not in CURVES:
        raise ProfileError(f"{where}: field 'curve' must be one of {CURVES}, got {curve!r}")
    return dict(levels=levels, luminance=luminance, lut=lut, curve=curve,
                gamma={k: float(gamma[k]) for k in ("lum0", "lum1", "gamma")})


def _calibration_from_dict(data: Any, bits: int, where: str) -> Calibration:
    if not isinstance(data, dict):
        raise ProfileError(f"{where} must be an object, got {type(data).__name__}")
    date = _require(data, "date", where)
    try:
        parse_date(date, "calibration.date")
    except ProfileError as exc:
        raise ProfileError(f"{where}: {exc}") from None
    lums = {k: _positive(f"calibration.{k}", _require(data, k, where), True) for k in ("lum_min", "lum_mean", "lum_max")}
    if not lums["lum_min"] <= lums["lum_mean"] <= lums["lum_max"] or lums["lum_min"] == lums["lum_max"]:
        raise ProfileError(f"{where}: need lum_min <= lum_mean <= lum_max and lum_min < lum_max, got {lums}")
    guns = data.get("guns")
    if guns is not None:
        if not isinstance(guns, dict) or sorted(guns) != sorted(GUNS[1:]):
            raise ProfileError(f"{where}: field 'guns' must be an object with keys r, g, b, got {guns!r:.80}")
        guns = {g: Curve(**_curve_fields(guns[g], bits, f"{where}.guns.{g}")) for g in GUNS[1:]}
    chroma = data.get("chromaticity")
    if chroma is not None:
        chroma = check_chromaticity(chroma, f"{where}.chromaticity")
    return Calibration(**_curve_fields(data, bits, where), date=date, source=str(data.get("source", "")),
                       guns=guns, chromaticity=chroma, **lums)


def check_chromaticity(data: Any, where: str) -> dict[str, tuple[float, float]]:
    """Checked CIE xy pairs: keys from :data:`CHROMATICITIES`, each x, y in (0, 1) with x + y <= 1."""
    if not isinstance(data, dict) or not set(data) <= set(CHROMATICITIES):
        raise ProfileError(f"{where}: must be an object with keys among {', '.join(CHROMATICITIES)}, got {data!r:.80}")
    out = {}
    for key, xy in data.items():
        ok = isinstance(xy, (list, tuple)) and len(xy) == 2 and all(
            not isinstance(v, bool) and isinstance(v, (int, float)) and 0 < v < 1 for v in xy)
        if not ok or xy[0] + xy[1] > 1:
            raise ProfileError(f"{where}.{key}: must be CIE xy [x, y], each in (0, 1), x + y <= 1, got {xy!r}")
        out[key] = (float(xy[0]), float(xy[1]))
    return {k: out[k] for k in CHROMATICITIES if k in out}  # one order, whatever the file's


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
        profile = replace(profile, calibration=_calibration_from_dict(
            data["calibration"], profile.bits, f"{where}: calibration"))
    history = data.get("history", [])
    if not isinstance(history, list):
        raise ProfileError(f"{where}: field 'history' must be a list of calibrations, got {type(history).__name__}")
    past = tuple(_calibration_from_dict(c, profile.bits, f"{where}: history[{i}]") for i, c in enumerate(history))
    return replace(profile, history=past)


def profile_to_dict(profile: MonitorProfile) -> dict[str, Any]:
    """The JSON object of a profile (plain types only)."""
    data = asdict(profile)
    data["resolution"] = list(profile.resolution)
    data["history"] = list(data["history"])
    data["format"] = FORMAT
    data["ppd"] = round(profile.ppd, 6)  # for the reader; recomputed on load
    for cal in [data["calibration"], *data["history"]]:
        if cal is not None:
            for curve in [cal, *(cal["guns"] or {}).values()]:
                for key in ("levels", "luminance", "lut"):
                    curve[key] = list(curve[key])
            if cal["chromaticity"] is not None:
                cal["chromaticity"] = {k: list(v) for k, v in cal["chromaticity"].items()}
    return data


# ---------------------------------------------------------------- files


def monitors_dir(folder: str | os.PathLike | None = None) -> Path:
    """The profile folder: ``folder`` if given, else ``$EIGDIST_MONITORS``, else the per-user folder.

    The per-user folder is the platform's user data folder (``platformdirs``), e.g.
    ``~/.local/share/eigdist/monitors`` on Linux, ``%LOCALAPPDATA%\\eigdist\\monitors`` on Windows,
    ``~/Library/Application Support/eigdist/monitors`` on macOS: a lab's calibrations survive
    upgrades and never go into the installed package (which may be read-only). A file there
    is refused (:class:`ProfileError`), before anything is read or written.
    """
    if folder:
        path, option = Path(folder), "--monitors"
    elif os.environ.get("EIGDIST_MONITORS"):
        path, option = Path(os.environ["EIGDIST_MONITORS"]), "$EIGDIST_MONITORS"
    else:
        import platformdirs

        path, option = Path(platformdirs.user_data_dir("eigdist", appauthor=False)) / "monitors", "the monitor folder"
    if path.exists() and not path.is_dir():
        raise ProfileError(f"{option} {str(path)!r} is a file; give the folder of monitor profiles")
    return path


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
    try:
        data = load_json(path)
    except FileFormatError as exc:
        raise ProfileError(f"{path}: not a readable JSON monitor profile ({exc.__cause__}); restore it from a backup "
                           f"or create it again with eigdist calibrate new") from None
    profile = profile_from_dict(data, where=str(path))
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


__all__ = [
    "BIT_DEPTHS", "CHROMATICITIES", "CURVES", "Calibration", "Curve", "GUNS", "MAX_LUMINANCE", "MAX_RESOLUTION",
    "DEFAULT_EXPIRY_DAYS", "MonitorProfile", "ProfileError", "check_calibrated", "check_chromaticity", "gamma_curve",
    "load_profile", "monitors_dir", "new_profile", "parse_date", "parse_resolution", "pixels_per_degree",
    "profile_from_dict", "profile_path", "profile_to_dict", "save_profile", "utc_now",
]
