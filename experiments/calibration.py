"""Photometer readings → a fitted calibration of a monitor profile (pure: no window, files only in
:func:`load_readings`).

:func:`read_readings` reads a CSV (``level``, ``luminance_cd_m2``, optionally ``gun`` and
``cie_x``/``cie_y``) and refuses readings a photometer cannot have produced, naming the row;
:func:`fit_calibration` fits a gamma model and a monotone lookup table per gun and refuses readings
that leave most of the range unmeasured or per-gun readings that do not add up to grey (the rules of
:mod:`experiments.readings_rules`); :func:`calibrated` adds the result to a profile's dated
history (the newest calibration is used).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from eigdist_core.errors import EigdistError
from eigdist_core.io import decode_text

from .monitor import (
    CURVES, FALL_TOLERANCE, GUNS, MAX_LUMINANCE, MIN_READINGS, Calibration, Curve, MonitorProfile, ProfileError,
    check_chromaticity, gamma_curve, parse_date, utc_now,
)
from .readings_rules import check_additivity, check_level_gaps

#: Column separators other than the comma that a spreadsheet may save (for the error's hint).
_OTHER_DELIMITERS = (";", "\t", "|")


@dataclass(frozen=True)
class Readings:
    """Photometer readings as read from a CSV file: ``curves`` maps each gun present (``grey`` always)
    to its ``(levels, luminance)``; ``chromaticity`` holds the CIE xy of each primary (``r``, ``g``,
    ``b``) and of ``white`` (grey) that the optional ``cie_x``, ``cie_y`` columns give at the curve's
    highest level."""

    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    chromaticity: dict[str, tuple[float, float]]


def _number(row: dict, col: str, where: str, line: int) -> float:
    try:
        value = float(row[col])
    except (TypeError, ValueError):
        raise EigdistError(f"{where} line {line}: {col} must be a number, got {row[col]!r} (row {row!r})") from None
    if not math.isfinite(value):
        raise EigdistError(f"{where} line {line}: {col} must be finite, got {row[col]!r}")
    return value


def read_readings(rows: Iterable[dict[str, str]], where: str = "readings") -> Readings:
    """Photometer readings from CSV rows: ``level``, ``luminance_cd_m2``, optional ``gun``, ``cie_x``, ``cie_y``.

    ``gun`` is ``grey`` (all guns at the level; the default when the column is absent), ``r``,
    ``g`` or ``b`` (that gun at the level, the others at 0). A row with more fields than the
    header (a decimal comma: ``0,0,5``) is refused, naming its line.
    """
    found: dict[str, tuple[list[float], list[float]]] = {}
    xy: dict[str, list[tuple[float, float, float]]] = {}
    for line, row in enumerate(rows, start=2):
        for col in ("level", "luminance_cd_m2"):
            if col not in row:
                raise EigdistError(f"{where}: column {col!r} is missing (need columns level, luminance_cd_m2; "
                                   f"optional: gun, cie_x, cie_y)")
        if row.get(None):  # csv.DictReader puts surplus fields under the key None
            raise EigdistError(
                f"{where} line {line}: {len(row) - 1 + len(row[None])} fields but the header has {len(row) - 1} "
                f"(extra {row[None]!r}); a decimal comma? write 0.5, not 0,5"
            )
        gun = (row.get("gun") or "grey").strip().lower()
        if gun not in GUNS:
            raise EigdistError(f"{where} line {line}: gun must be one of {', '.join(GUNS)}, got {row.get('gun')!r}")
        level, lum = _number(row, "level", where, line), _number(row, "luminance_cd_m2", where, line)
        levels, lums = found.setdefault(gun, ([], []))
        levels.append(level)
        lums.append(lum)
        if (row.get("cie_x") or "").strip() and (row.get("cie_y") or "").strip():
            xy.setdefault(gun, []).append((level, _number(row, "cie_x", where, line), _number(row, "cie_y", where, line)))
    if "grey" not in found:
        raise EigdistError(f"{where}: no grey readings (rows with gun = grey, or no gun column); the grey curve "
                           f"is always needed (background, grey stimuli)")
    chroma = {}
    for gun, points in xy.items():
        top = max(p[0] for p in points)
        at_top = np.array([p[1:] for p in points if p[0] == top])
        chroma["white" if gun == "grey" else gun] = tuple(float(v) for v in at_top.mean(axis=0))
    return Readings({g: (np.asarray(v[0]), np.asarray(v[1])) for g, v in found.items()},
                    check_chromaticity(chroma, f"{where}: cie_x, cie_y") if chroma else {})


def load_readings(path: str | os.PathLike) -> Readings:
    """Photometer readings from the CSV file ``path`` (:func:`read_readings` on its rows).

    UTF-8 (with or without a byte-order mark) or UTF-16 text, comma-separated. A binary file, another
    encoding, or a header separated by ``;``, a tab or ``|`` (a spreadsheet's regional CSV) is
    refused naming the file and what was found.
    """
    path = Path(path)
    data = path.read_bytes()
    if b"\0" in data and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise EigdistError(f"readings {str(path)!r} holds NUL bytes: a binary file, not a CSV of photometer readings "
                           f"(columns level, luminance_cd_m2); give the CSV file")
    text = decode_text(data, path)
    header = text.partition("\n")[0].strip()
    names = [c.strip() for c in header.split(",")]
    if not {"level", "luminance_cd_m2"} <= set(names):
        found = [d for d in _OTHER_DELIMITERS if d in header]
        if found:
            shown = "a tab" if found[0] == "\t" else repr(found[0])
            raise EigdistError(
                f"readings {str(path)!r}: the header {header[:80]!r} is separated by {shown}, not by commas: save the "
                f"file as comma-separated CSV (columns level, luminance_cd_m2; optional: gun, cie_x, cie_y)"
            )
    return read_readings(csv.DictReader(text.splitlines(), skipinitialspace=True), where=str(path))


def fit_curve(levels: Sequence[float], luminance: Sequence[float], bits: int, *, curve: str = "lut",
              gun: str = "grey") -> Curve:
    """Fit a gamma model and a monotone LUT to one curve's photometer readings.

    Parameters
    ----------
    levels
        Output levels measured, in 0 … 2**bits − 1; must include 0 and 2**bits − 1. Repeated
        levels are averaged.
    luminance
        Readings in cd/m², finite, ≥ 0 and ≤ :data:`MAX_LUMINANCE`; they may fall from one level to
        the next by at most :data:`FALL_TOLERANCE` of the curve's range (noise), no more.
    bits
        The profile's bit depth.
    curve
        ``lut`` or ``gamma``: which curve the display inverts.
    gun
        The curve's name, for error messages.

    Raises
    ------
    EigdistError
        Naming the reading (gun, level, luminance) that is out of range or falls.
    """
    from scipy.interpolate import PchipInterpolator
    from scipy.optimize import curve_fit, isotonic_regression

    top = 2**bits - 1
    lv, lum = np.asarray(levels, dtype=float), np.asarray(luminance, dtype=float)
    if curve not in CURVES:
        raise EigdistError(f"curve must be one of {CURVES}, got {curve!r}")
    if lv.shape != lum.shape or lv.ndim != 1:
        raise EigdistError(f"{gun}: levels and luminance must be 1-D and equally long, got {lv.shape} and {lum.shape}")
    bad = ~np.isfinite(lv) | ~np.isfinite(lum) | (lum < 0) | (lum > MAX_LUMINANCE)
    if bad.any():
        i = int(np.argmax(bad))
        raise EigdistError(
            f"{gun}: readings must be finite, with 0 <= luminance_cd_m2 <= {MAX_LUMINANCE:g}; reading {i + 1} is "
            f"level {lv[i]:g}, luminance {lum[i]:g}"
        )
    if lv.size and (lv.min() < 0 or lv.max() > top):
        raise EigdistError(f"{gun}: level must lie in 0..{top} for a {bits}-bit profile, got {lv.min():g}..{lv.max():g}")
    uniq, inverse = np.unique(lv, return_inverse=True)
    if uniq.size < MIN_READINGS or uniq[0] != 0 or uniq[-1] != top:
        raise EigdistError(
            f"{gun}: need at least {MIN_READINGS} distinct levels including 0 and {top}, got {uniq.size} levels "
            f"spanning {uniq.min() if uniq.size else 'nothing'}..{uniq.max() if uniq.size else ''}"
        )
    check_level_gaps(uniq, top, gun)
    mean = np.bincount(inverse, weights=lum) / np.bincount(inverse)
    if mean[-1] <= mean[0]:
        raise EigdistError(
            f"{gun}: luminance must rise with level: level 0 reads {mean[0]:g}, level {top} reads {mean[-1]:g}")
    drop = np.maximum.accumulate(mean) - mean  # how far each reading lies below the highest one before it
    if drop.max() > FALL_TOLERANCE * (mean[-1] - mean[0]):
        i = int(np.argmax(drop > FALL_TOLERANCE * (mean[-1] - mean[0])))
        j = int(np.argmax(mean[:i]))
        raise EigdistError(
            f"{gun}: luminance falls from {mean[j]:g} cd/m2 at level {uniq[j]:g} to {mean[i]:g} at level {uniq[i]:g} "
            f"(more than {100 * FALL_TOLERANCE:g}% of the range {mean[0]:g}..{mean[-1]:g}): a misread or a "
            f"mistyped row? measure those levels again"
        )
    x = uniq / top
    (lum0, lum1, g), _ = curve_fit(
        gamma_curve, x, mean, p0=(mean[0], mean[-1], 2.2), bounds=([0.0, 0.0, 0.2], [np.inf, np.inf, 6.0]),
        maxfev=20000,
    )
    iso = isotonic_regression(mean).x
    keep = np.r_[True, np.diff(iso) > 0] | np.r_[np.diff(iso) > 0, True]  # drop interior points of flat runs
    lut = np.maximum.accumulate(PchipInterpolator(uniq[keep], iso[keep])(np.arange(top + 1)))
    return Curve(levels=tuple(float(v) for v in lv), luminance=tuple(float(v) for v in lum),
                 gamma={"lum0": float(lum0), "lum1": float(lum1), "gamma": float(g)},
                 lut=tuple(float(v) for v in lut), curve=curve)


def fit_calibration(
    levels: Sequence[float],
    luminance: Sequence[float],
    bits: int,
    *,
    date: datetime | None = None,
    curve: str = "lut",
    source: str = "",
    guns: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    chromaticity: dict[str, tuple[float, float]] | None = None,
) -> Calibration:
    """Fit the grey curve (and each gun's, when given) with :func:`fit_curve`.

    Parameters
    ----------
    levels, luminance
        The grey readings (all guns at the level).
    bits
        The profile's bit depth.
    date
        Calibration time (default: now, UTC).
    curve
        ``lut`` or ``gamma``: which curve the display inverts (every gun alike).
    source
        Provenance text stored with the fit.
    guns
        ``{"r": (levels, luminance), "g": …, "b": …}``: readings of each gun alone, all three or none.
    chromaticity
        CIE xy of the primaries and the white, for the record.

    Returns
    -------
    Calibration
        ``lum_min``/``lum_max`` are the grey curve at levels 0 and max; ``lum_mean`` is the luminance
        of the grey level nearest their midpoint, so the undithered background is exact.
    """
    grey = fit_curve(levels, luminance, bits, curve=curve)
    fitted = None
    if guns:
        if sorted(guns) != sorted(GUNS[1:]):
            raise EigdistError(f"per-gun readings need all of r, g, b; got {', '.join(sorted(guns))}")
        fitted = {g: fit_curve(*guns[g], bits, curve=curve, gun=g) for g in GUNS[1:]}
        check_additivity(grey.lut, {g: c.lut for g, c in fitted.items()})
    table = grey.table()
    lo, hi = float(table[0]), float(table[-1])
    mid = float(table[np.argmin(np.abs(table - (lo + hi) / 2))])
    return Calibration(
        **{f: getattr(grey, f) for f in Curve.__dataclass_fields__},
        date=(date or utc_now()).isoformat(timespec="seconds"), lum_min=lo, lum_mean=mid, lum_max=hi,
        source=source, guns=fitted,
        chromaticity=check_chromaticity(dict(chromaticity), "chromaticity") if chromaticity else None,
    )


def calibrated(profile: MonitorProfile, calibration: Calibration) -> MonitorProfile:
    """``profile`` with ``calibration`` added: the newest calibration is used, every other one kept in ``history``.

    The bit depths must agree.
    """
    if len(calibration.lut) != profile.n_levels:
        raise ProfileError(
            f"calibration has {len(calibration.lut)} levels but monitor {profile.name!r} is {profile.bits}-bit"
        )
    every = [*profile.history, *([profile.calibration] if profile.calibration else []), calibration]
    every.sort(key=lambda c: parse_date(c.date, "calibration.date"))  # stable: a tie keeps the new one last
    return replace(profile, calibration=every[-1], history=tuple(every[:-1]))

