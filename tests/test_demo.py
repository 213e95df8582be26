"""``eigdist demo --quick`` end to end (a subprocess, as a new user would run it), resume, bad input."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from eigdist.cli.demo import OBSERVER_MODEL, demo_plan, observer_spec
from eigdist.cli.main import main
from experiments.observers import parse_simulate
from experiments.xvfb import start_xvfb
from tests.trial_fixtures import validate_bids

ROOT = Path(__file__).resolve().parents[1]
needs_xvfb = pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed")


def demo(out: Path, *extra: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(out.parent / "home")}
    env.pop("DISPLAY", None)  # the demo starts its own screen
    return subprocess.run([sys.executable, "-m", "eigdist", "demo", "--quick", "--out", str(out), *extra],
                          env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo") / "out"
    return out, demo(out)


@needs_xvfb
def test_quick_demo_ranks_the_observers_own_model_first(quick_demo):
    out, proc = quick_demo
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with (out / "analysis" / "ranking.csv").open() as f:
        best = next(r for r in csv.DictReader(f) if r["rank"] == "1")
    assert f"{best['model']}:{best['layer']}" == OBSERVER_MODEL
    report = out / "analysis" / "report.html"
    assert report.is_file() and f"report: {report.resolve()}" in proc.stdout
    assert "<- the observers' own model" in proc.stdout and "SIMULATED monitor profile" in proc.stdout
    trials = sorted((out / "data").rglob("*_beh.tsv"))
    assert len(trials) == demo_plan(True, None).observers
    errors, _ = validate_bids(out / "data")  # the demo's data folder is a valid BIDS dataset
    assert errors == [], errors
    monitor = (out / "monitors" / "simulated.json").read_text()
    assert "SIMULATED" in monitor


@needs_xvfb
def test_a_rerun_resumes_and_redoes_no_finished_work(quick_demo):
    out, first = quick_demo
    assert first.returncode == 0
    trials = sorted((out / "data").rglob("*_beh.tsv"))
    stamps = [p.stat().st_mtime_ns for p in trials]
    proc = demo(out, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sessions: all 2 finished already" in proc.stdout
    assert [p.stat().st_mtime_ns for p in trials] == stamps


def test_observer_specs_are_valid_simulate_specs():
    spec = parse_simulate(observer_spec(3, 0.0003))
    assert (spec.kind, spec.model, spec.params["noise"], spec.params["seed"]) == ("model", OBSERVER_MODEL, 0.0003, 3)


def test_bad_observer_count_is_refused(capsys):
    assert main(["demo", "--observers", "0"]) == 2
    assert "eigdist demo: error: --observers must be >= 1, got 0" in capsys.readouterr().err


def test_xvfb_missing_is_explained(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"Xvfb is not installed .*apt-get install xvfb"):
        with start_xvfb():
            pass


def test_a_built_in_config_builds_by_name_into_stimuli_of_the_current_folder(monkeypatch, tmp_path, capsys):
    seen = {}

    def build_set(config, out, **kw):  # stands in for the build: records what it was given
        seen.update(text=Path(config).read_text(), out=out)
        raise FileExistsError("recorded")

    monkeypatch.setattr("eigdist_core.build.build_set", build_set)
    monkeypatch.chdir(tmp_path)
    assert main(["stimuli", "build", "demo_quick"]) == 2
    assert seen["out"] == str(Path("stimuli") / "demo_quick") and 'name = "demo_quick"' in seen["text"]
    assert main(["stimuli", "build", "dmeo"]) == 2
    assert "'dmeo' is neither a file nor a built-in stimulus-set config (demo, demo_quick, demo_color, demo_color_quick, demo_compare, seed)" in capsys.readouterr().err


@needs_xvfb
@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(5))
def test_the_demo_passes_on_a_fresh_account_in_a_lab_s_own_folder(tmp_path, attempt):
    """A new user's first run, five times: a fresh HOME (PsychoPy's per-user files made by the demo's sessions
    at once), in a folder holding a lab's analysis.py and experiments/ package (which eigdist must not import)."""
    (tmp_path / "analysis.py").write_text("raise SystemExit('the lab script ran')\n")
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "__init__.py").write_text("raise ImportError('the lab package was imported')\n")
    proc = demo(tmp_path / "out", timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "report:" in proc.stdout
