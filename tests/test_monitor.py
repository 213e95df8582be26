"""Monitor profiles: fit, LUT, files, expiry and the errors that name the field (no window)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from eigdist.cli.main import main as eigdist
from experiments.calibration import calibrated, fit_calibration, read_readings
from experiments.monitor import (
    ProfileError, check_calibrated, gamma_curve, load_profile, monitors_dir, new_profile, parse_resolution,
    pixels_per_degree, profile_from_dict, profile_to_dict, save_profile, utc_now,
)
from tests.profiles import GUN_GAMMAS


def synthetic_readings(bits: int = 8, n: int = 18, lum0: float = 0.4, lum1: float = 120.0, gamma: float = 2.4,
                       noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    top = 2**bits - 1
    levels = np.unique(np.r_[np.rint(np.linspace(0, top, n)), top])
    lum = gamma_curve(levels / top, lum0, lum1, gamma)
    return levels, lum + np.random.default_rng(seed).normal(0.0, noise, lum.shape)


def profile(bits: int = 8, **cal_kw) -> "object":
    base = new_profile("test", width_cm=53.0, distance_cm=57.0, resolution=(1920, 1080), refresh_hz=60.0, bits=bits)
    return calibrated(base, fit_calibration(*synthetic_readings(bits), bits, **cal_kw))


@pytest.mark.parametrize("gamma", [1.8, 2.2, 2.6])
def test_fit_recovers_known_gamma(gamma):
    cal = fit_calibration(*synthetic_readings(gamma=gamma), 8)
    assert cal.gamma["gamma"] == pytest.approx(gamma, rel=1e-6)
    assert cal.gamma["lum0"] == pytest.approx(0.4, rel=1e-6)
    assert cal.gamma["lum1"] == pytest.approx(120.0, rel=1e-6)


def test_fit_with_photometer_noise_is_close_and_lut_is_monotone():
    levels, lum = synthetic_readings(noise=0.3, n=24, seed=5)
    cal = fit_calibration(levels, lum, 8)
    assert cal.gamma["gamma"] == pytest.approx(2.4, abs=0.05)
    lut = np.asarray(cal.lut)
    assert lut.size == 256 and np.all(np.diff(lut) >= 0)
    truth = gamma_curve(np.arange(256) / 255, 0.4, 120.0, 2.4)
    assert np.max(np.abs(lut - truth)) < 1.5  # 5 noise SDs


def test_lut_interpolates_the_readings_exactly_when_they_are_monotone():
    levels, lum = synthetic_readings(n=12, gamma=2.0)
    cal = fit_calibration(levels, lum, 8)
    np.testing.assert_allclose(np.asarray(cal.lut)[levels.astype(int)], lum, rtol=1e-12)
    assert cal.lum_min == pytest.approx(lum[0]) and cal.lum_max == pytest.approx(lum[-1])
    # Lmean is a level's exact luminance, nearest to the midpoint: the undithered background is exact
    assert cal.lum_mean in cal.lut
    assert abs(cal.lum_mean - (lum[0] + lum[-1]) / 2) < max(np.diff(cal.lut))


def test_repeated_levels_are_averaged():
    levels, lum = synthetic_readings(n=10)
    cal = fit_calibration(np.r_[levels, levels], np.r_[lum + 0.3, lum - 0.3], 8)
    np.testing.assert_allclose(np.asarray(cal.lut)[levels.astype(int)], lum, rtol=1e-9)


def test_ten_bit_fit_has_1024_levels():
    cal = fit_calibration(*synthetic_readings(bits=10), 10)
    assert len(cal.lut) == 1024 and cal.gamma["gamma"] == pytest.approx(2.4, rel=1e-6)


@pytest.mark.parametrize(
    "levels, lum, message",
    [
        ([0, 64, 128, 255], [1, 2, 3, 4], "at least 5 distinct levels including 0 and 255"),
        ([10, 64, 128, 200, 255], [1, 2, 3, 4, 5], "including 0 and 255"),
        ([0, 64, 128, 200, 300], [1, 2, 3, 4, 5], "level must lie in 0..255"),
        ([0, 64, 128, 200, 255], [5, 4, 3, 2, 1], "luminance must rise with level"),
        ([0, 64, 128, 200, 255], [1, 2, float("nan"), 4, 5], "finite"),
        ([0, 64, 128, 200, 255], [1, 2, -3, 4, 5], "0 <= luminance_cd_m2"),
    ],
)
def test_bad_readings_are_refused(levels, lum, message):
    with pytest.raises(ValueError, match=message):
        fit_calibration(levels, lum, 8)


def test_read_readings_names_missing_column_and_bad_line():
    with pytest.raises(ValueError, match="column 'luminance_cd_m2' is missing"):
        read_readings([{"level": "0", "lum": "1"}])
    with pytest.raises(ValueError, match="line 3"):
        read_readings([{"level": "0", "luminance_cd_m2": "1"}, {"level": "x", "luminance_cd_m2": "2"}])


def test_ppd_closed_form_and_psychopy_agree():
    # 1° at 57 cm spans 2·57·tan(0.5°) = 0.99486 cm; 1920 px over 53 cm → 36.224 px/cm
    assert pixels_per_degree(53.0, 1920, 57.0) == pytest.approx(2 * 57 * math.tan(math.radians(0.5)) * 1920 / 53)
    from psychopy.tools.monitorunittools import deg2pix

    class Mon:  # what deg2pix reads of a psychopy Monitor
        def getWidth(self):
            return 53.0

        def getDistance(self):
            return 57.0

        def getSizePix(self):
            return [1920, 1080]

    assert deg2pix(1.0, Mon()) == pytest.approx(pixels_per_degree(53.0, 1920, 57.0), rel=1e-4)


def test_profile_round_trips_through_json(tmp_path):
    p = profile()
    path = save_profile(p, tmp_path)
    assert path == tmp_path / "test.json"
    assert json.loads(path.read_text())["format"] == "eigdist-monitor/1"
    assert load_profile("test", tmp_path) == p


def test_profile_name_must_match_its_file(tmp_path):
    save_profile(profile(), tmp_path)
    (tmp_path / "test.json").rename(tmp_path / "other.json")
    with pytest.raises(ProfileError, match="field 'name' is 'test' but the file is named for 'other'"):
        load_profile("other", tmp_path)


def test_monitors_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("EIGDIST_MONITORS", str(tmp_path / "env"))
    assert monitors_dir(tmp_path / "arg") == tmp_path / "arg"
    assert monitors_dir() == tmp_path / "env"
    monkeypatch.delenv("EIGDIST_MONITORS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # platformdirs' user data folder on Linux
    assert monitors_dir() == tmp_path / "xdg" / "eigdist" / "monitors"


def test_profiles_are_saved_per_user_never_into_the_package(monkeypatch, tmp_path):
    import experiments

    monkeypatch.delenv("EIGDIST_MONITORS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    package = Path(experiments.__file__).parent
    before = sorted(package.rglob("*.json"))
    path = save_profile(profile(), None)
    assert path == tmp_path / "xdg" / "eigdist" / "monitors" / "test.json"
    assert load_profile("test").name == "test" and sorted(package.rglob("*.json")) == before


def test_shipped_example_is_read_from_any_folder_but_a_lab_profile_comes_first(tmp_path):
    assert load_profile("example", tmp_path).name == "example"  # the folder holds no example: the shipped one
    lab = replace(load_profile("example", tmp_path), notes="ours")
    save_profile(lab, tmp_path)
    assert load_profile("example", tmp_path).notes == "ours"


def test_missing_profile_names_folder_and_alternatives(tmp_path):
    save_profile(profile(), tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no monitor profile 'lab2'.*profiles there: test"):
        load_profile("lab2", tmp_path)


def test_missing_calibration_names_the_field():
    p = new_profile("bare", width_cm=50, distance_cm=60, resolution=(800, 600), refresh_hz=60)
    with pytest.raises(ProfileError, match="field 'calibration' is missing"):
        check_calibrated(p)


def test_expired_calibration_names_the_field_and_the_age():
    p = profile()
    now = utc_now()
    assert check_calibrated(p, now=now + timedelta(days=29)) is p.calibration
    with pytest.raises(ProfileError, match=r"'calibration.date' .* 30 days old; calibrations expire after 30 days"):
        check_calibrated(p, now=now + timedelta(days=30, minutes=1))
    with pytest.raises(ProfileError, match="expire after 7 days"):
        check_calibrated(p, now=now + timedelta(days=8), expiry_days=7)
    with pytest.raises(ProfileError, match="lies in the future"):
        check_calibrated(p, now=now - timedelta(days=1))


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("calibration", "lum_max"), None, "calibration: field 'lum_max' is missing"),
        (("calibration", "date"), None, "calibration: field 'date' is missing"),
        (("calibration", "date"), "yesterday", "'calibration.date' must be an ISO 8601 date"),
        (("calibration", "gamma", "gamma"), None, "calibration.gamma: field 'gamma' is missing"),
        (("calibration", "lut"), [1.0, 2.0], "field 'lut' must hold 256"),
        (("calibration", "curve"), "spline", "field 'curve' must be one of"),
        (("calibration", "levels"), ["a", 1], "field 'levels' must be a list of numbers"),
        (("width_cm",), None, "field 'width_cm' is missing"),
        (("width_cm",), -3, "field 'width_cm' must be a positive number, got -3"),
        (("resolution",), [1920], "field 'resolution' must be two integers \\[width, height\\], each 1..16384"),
        (("resolution",), "1920x1080", "field 'resolution' must be two integers \\[width, height\\], each 1..16384"),
        (("bits",), 12, "field 'bits' must be one of"),
        (("format",), "psychoMonitor", "field 'format' must be"),
    ],
)
def test_incomplete_or_bad_profile_names_the_field(path, value, message):
    data = profile_to_dict(profile())
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    with pytest.raises(ProfileError, match=message):
        profile_from_dict(data)


def test_bad_name_and_resolution():
    with pytest.raises(ProfileError, match="monitor name must match"):
        new_profile("lab/1", width_cm=50, distance_cm=60, resolution=(800, 600), refresh_hz=60)
    with pytest.raises(ValueError, match="resolution must be WxH in pixels, e.g. 1920x1080, got '1920'"):
        parse_resolution("1920")
    assert parse_resolution("1920x1080") == (1920, 1080)


def test_cli_new_fit_show(tmp_path, capsys):
    mon = str(tmp_path / "mon")
    new = ["calibrate", "--monitors", mon, "new", "lab1", "--width-cm", "53", "--distance-cm", "57",
           "--resolution", "1920x1080", "--refresh", "120"]
    assert eigdist(new) == 0
    assert eigdist(new) == 2
    assert "exists; use --force" in capsys.readouterr().err
    levels, lum = synthetic_readings(gamma=2.1)
    csv = tmp_path / "readings.csv"
    csv.write_text("level,luminance_cd_m2\n" + "".join(f"{a:g},{b:.6f}\n" for a, b in zip(levels, lum)))
    assert eigdist(["calibrate", "--monitors", mon, "fit", str(csv), "--monitor", "lab1"]) == 0
    assert "x^2.100" in capsys.readouterr().out
    p = load_profile("lab1", mon)
    assert p.refresh_hz == 120 and check_calibrated(p).source.endswith(csv.name + " sha256:" + p.calibration.source[-64:])
    out = tmp_path / "cal.png"
    assert eigdist(["calibrate", "--monitors", mon, "show", "lab1", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_fit_errors_name_the_problem(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EIGDIST_MONITORS", str(tmp_path))
    csv = tmp_path / "r.csv"
    csv.write_text("level,lum\n0,1\n")
    assert eigdist(["calibrate", "fit", str(csv), "--monitor", "nope"]) == 2
    assert "no monitor profile 'nope'" in capsys.readouterr().err
    assert eigdist(["calibrate", "new", "m", "--width-cm", "50", "--distance-cm", "60", "--resolution", "800x600",
                    "--refresh", "60"]) == 0
    assert eigdist(["calibrate", "fit", str(csv), "--monitor", "m"]) == 2
    assert "column 'luminance_cd_m2' is missing" in capsys.readouterr().err
    assert eigdist(["calibrate", "show", "m"]) == 2
    assert "has no calibration yet" in capsys.readouterr().err
    assert eigdist(["calibrate", "check", "m"]) == 2
    assert "field 'calibration' is missing" in capsys.readouterr().err


def test_shipped_example_profile_is_uncalibrated_and_refused(monkeypatch):
    monkeypatch.delenv("EIGDIST_MONITORS", raising=False)
    example = load_profile("example")
    assert "EXAMPLE" in example.notes and example.ppd == pytest.approx(35.97, abs=0.01)
    with pytest.raises(ProfileError, match="field 'calibration' is missing"):
        check_calibrated(example)


# ---------------------------------------------------------------- per-gun calibration (issue 18)


def readings_csv(path, gammas=GUN_GAMMAS, noise=0.0, seed=0, chroma=False) -> str:
    """A CSV with a gun column: grey (gamma 2.4) and each gun with its own gamma; optional CIE xy."""
    xy = {"grey": (0.3127, 0.3290), "r": (0.64, 0.33), "g": (0.30, 0.60), "b": (0.15, 0.06)}
    rows = ["gun,level,luminance_cd_m2" + (",cie_x,cie_y" if chroma else "")]
    for i, (gun, gamma) in enumerate([("grey", 2.4), *gammas.items()]):
        levels, lum = synthetic_readings(gamma=gamma, n=24, noise=noise, seed=seed + i,
                                         lum1={"grey": 120.0, "r": 30.0, "g": 80.0, "b": 10.0}[gun])
        for a, b in zip(levels, lum):
            rows.append(f"{gun},{a:g},{max(b, 0.0):.6f}" + (f",{xy[gun][0]},{xy[gun][1]}" if chroma and a == 255 else
                                                          ",," if chroma else ""))
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def fit_file(path) -> "object":
    import csv

    with open(path, newline="") as fh:
        r = read_readings(csv.DictReader(fh), where=str(path))
    return fit_calibration(*r.curves["grey"], 8, guns={g: r.curves[g] for g in "rgb"},
                           chromaticity=r.chromaticity or None)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_per_gun_fits_recover_known_gammas_from_noisy_readings(tmp_path, seed):
    # photometer noise 0.05 cd/m² (SD) on 24 readings per curve: the bright guns (30, 80 cd/m²) within 0.01,
    # the dim blue gun (10 cd/m²: noise 0.5 % of its peak) within 0.07
    cal = fit_file(readings_csv(tmp_path / "r.csv", noise=0.05, seed=seed))
    got = {g: cal.guns[g].gamma["gamma"] for g in "rgb"}
    for gun, gamma in GUN_GAMMAS.items():
        assert got[gun] == pytest.approx(gamma, abs=0.07 if gun == "b" else 0.01), got
    assert cal.gamma["gamma"] == pytest.approx(2.4, abs=0.01)
    tables = cal.gun_tables()
    assert tables.shape == (3, 256) and np.all(np.diff(tables, axis=1) >= 0)
    assert tables[2, -1] == pytest.approx(10.0, abs=0.2)


def test_per_gun_profile_and_chromaticity_round_trip_through_json(tmp_path):
    cal = fit_file(readings_csv(tmp_path / "r.csv", chroma=True))
    assert cal.chromaticity == {"r": (0.64, 0.33), "g": (0.3, 0.6), "b": (0.15, 0.06), "white": (0.3127, 0.329)}
    assert list(cal.chromaticity) == ["r", "g", "b", "white"]
    p = calibrated(profile(), cal)
    save_profile(p, tmp_path)
    again = load_profile("test", tmp_path)
    assert again == p and again.calibration.guns["g"].gamma == cal.guns["g"].gamma


def test_cli_fit_reads_a_gun_column_and_show_plots_four_curves(tmp_path, capsys):
    mon = str(tmp_path / "mon")
    assert eigdist(["calibrate", "--monitors", mon, "new", "lab1", "--width-cm", "53", "--distance-cm", "57",
                    "--resolution", "1920x1080", "--refresh", "60"]) == 0
    csv = readings_csv(tmp_path / "r.csv", chroma=True)
    assert eigdist(["calibrate", "--monitors", mon, "fit", csv, "--monitor", "lab1"]) == 0
    out = capsys.readouterr().out
    assert "   r gamma fit: L = 0.400 + (30.000 - 0.400) x^1.900" in out and "x^2.500" in out
    assert "CIE xy: r (0.6400, 0.3300), g (0.3000, 0.6000), b (0.1500, 0.0600), white (0.3127, 0.3290)" in out
    png = tmp_path / "four.png"
    assert eigdist(["calibrate", "--monitors", mon, "show", "lab1", "--out", str(png)]) == 0
    assert "gamma grey 2.400, r 1.900, g 2.200, b 2.500" in capsys.readouterr().out
    from PIL import Image

    with Image.open(png) as image:  # .size alone reads no pixels, so nothing would close the file
        assert image.size == (1440, 540)  # four panels side by side


# ---------------------------------------------------------------- calibration trust (issue 16)


def _new(mon: str) -> None:
    assert eigdist(["calibrate", "--monitors", mon, "new", "m", "--width-cm", "50", "--distance-cm", "60",
                    "--resolution", "800x600", "--refresh", "60"]) == 0


def test_fit_keeps_every_calibration_dated_and_uses_the_newest(tmp_path, capsys):
    """16.4: a second fit used to replace the first and keep no copy."""
    mon = str(tmp_path)
    _new(mon)
    for gamma in (2.0, 2.3):
        levels, lum = synthetic_readings(gamma=gamma)
        csv = tmp_path / f"r{gamma}.csv"
        csv.write_text("level,luminance_cd_m2\n" + "".join(f"{a:g},{b:.6f}\n" for a, b in zip(levels, lum)))
        assert eigdist(["calibrate", "--monitors", mon, "fit", str(csv), "--monitor", "m"]) == 0
    assert "1 earlier calibration(s) kept in its history" in capsys.readouterr().out
    p = load_profile("m", mon)
    assert p.calibration.gamma["gamma"] == pytest.approx(2.3) and len(p.history) == 1
    assert p.history[0].gamma["gamma"] == pytest.approx(2.0) and "r2.0.csv" in p.history[0].source
    # an older calibration added later (e.g. imported) goes into the history; the newest stays in use
    old = fit_calibration(*synthetic_readings(gamma=1.7), 8, date=utc_now() - timedelta(days=400))
    q = calibrated(p, old)
    assert q.calibration == p.calibration and [c.gamma["gamma"] for c in q.history] == pytest.approx([1.7, 2.0])


def test_decimal_comma_row_is_refused_naming_the_line(tmp_path, capsys):
    """16.11: '0,0,5' was read as level 0, 0 cd/m² (the extra field dropped)."""
    _new(str(tmp_path))
    csv = tmp_path / "r.csv"
    levels, lum = synthetic_readings()
    csv.write_text("level,luminance_cd_m2\n0,0,5\n" + "".join(f"{a:g},{b:.6f}\n" for a, b in zip(levels[1:], lum[1:])))
    assert eigdist(["calibrate", "--monitors", str(tmp_path), "fit", str(csv), "--monitor", "m"]) == 2
    err = capsys.readouterr().err
    assert "r.csv line 2: 3 fields but the header has 2 (extra ['5']); a decimal comma? write 0.5, not 0,5" in err


def test_falling_readings_are_refused_naming_the_levels(tmp_path, capsys):
    """16.11: 30 → 10 cd/m² from level 64 to 128 was averaged away by the monotone fit."""
    _new(str(tmp_path))
    csv = tmp_path / "r.csv"
    csv.write_text("level,luminance_cd_m2\n0,0.5\n32,8\n64,30\n128,10\n192,70\n255,120\n")
    assert eigdist(["calibrate", "--monitors", str(tmp_path), "fit", str(csv), "--monitor", "m"]) == 2
    assert "grey: luminance falls from 30 cd/m2 at level 64 to 10 at level 128" in capsys.readouterr().err
    assert load_profile("m", tmp_path).calibration is None  # nothing written


@pytest.mark.parametrize("text, message", [
    ("level,luminance_cd_m2\n0,0.5\n64,1e308\n128,30\n192,70\n255,120\n",
     "0 <= luminance_cd_m2 <= 100000; reading 2 is level 64, luminance 1e+308"),
    ("gun,level,luminance_cd_m2\nred,0,1\n", "line 2: gun must be one of grey, r, g, b, got 'red'"),
    ("gun,level,luminance_cd_m2\nr,0,1\n", "no grey readings"),
])
def test_absurd_readings_are_refused(tmp_path, capsys, text, message):
    _new(str(tmp_path))
    (tmp_path / "r.csv").write_text(text)
    assert eigdist(["calibrate", "--monitors", str(tmp_path), "fit", str(tmp_path / "r.csv"), "--monitor", "m"]) == 2
    assert message in capsys.readouterr().err


def test_fit_given_a_folder_and_absurd_sizes_are_plain_errors(tmp_path, capsys):
    """16.12/16.14: a folder as readings; a 100000x100000 monitor or window."""
    _new(str(tmp_path))
    assert eigdist(["calibrate", "--monitors", str(tmp_path), "fit", str(tmp_path), "--monitor", "m"]) == 2
    assert f"readings {str(tmp_path)!r} is a folder: give the CSV file" in capsys.readouterr().err
    assert eigdist(["calibrate", "--monitors", str(tmp_path), "new", "huge", "--width-cm", "50", "--distance-cm",
                    "60", "--resolution", "100000x100000", "--refresh", "60"]) == 2
    assert "got '100000x100000' (each side 1..16384)" in capsys.readouterr().err
    assert eigdist(["calibrate", "--monitors", str(tmp_path), "check", "m", "--pilot", "--window",
                    "100000x100000"]) == 2
    assert "got '100000x100000' (each side 1..16384)" in capsys.readouterr().err


def test_truncated_profile_json_names_the_file(tmp_path, capsys):
    """16.13: 'Expecting value: line 17' with no file named."""
    save_profile(profile(), tmp_path)
    path = tmp_path / "test.json"
    path.write_text(path.read_text()[:200])
    assert eigdist(["calibrate", "--monitors", str(tmp_path), "show", "test"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: not a readable JSON monitor profile (" in err


@pytest.mark.parametrize("args, message", [
    (["check", "test", "--save", "chk.txt"], "--save writes a PNG image: give a file name ending in .png, got 'chk.txt'"),
    (["show", "test", "--out", "plot.pdf"], "--out writes a PNG image: give a file name ending in .png, got 'plot.pdf'"),
])
def test_non_png_output_names_are_refused(tmp_path, capsys, monkeypatch, args, message):
    """16.14: ``calibrate check --save chk.txt`` wrote a PNG under that name."""
    monkeypatch.chdir(tmp_path)
    save_profile(profile(), tmp_path)
    assert eigdist(["calibrate", "--monitors", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err and not list(tmp_path.glob("chk.txt"))


def test_check_without_display_is_a_plain_error(tmp_path, capsys, monkeypatch):
    """16.12: no DISPLAY used to end in pyglet's NoSuchDisplayException traceback."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    save_profile(profile(), tmp_path)
    assert eigdist(["calibrate", "--monitors", str(tmp_path), "check", "test", "--frames", "1"]) == 2
    assert "no display to open a window on (DISPLAY is not set)" in capsys.readouterr().err


def test_calibration_figure_module_leaves_matplotlib_backend_alone():
    """20.4: importing and using the figure code must not switch the process to Agg."""
    import subprocess
    import sys

    code = ("import matplotlib; b = matplotlib.get_backend(); import experiments.calibration_plot as c; "
            "from tests.test_monitor import profile; c.calibration_figure(profile()); "
            "import sys; print('pyplot' in sys.modules, matplotlib.get_backend() == b)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={
        **__import__("os").environ, "MPLBACKEND": "svg"}, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]


# ---------------------------------------------------------------- PsychoPy Monitor Center files


def test_psychopy_round_trip_gives_the_same_curves(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    from experiments.psychopy_monitors import read_psychopy_monitor, write_psychopy_monitor

    older = fit_calibration(*synthetic_readings(gamma=2.0), 8, date=utc_now() - timedelta(days=3))
    p = calibrated(calibrated(profile(), older), fit_file(readings_csv(tmp_path / "r.csv", noise=0.05)))
    p = type(p)(**{**p.__dict__, "calibration": type(p.calibration)(**{**p.calibration.__dict__,
                                                                       "chromaticity": None})})
    path, names = write_psychopy_monitor(p, tmp_path / "psychopy")
    data = json.loads(path.read_text())
    assert sorted(data) == names and len(names) == 3  # every calibration, keyed by date (two may share a second)
    newest = data[sorted(data)[-1]]
    assert np.asarray(newest["lumsPre"]["__ndarray__"]).shape == (4, 24)
    back = read_psychopy_monitor("test", tmp_path / "psychopy", refresh_hz=60.0)
    assert (back.width_cm, back.distance_cm, back.resolution, back.name) == (53.0, 57.0, (1920, 1080), "test")
    for a, b in [(back.calibration, p.calibration), (back.history[0], p.history[0])]:
        assert a.date == b.date and a.levels == b.levels and a.luminance == b.luminance
        assert a.gamma == b.gamma and a.lut == b.lut and (a.lum_min, a.lum_mean, a.lum_max) == (
            b.lum_min, b.lum_mean, b.lum_max)
    for g in "rgb":
        assert back.calibration.guns[g] == p.calibration.guns[g]


def test_cli_import_psychopy_monitor_center_file(tmp_path, capsys, monkeypatch):
    """A monitor calibrated in PsychoPy (its own API, as Monitor Center saves it) becomes a profile."""
    monkeypatch.setenv("HOME", str(tmp_path))
    from psychopy import monitors
    from psychopy.monitors import calibTools

    monkeypatch.setattr(calibTools, "monitorFolder", str(tmp_path / "pp"))
    (tmp_path / "pp").mkdir()
    mon = monitors.Monitor("labCRT", width=40.0, distance=70.0, verbose=False, autoLog=False)
    mon.setSizePix([1024, 768])
    levels = np.linspace(0, 255, 9)
    lums = np.array([gamma_curve(levels / 255, 0.3, peak, g) for peak, g in ((90, 2.3), (25, 1.9), (60, 2.2),
                                                                          (8, 2.5))])
    mon.setLevelsPre(levels)
    mon.setLumsPre(lums)
    mon.setGammaGrid(np.array([[0.3, 90, 2.3], [0.3, 25, 1.9], [0.3, 60, 2.2], [0.3, 8, 2.5]]))
    mon.saveMon()
    monkeypatch.undo()
    mons = str(tmp_path / "eig")
    assert eigdist(["calibrate", "--monitors", mons, "import-psychopy", "labCRT", "--psychopy-folder",
                    str(tmp_path / "pp"), "--refresh", "85"]) == 0
    assert "grey + R, G, B" in capsys.readouterr().out
    p = load_profile("labCRT", mons)
    assert (p.width_cm, p.distance_cm, p.resolution, p.refresh_hz) == (40.0, 70.0, (1024, 768), 85.0)
    assert {g: round(c.gamma["gamma"], 6) for g, c in p.calibration.guns.items()} == {"r": 1.9, "g": 2.2, "b": 2.5}
    assert eigdist(["calibrate", "--monitors", mons, "import-psychopy", "nope", "--psychopy-folder",
                    str(tmp_path / "pp"), "--refresh", "85"]) == 2
    assert "no PsychoPy monitor 'nope' in" in capsys.readouterr().err
