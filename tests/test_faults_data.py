"""Trial files a crash, a hand edit or a lost response key left: named, never silently analysed.

Each case fails with one line naming the file, row and value (or is listed among the exclusions),
so no session vanishes and no α beyond its ceiling reaches a fit or a plot.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.load import load_trials
from analysis.simulate import make_truth, simulate_trials
from eigdist.cli.main import main
from eigdist_core.errors import EigdistError
from experiments.datafile import session_paths
from tests.trial_fixtures import run_session, write_lab

LAYERS = {("vgg16", "conv1", "imagenet"): 0.8, ("frontend", "lgg", "published"): 0.3}


@pytest.fixture(scope="module")
def trials() -> pd.DataFrame:
    """Two simulated participants, one image, two layers (ceiling 30)."""
    truth = make_truth(LAYERS, n_participants=2, n_images=1, seed=0)
    return simulate_trials(truth, n_trials=30, seed=1)


def analyze(capsys, data: Path, out: Path, *extra: str) -> tuple[int, str]:
    code = main(["analyze", str(data), "--out", str(out), "--n-boot", "50", *extra])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("fitter", ["eigdist", "psignifit"])
def test_an_empty_session_is_listed_among_the_exclusions_and_in_the_report(trials, tmp_path, capsys, fitter):
    data = tmp_path / "data"
    files = write_lab(data, trials)
    header = files[0].read_text(encoding="utf-8").split("\n", 1)[0] + "\n"
    files[0].write_text(header, encoding="utf-8")  # p01's session: only its header
    code, err = analyze(capsys, data, tmp_path / "out", "--fitter", fitter)
    assert code == 0, err
    excluded = pd.read_csv(tmp_path / "out" / "exclusions.csv")
    empty = excluded[excluded["reason"].str.startswith("empty session")]
    assert len(empty) == 1 and empty["participant"].iat[0] == "p01" and empty["session"].iat[0] == 1
    assert empty["n_trials"].iat[0] == 0 and str(files[0]) in empty["reason"].iat[0]
    assert f"empty session: {files[0]} holds no trial (only its header)" in (
        tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_every_session_empty_says_so(trials, tmp_path, capsys):
    data = tmp_path / "data"
    for file in write_lab(data, trials):
        file.write_text(file.read_text(encoding="utf-8").split("\n", 1)[0] + "\n", encoding="utf-8")
    code, err = analyze(capsys, data, tmp_path / "out")
    assert code == 2 and "no trials left after exclusions" in err and "empty session: " in err


@pytest.mark.parametrize("alpha", ["50", "1e308", "4.000001"])
def test_an_alpha_above_its_ceiling_is_refused_naming_file_row_and_value(trials, tmp_path, capsys, alpha):
    data = tmp_path / "data"
    lab = trials.copy()
    lab["alpha_ceiling"] = 4.0
    lab["alpha"] = lab["alpha"].clip(upper=4.0)
    file = write_lab(data, lab)[1]
    lines = file.read_text(encoding="utf-8").split("\n")
    columns = lines[0].split("\t")
    cells = lines[7].split("\t")
    cells[columns.index("alpha")] = alpha
    lines[7] = "\t".join(cells)
    file.write_text("\n".join(lines), encoding="utf-8")
    code, err = analyze(capsys, data, tmp_path / "out")
    assert code == 2 and f"{file}, row 8, column 'alpha': bad value {float(alpha)!r}: above the track's ceiling 4 " \
                          "(alpha_ceiling)" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_ceiling_given_below_the_alphas_shown_is_refused(trials, tmp_path, capsys):
    data = tmp_path / "data"
    write_lab(data, trials)
    code, err = analyze(capsys, data, tmp_path / "out", "--alpha-max", "0.5")
    assert code == 2 and "above the track's ceiling 0.5 (alpha_ceiling from given: 0.5)" in err


@pytest.mark.parametrize("answer", [True, False], ids=["all-correct", "all-wrong"])
def test_one_answer_only_says_every_threshold_is_censored(trials, tmp_path, capsys, answer):
    data = tmp_path / "data"
    write_lab(data, trials.assign(correct=answer))
    code, err = analyze(capsys, data, tmp_path / "out")
    assert code == 2 and "every threshold is censored, so no D can be estimated" in err
    assert "4 of 4 participant × image × layer have both thresholds censored" in err
    assert "answers all right (below the lowest α) or all wrong (at alpha_max)" in err
    assert "D values found: unknown" not in err


@pytest.mark.parametrize("newline", [b"\n", b""], ids=["a line of NULs", "NULs to the end"])
def test_nul_bytes_a_crash_left_are_named_and_resume_repairs_them(tmp_path, capsys, newline):
    data = tmp_path / "data"
    full = [r for r in _rows(run_session(data, config=None), data)]
    path = session_paths(data, "P01", 1).trials
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:11]) + b"\n" + b"\x00" * 16384 + newline)  # 10 rows, then the crash
    with pytest.raises(EigdistError, match=rf"{path}, row 12: NUL bytes at row 12 \(crash\?\); 'eigdist run "
                                         r"--resume' of that session repairs it"):
        load_trials(data)
    run_session(data, resume=True)
    assert b"\x00" not in path.read_bytes()
    assert _rows(None, data) == full  # the resumed session equals one never interrupted
    assert len(load_trials(data)) == len(full)


def test_nul_bytes_followed_by_rows_are_not_a_crash_tail(tmp_path):
    data = tmp_path / "data"
    run_session(data)
    path = session_paths(data, "P01", 1).trials
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:5]) + b"\n" + b"\x00" * 100 + b"\n" + b"\n".join(lines[5:]))
    with pytest.raises(EigdistError, match=rf"{path}: NUL bytes at row 6 with rows after them: the file is damaged"):
        run_session(data, resume=True)


def _rows(_engine, data: Path) -> list[dict]:
    from experiments.datafile import read_trials

    return [{k: v for k, v in r.items() if k != "timestamp"} for r in read_trials(session_paths(data, "P01", 1).trials)]


@pytest.mark.parametrize("resave", ["comma", "semicolon", "lab column", "utf-16 crlf", "bom crlf"])
def test_participants_tsv_re_saved_by_a_spreadsheet_is_read_and_written_back_as_bids(tmp_path, resave):
    from tests.trial_fixtures import validate_bids

    data = tmp_path / "data"
    run_session(data, "P01")
    path = data / "participants.tsv"
    rows = [["participant_id", "age", "sex", "vision"], ["sub-P01", "n/a", "n/a", "n/a"]]
    encoding, newline, sep = "utf-8", "\n", "\t"
    if resave == "comma":
        sep = ","
    elif resave == "semicolon":
        sep = ";"
    elif resave == "lab column":
        rows = [rows[0] + ["lab"], rows[1] + ["Giessen"]]
    elif resave == "utf-16 crlf":
        encoding, newline = "utf-16", "\r\n"
    else:
        encoding, newline = "utf-8-sig", "\r\n"
    path.write_bytes((newline.join(sep.join(r) for r in rows) + newline).encode(encoding))
    run_session(data, "P02")
    lines = path.read_text(encoding="utf-8").split("\n")
    lab = "\tlab" if resave == "lab column" else ""
    assert lines[0] == "participant_id\tage\tsex\tvision" + lab
    assert lines[1] == "sub-P01\tn/a\tn/a\tn/a" + ("\tGiessen" if lab else "")
    assert lines[2] == "sub-P02\tn/a\tn/a\tn/a" + ("\tn/a" if lab else "") and lines[3:] == [""]
    errors, _ = validate_bids(data)
    assert errors == []


def test_a_participants_file_without_participant_id_is_refused_naming_it(tmp_path):
    data = tmp_path / "data"
    run_session(data, "P01")
    path = data / "participants.tsv"
    path.write_bytes(b"name;age\nAnna;30\n")
    with pytest.raises(EigdistError, match=rf"{path}: no participant_id column in its header 'name;age'; restore the "
                                         r"file, or move it away"):
        run_session(data, "P02")
    path.write_bytes("participant_id\tlab\nsub-P01\tK\xf6ln\n".encode("latin-1"))
    with pytest.raises(EigdistError, match=rf"{path}: not UTF-8 or UTF-16 text \(byte 28\); save it as UTF-8, or "
                                         r"move it away \(it is written anew\)"):
        run_session(data, "P02")


def test_a_row_cut_by_nul_bytes_is_a_torn_tail_too(tmp_path):
    data = tmp_path / "data"
    run_session(data)
    full = _rows(None, data)
    path = session_paths(data, "P01", 1).trials
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines[:8]) + b"\n" + lines[8][:40] + b"\x00" * 4096 + b"\n" + b"\x00" * 100)
    run_session(data, resume=True)
    assert _rows(None, data) == full
