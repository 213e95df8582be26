"""Calibration faults a lab meets: PsychoPy monitors (merged on export, uncalibrated on import, broken
files), readings that cannot be right (swapped gun labels, most of the range unmeasured, the wrong
separator, a binary file) and read-only folders. Each is refused with one line naming the file,
field or value, or handled without losing anything."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from eigdist.cli.main import main as eigdist
from experiments.calibration import fit_calibration
from experiments.monitor import gamma_curve, load_profile
from experiments.readings_rules import ADDITIVITY_TOLERANCE, MAX_LEVEL_GAP

PEAKS = {"grey": (120.0, 2.4), "r": (30.0, 1.9), "g": (80.0, 2.2), "b": (10.0, 2.5)}  # r + g + b = grey
BLACK = 0.4


def cli(capsys, *argv) -> tuple[int, str]:
    """Exit code and stderr of one command; a refusal must be exactly one line."""
    code = eigdist([str(a) for a in argv])
    err = capsys.readouterr().err
    if code:
        assert err.count("\n") == 1 and "Traceback" not in err, err
    return code, err


def curve(gun: str, levels) -> np.ndarray:
    peak, gamma = PEAKS[gun]
    return gamma_curve(np.asarray(levels, float) / 255, BLACK, peak, gamma)


def readings_csv(path: Path, labels: dict[str, str] | None = None, levels=None, sep: str = ",") -> Path:
    """Per-gun readings; ``labels`` renames the guns as written (a swap), ``levels`` the levels measured."""
    levels = np.rint(np.linspace(0, 255, 18)) if levels is None else levels
    rows = [sep.join(("gun", "level", "luminance_cd_m2"))]
    for gun in PEAKS:
        rows += [sep.join((labels.get(gun, gun) if labels else gun, f"{lv:g}", f"{v:.5f}"))
                 for lv, v in zip(levels, curve(gun, levels))]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def mon(tmp_path, capsys) -> str:
    """A monitors folder with an uncalibrated profile ``m``."""
    folder = str(tmp_path / "mon")
    assert cli(capsys, "calibrate", "--monitors", folder, "new", "m", "--width-cm", 50, "--distance-cm", 60,
               "--resolution", "800x600", "--refresh", 60)[0] == 0
    return folder


def psychopy_file(folder: Path, name: str, calibs: dict) -> Path:
    """A PsychoPy monitor file as Monitor Center writes it (json_tricks, calibrations keyed by date)."""
    import json_tricks

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json_tricks.dumps(calibs, indent=2, allow_nan=True))
    return path


def measured_calib(date: float, gamma: float = 2.2, peak: float = 90.0) -> dict:
    levels = np.linspace(0, 255, 9)
    return {"calibDate": date, "width": 40.0, "distance": 70.0, "sizePix": [1024, 768], "notes": "",
            "gamma": None, "linearizeMethod": 1, "levelsPre": levels,
            "lumsPre": gamma_curve(levels / 255, 0.3, peak, gamma)[None],
            "gammaGrid": np.array([[0.3, peak, gamma]] + [[0.0, 1.0, 1.0]] * 3)}


def unmeasured_calib(date: float, grid_row=(0.0, 1.0, 1.0)) -> dict:
    """What Monitor Center saves for a new monitor before any photometer run."""
    return {"calibDate": date, "width": 40.0, "distance": 70.0, "sizePix": [1024, 768], "notes": "", "gamma": None,
            "linearizeMethod": 1, "useBits": False, "gammaGrid": np.array([list(grid_row)] + [[0.0, 1.0, 1.0]] * 3)}


# ---------------------------------------------------------------- export adds to PsychoPy's monitor


def test_export_psychopy_adds_to_an_existing_monitor_and_keeps_its_calibrations(tmp_path, capsys, mon):
    pp = tmp_path / "pp"
    mine = {f"2025_0{i}_01 10:00": measured_calib(1.74e9 + i * 1e6, gamma=2.0 + i / 10) for i in (1, 2, 3)}
    path = psychopy_file(pp, "m", mine)
    csv = readings_csv(tmp_path / "r.csv")
    assert cli(capsys, "calibrate", "--monitors", mon, "fit", csv, "--monitor", "m")[0] == 0
    assert eigdist(["calibrate", "--monitors", mon, "export-psychopy", "m", "--psychopy-folder", str(pp)]) == 0
    out = capsys.readouterr().out
    assert "1 calibration(s) of profile 'm' added, 4 in all (PsychoPy's others kept); PsychoPy uses the last" in out
    from experiments.psychopy_monitors import _load_calibs

    after = _load_calibs(path)
    assert len(after) == 4 and set(mine) < set(after)  # was: 1 (PsychoPy's three replaced)
    for key, calib in mine.items():
        np.testing.assert_array_equal(after[key]["lumsPre"], calib["lumsPre"])
        assert after[key]["calibDate"] == calib["calibDate"]
    assert cli(capsys, "calibrate", "--monitors", mon, "export-psychopy", "m", "--psychopy-folder", pp)[0] == 0
    assert len(_load_calibs(path)) == 4  # the same calibration exported again replaces itself
    # PsychoPy itself reads the merged file and uses the newest calibration (eigdist's, fitted now)
    from psychopy import monitors
    from psychopy.monitors import calibTools

    from experiments.psychopy_monitors import psychopy_folder

    old, calibTools.monitorFolder = calibTools.monitorFolder, str(pp)
    try:
        saved = monitors.Monitor("m", verbose=False, autoLog=False)
        assert len(saved.calibNames) == 4 and saved.currentCalibName == max(after) and psychopy_folder() == pp
    finally:
        calibTools.monitorFolder = old


def test_export_psychopy_never_replaces_a_file_it_cannot_read(tmp_path, capsys, mon):
    pp = tmp_path / "pp"
    pp.mkdir()
    (pp / "m.json").write_bytes(b'{"2025_01_01 10:00": {"width": 40, ')  # cut off
    code, err = cli(capsys, "calibrate", "--monitors", mon, "export-psychopy", "m", "--psychopy-folder", pp)
    assert code == 2 and f"{pp / 'm.json'}: not a readable PsychoPy monitor file" in err
    assert (pp / "m.json").read_bytes() == b'{"2025_01_01 10:00": {"width": 40, '


# ---------------------------------------------------------------- import of an uncalibrated monitor


def _exported_uncalibrated(tmp_path: Path, capsys, mon: str) -> Path:
    pp = tmp_path / "pp"
    assert cli(capsys, "calibrate", "--monitors", mon, "export-psychopy", "m", "--psychopy-folder", pp)[0] == 0
    return pp / "m.json"


def _psychopy_default(tmp_path: Path, capsys, mon: str) -> Path:
    """A new monitor saved by PsychoPy's own API (what Monitor Center does before measuring)."""
    from experiments.psychopy_monitors import monitor_folder, quiet_monitor

    m = quiet_monitor("m")
    (tmp_path / "pp").mkdir()
    with monitor_folder(tmp_path / "pp"):
        m.setWidth(40.0)
        m.setDistance(70.0)
        m.setSizePix([1024, 768])
        m.saveMon()
    return tmp_path / "pp" / "m.json"


@pytest.mark.parametrize("make, history", [
    (_exported_uncalibrated, 0),
    (_psychopy_default, 0),
    (lambda tmp, capsys, mon: psychopy_file(tmp / "pp", "m", {"2025_01_01 10:00": unmeasured_calib(1.7e9)}), 0),
    # a gamma typed in by hand, no luminance measured: PsychoPy's default luminances 0 and 1 cd/m²
    (lambda tmp, capsys, mon: psychopy_file(tmp / "pp", "m", {"2025_01_01 10:00": unmeasured_calib(
        1.7e9, (0.0, 1.0, 2.2))}), 0),
    # measured once, then a new calibration (another distance) not yet measured: uncalibrated, as for PsychoPy
    (lambda tmp, capsys, mon: psychopy_file(tmp / "pp", "m", {"2025_01_01 10:00": measured_calib(1.7e9),
                                                              "2025_02_01 10:00": unmeasured_calib(1.71e9)}), 1),
], ids=["eigdist-exported", "psychopy-new-monitor", "default-grid", "gamma-typed-alone", "newest-unmeasured"])
def test_import_of_an_uncalibrated_psychopy_monitor_gives_an_uncalibrated_profile(tmp_path, capsys, mon, make,
                                                                                    history):
    path = make(tmp_path, capsys, mon)
    mons = str(tmp_path / "imported")
    assert cli(capsys, "calibrate", "--monitors", mons, "import-psychopy", "m", "--psychopy-folder", path.parent,
               "--refresh", 60)[0] == 0
    profile = load_profile("m", mons)
    assert profile.calibration is None and len(profile.history) == history  # was: Lmax 1 cd/m², gamma 1
    code, err = cli(capsys, "calibrate", "--monitors", mons, "check", "m", "--frames", 1)
    assert code == 2 and "monitor 'm': field 'calibration' is missing (uncalibrated profile)" in err


def test_import_says_the_monitor_is_not_calibrated(tmp_path, capsys, mon):
    pp = _exported_uncalibrated(tmp_path, capsys, mon).parent
    assert eigdist(["calibrate", "--monitors", str(tmp_path / "i"), "import-psychopy", "m", "--psychopy-folder",
                    str(pp), "--refresh", "60"]) == 0
    assert "NOT calibrated: its newest PsychoPy calibration holds no photometer readings" in capsys.readouterr().out


# ---------------------------------------------------------------- per-gun readings must add up to grey


@pytest.mark.parametrize("labels, message", [
    ({"grey": "b", "b": "grey"}, "b: at level 255 the b gun alone reads 119.6 cd/m2 above black but grey (all guns on) "
                                 "only 9.6 (g 79.6 and r 29.6 also outshine it): one gun cannot outshine all three; "
                                 "are the labels grey and b swapped?"),
    ({"grey": "r", "r": "grey"}, "are the labels grey and r swapped?"),
    ({"grey": "g", "g": "grey"}, "are the labels grey and g swapped?"),
    ({"r": "g", "g": "r"}, None),  # two guns swapped: grey = r + g + b still holds (luminance cannot tell)
])
def test_swapped_gun_labels_are_refused_naming_the_guns(tmp_path, capsys, mon, labels, message):
    path = readings_csv(tmp_path / "r.csv", labels)
    code, err = cli(capsys, "calibrate", "--monitors", mon, "fit", path, "--monitor", "m")
    assert (code, message is None or f"{path}: " in err and message in err) == (
        (0, True) if message is None else (2, True)), err
    assert (load_profile("m", mon).calibration is None) == (message is not None)


@pytest.mark.parametrize("scale, at", [(0.5, "g"), (1.5, "g"), (0.0, "b"), (2.0, "r")])
def test_per_gun_readings_that_do_not_add_up_to_grey_are_refused(scale, at):
    levels = np.rint(np.linspace(0, 255, 18))
    guns = {g: (levels, BLACK + (scale if g == at else 1.0) * (curve(g, levels) - BLACK)) for g in "rgb"}
    total = sum(PEAKS[g][0] - BLACK for g in "rgb") + (scale - 1) * (PEAKS[at][0] - BLACK)
    off = abs(total - (PEAKS["grey"][0] - BLACK)) / (PEAKS["grey"][0] - BLACK)
    if scale == 0.0:  # a gun that never rises is refused by its own curve's check
        with pytest.raises(ValueError, match="b: luminance must rise with level"):
            fit_calibration(levels, curve("grey", levels), 8, guns=guns)
        return
    assert off > ADDITIVITY_TOLERANCE
    with pytest.raises(ValueError, match=r"per-gun readings do not add up to grey: at level \d+ r \+ g \+ b read "
                                         r".* cd/m2 above black \(r .*, g .*, b .*\) but grey .*, more than 10% of "
                                         r"grey's range .* apart: check the gun labels"):
        fit_calibration(levels, curve("grey", levels), 8, guns=guns)


def test_additive_guns_within_the_tolerance_are_accepted():
    levels = np.rint(np.linspace(0, 255, 18))
    for scale in (0.97, 1.03):  # a display 3 % off additivity (common) passes
        guns = {g: (levels, BLACK + scale * (curve(g, levels) - BLACK)) for g in "rgb"}
        assert fit_calibration(levels, curve("grey", levels), 8, guns=guns).guns is not None


def test_a_psychopy_monitor_with_swapped_rows_is_refused_naming_the_calibration(tmp_path, capsys):
    levels = np.linspace(0, 255, 9)
    rows = np.array([curve(g, levels) for g in ("b", "r", "g", "grey")])  # lum row and B row swapped
    calib = {**measured_calib(1.7e9), "levelsPre": levels, "lumsPre": rows}
    path = psychopy_file(tmp_path / "pp", "crt", {"2025_01_01 10:00": calib})
    code, err = cli(capsys, "calibrate", "--monitors", tmp_path / "mon", "import-psychopy", "crt",
                    "--psychopy-folder", path.parent, "--refresh", 85)
    assert code == 2 and f"{path} calibration '2025_01_01 10:00' (lumsPre): b: at level 255" in err
    assert "are the labels grey and b swapped?" in err


# ---------------------------------------------------------------- readings must cover the range


@pytest.mark.parametrize("levels, gap", [
    ([0, 1, 2, 3, 4, 255], "between levels 4 and 255 (98% of the range 0..255 unmeasured; at most 85 levels apart)"),
    ([0, 251, 252, 253, 254, 255], "between levels 0 and 251 (98%"),
    ([0, 1, 2, 3, 4, 100, 170, 255], "between levels 4 and 100 (38%"),
    ([0, 32, 64, 128, 255], "between levels 128 and 255 (50%"),
])
def test_readings_that_leave_most_of_the_range_unmeasured_are_refused(tmp_path, capsys, mon, levels, gap):
    path = readings_csv(tmp_path / "r.csv", levels=np.array(levels, float))
    code, err = cli(capsys, "calibrate", "--monitors", mon, "fit", path, "--monitor", "m")
    assert code == 2 and f"{path}: grey: no readings {gap}" in err
    assert "measure levels spread over the whole range" in err
    assert load_profile("m", mon).calibration is None


def test_the_level_gap_rule_scales_with_the_bit_depth_and_accepts_even_spacing():
    assert MAX_LEVEL_GAP == pytest.approx(1 / 3)
    for bits, levels in ((8, [0, 64, 128, 192, 255]), (8, [0, 85, 170, 200, 255]), (10, [0, 341, 682, 900, 1023])):
        lum = gamma_curve(np.array(levels) / (2**bits - 1), 0.4, 100.0, 2.2)
        assert len(fit_calibration(levels, lum, bits).lut) == 2**bits
    with pytest.raises(ValueError, match=r"grey: no readings between levels 0 and 342 \(33% of the range 0..1023 "
                                         r"unmeasured; at most 341 levels apart\)"):
        fit_calibration([0, 342, 682, 900, 1023], np.linspace(0.4, 100, 5), 10)


def test_a_gun_that_leaves_the_range_unmeasured_is_named(tmp_path, capsys, mon):
    path = readings_csv(tmp_path / "r.csv")
    lines = [ln for ln in path.read_text().splitlines() if not (ln.startswith("g,") and ln.split(",")[1] not in
                                                                   ("0", "255", "15", "30", "45"))]
    path.write_text("\n".join(lines) + "\n")
    code, err = cli(capsys, "calibrate", "--monitors", mon, "fit", path, "--monitor", "m")
    assert code == 2 and "g: no readings between levels 45 and 255" in err


# ---------------------------------------------------------------- read-only folders


@pytest.fixture
def read_only(monkeypatch):
    """Make folders read-only, also for root (who bypasses permissions): the mode, and ``os.access`` for them."""
    folders: list[Path] = []
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if (m & os.W_OK and Path(p) in folders)
                        else real(p, m, **kw))

    def make(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o555)
        folders.append(path)
        return path

    yield make
    for path in folders:
        path.chmod(0o755)


def test_read_only_folders_are_refused_by_every_calibrate_command(tmp_path, capsys, mon, read_only):
    csv = readings_csv(tmp_path / "r.csv")
    assert cli(capsys, "calibrate", "--monitors", mon, "fit", csv, "--monitor", "m")[0] == 0
    pp = tmp_path / "pp"
    assert cli(capsys, "calibrate", "--monitors", mon, "export-psychopy", "m", "--psychopy-folder", pp)[0] == 0
    ro = read_only(tmp_path / "ro")
    new = ["new", "n", "--width-cm", 50, "--distance-cm", 60, "--resolution", "800x600", "--refresh", 60]
    cases = [
        (["--monitors", ro, *new], f"--monitors '{ro}' is read-only for this user; give a writable folder"),
        (["--monitors", ro / "sub", *new], f"--monitors '{ro / 'sub'}' is read-only for this user (it would be "
                                           f"created in {ro})"),
        (["--monitors", ro, "import-psychopy", "m", "--psychopy-folder", pp, "--refresh", 60],
         f"--monitors '{ro}' is read-only"),
        (["--monitors", mon, "show", "m", "--out", ro / "cal.png"], f"--out '{ro}' is read-only"),
        (["--monitors", mon, "export-psychopy", "m", "--psychopy-folder", ro],
         f"--psychopy-folder '{ro}' is read-only"),
        (["--monitors", mon, "check", "m", "--save", ro / "f.png", "--frames", 1], f"--save '{ro}' is read-only"),
        (["--monitors", csv, *new], f"--monitors '{csv}' is a file; give the folder of monitor profiles"),
    ]
    for argv, message in cases:
        code, err = cli(capsys, "calibrate", *argv)
        assert code == 2 and message in err, (argv, err)
    assert list(ro.iterdir()) == []
    # a folder holding the profile that became read-only: fit and show (default --out) refuse, nothing changes
    before = (Path(mon) / "m.json").read_bytes()
    read_only(Path(mon))
    for argv in (["fit", csv, "--monitor", "m"], ["show", "m"], ["new", "m", *new[2:], "--force"]):
        code, err = cli(capsys, "calibrate", "--monitors", mon, *argv)
        assert code == 2 and f"--monitors '{mon}' is read-only for this user; give a writable folder" in err, err
    assert (Path(mon) / "m.json").read_bytes() == before


def test_the_default_monitor_folder_is_named_by_where_it_came_from(tmp_path, capsys, monkeypatch, read_only):
    ro = read_only(tmp_path / "ro")
    monkeypatch.setenv("EIGDIST_MONITORS", str(ro))
    code, err = cli(capsys, "calibrate", "new", "n", "--width-cm", 50, "--distance-cm", 60, "--resolution",
                    "800x600", "--refresh", 60)
    assert code == 2 and f"$EIGDIST_MONITORS '{ro}' is read-only" in err


# ---------------------------------------------------------------- files that are not what they should be


@pytest.mark.parametrize("data, message", [
    (bytes(range(256)) * 4, "holds NUL bytes: a binary file, not a CSV of photometer readings"),
    ("level,luminance_cd_m2\n0,1\n128,5\n255,caf\xe9\n".encode("latin-1"), "r.csv: not UTF-8 or UTF-16 text (byte"),
])
def test_fit_of_a_binary_or_non_utf8_file_names_it(tmp_path, capsys, mon, data, message):
    (tmp_path / "r.csv").write_bytes(data)
    code, err = cli(capsys, "calibrate", "--monitors", mon, "fit", tmp_path / "r.csv", "--monitor", "m")
    assert code == 2 and message in err and "codec" not in err


@pytest.mark.parametrize("sep, shown", [(";", "';'"), ("\t", "a tab"), ("|", "'|'")])
def test_a_readings_csv_with_another_separator_gets_a_delimiter_hint(tmp_path, capsys, mon, sep, shown):
    path = readings_csv(tmp_path / "r.csv", sep=sep)
    code, err = cli(capsys, "calibrate", "--monitors", mon, "fit", path, "--monitor", "m")
    assert code == 2 and f"readings '{path}': the header {f'gun{sep}level{sep}luminance_cd_m2'!r}" in err
    assert f"is separated by {shown}, not by commas: save the file as comma-separated CSV" in err


def test_a_readings_header_with_spaces_after_the_commas_is_read(tmp_path, capsys, mon):
    path = readings_csv(tmp_path / "r.csv", sep=", ")
    assert cli(capsys, "calibrate", "--monitors", mon, "fit", path, "--monitor", "m")[0] == 0


@pytest.mark.parametrize("content, message", [
    (bytes(range(256)) * 4, "not a readable PsychoPy monitor file (x.json: not UTF-8 or UTF-16 text"),
    (b'{"2025_01_01 10:00": {"width": ', "not a readable PsychoPy monitor file (Expecting value"),
    (b"[1, 2]", "not a PsychoPy monitor file (an object of calibrations keyed by date), got list"),
    (b'{"k": {"gammaGrid": {"__ndarray__": [1, 2], "dtype": "float64"}}}', "not a readable PsychoPy monitor file ("),
    (b"{}", "no calibrations (PsychoPy keeps each monitor's settings in a calibration keyed by date)"),
])
def test_an_unreadable_psychopy_file_is_named(tmp_path, capsys, content, message):
    _import_refused(tmp_path, capsys, content, f"{tmp_path / 'pp' / 'x.json'}: {message}")


@pytest.mark.parametrize("content, message", [
    (b'{"2025_01_01 10:00": 3}', "calibration '2025_01_01 10:00': must be an object of PsychoPy fields"),
    (b'{"2025_01_01 10:00": {"width": "40"}}', "calibration '2025_01_01 10:00': PsychoPy field 'width' must be a "
                                              "positive number (cm), got '40'"),
    # json_tricks would build the class a file names; only arrays are decoded
    (b'{"k": {"__instance_type__": ["pathlib", "PurePath"], "attributes": {}}}',
     "calibration 'k': PsychoPy field 'width' must be a positive number (cm), got None"),
])
def test_a_psychopy_file_with_a_bad_calibration_is_named(tmp_path, capsys, content, message):
    _import_refused(tmp_path, capsys, content, f"{tmp_path / 'pp' / 'x.json'} {message}")


def _import_refused(tmp_path, capsys, content: bytes, message: str) -> None:
    (tmp_path / "pp").mkdir()
    (tmp_path / "pp" / "x.json").write_bytes(content)
    code, err = cli(capsys, "calibrate", "--monitors", tmp_path / "mon", "import-psychopy", "x", "--psychopy-folder",
                    tmp_path / "pp", "--refresh", 60)
    assert code == 2 and message in err, err


@pytest.mark.parametrize("field, value, message", [
    ("sizePix", None, "PsychoPy field 'sizePix' must be the screen size [width, height] in pixels, got None"),
    ("sizePix", [1024], "PsychoPy field 'sizePix' must be the screen size [width, height] in pixels, got [1024]"),
    ("width", None, "PsychoPy field 'width' must be a positive number (cm), got None"),
    ("distance", 0, "PsychoPy field 'distance' must be a positive number (cm), got 0"),
    ("calibDate", "yesterday", "PsychoPy field 'calibDate' must be the calibration time in seconds since 1970, "
                               "got 'yesterday'"),
    ("calibDate", None, "PsychoPy field 'calibDate' must be the calibration time in seconds since 1970, got None"),
    ("calibDate", 1e15, "PsychoPy field 'calibDate' must be the calibration time in seconds since 1970, got 1000000000000000.0"),
    ("lumsPre", [[1, "x"]], "PsychoPy field 'lumsPre' must hold numbers"),
    ("lumsPre", [[1, 2, 3]], "PsychoPy field 'lumsPre' must be 1 or 4 rows of 9 readings (one per levelsPre), got "
                             "shape (1, 3)"),
    ("levelsPre", None, "PsychoPy field 'levelsPre' is missing"),
])
def test_a_psychopy_calibration_with_a_bad_field_names_the_file_and_the_field(tmp_path, capsys, field, value,
                                                                              message):
    calib = measured_calib(1.7e9)
    if value is None:
        del calib[field]
    else:
        calib[field] = value
    path = psychopy_file(tmp_path / "pp", "x", {"2025_01_01 10:00": calib})
    code, err = cli(capsys, "calibrate", "--monitors", tmp_path / "mon", "import-psychopy", "x", "--psychopy-folder",
                    path.parent, "--refresh", 60)
    assert code == 2 and f"{path} calibration '2025_01_01 10:00': {message}" in err


def test_the_window_monitor_never_reads_psychopys_file_of_the_same_name(tmp_path, monkeypatch):
    """An unreadable (or any) PsychoPy monitor file named like the profile must not reach a session's window."""
    from psychopy.monitors import calibTools

    from experiments.window import psychopy_monitor
    from tests.profiles import make_profile

    (tmp_path / "g.json").write_bytes(bytes(range(256)) * 4)
    monkeypatch.setattr(calibTools, "monitorFolder", str(tmp_path))
    mon = psychopy_monitor(make_profile(name="g"))  # was: json_tricks' decode exception
    assert (mon.getWidth(), mon.getSizePix()) == (40.0, [800, 600]) and calibTools.monitorFolder == str(tmp_path)


def test_export_keeps_two_calibrations_of_the_same_second(tmp_path):
    """PsychoPy keys calibrations by date: two fitted within one second must not become one."""
    from datetime import datetime, timezone

    from experiments.calibration import calibrated
    from experiments.monitor import new_profile
    from experiments.psychopy_monitors import read_psychopy_monitor, write_psychopy_monitor

    when = datetime(2026, 1, 5, 10, 0, 0, tzinfo=timezone.utc)
    levels = np.rint(np.linspace(0, 255, 18))
    profile = new_profile("twice", width_cm=40.0, distance_cm=57.0, resolution=(800, 600), refresh_hz=60.0)
    for gamma in (2.0, 2.4):
        profile = calibrated(profile, fit_calibration(levels, gamma_curve(levels / 255, 0.4, 100.0, gamma), 8,
                                                      date=when))
    path, names = write_psychopy_monitor(profile, tmp_path)
    assert names == ["2026_01_05 10:00:00", "2026_01_05 10:00:00 (2)"]  # was: one key, the first one lost
    assert write_psychopy_monitor(profile, tmp_path)[1] == names  # exported again: the same keys, replaced
    back = read_psychopy_monitor("twice", tmp_path, refresh_hz=60.0)
    assert [c.gamma["gamma"] for c in (*back.history, back.calibration)] == pytest.approx([2.0, 2.4], abs=1e-6)
