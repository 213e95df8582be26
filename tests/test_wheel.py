"""The main command works from a wheel: build it, install it into a fresh venv outside the checkout, and run
``eigdist demo --quick`` from an empty folder (pytest puts the checkout on the path; this test cannot see it).

The fresh venv borrows the dependencies (torch, PsychoPy, …) from the running environment through a ``.pth``
line naming its site-packages: a plain path line, so the ``.pth`` files in there (the editable install of
this checkout) are not processed and only the wheel provides eigdist. The test checks that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("eigdist", "eigdist_core", "experiments", "analysis")


def run(args: list, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> tuple[Path, dict]:
    """A venv holding only the eigdist wheel (dependencies borrowed), and an environment without the checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    start = time.perf_counter()
    # Built from a copy of what the wheel takes: setuptools' build/ folder in the checkout keeps deleted modules.
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    for name in PACKAGES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", src],
        cwd=tmp)
    wheel = next((tmp / "dist").glob("eigdist-*.whl"))
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    # --ignore-installed: pip (run from this environment) sees the editable install and must neither skip nor
    # touch it; installed before the dependencies are borrowed.
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index",
         "--ignore-installed", wheel])
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DISPLAY", "EIGDIST_MONITORS")}
    env.update(HOME=str(tmp / "home"), XDG_DATA_HOME=str(tmp / "home" / "data"), PATH=f"{venv / 'bin'}:{env['PATH']}")
    print(f"wheel built and installed in {time.perf_counter() - start:.1f} s")
    return venv, env


def test_wheel_holds_the_four_packages_and_their_data(wheel_venv):
    venv, _ = wheel_venv
    names = zipfile.ZipFile(next((venv.parent / "dist").glob("eigdist-*.whl"))).namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == set(PACKAGES)
    for data in ("eigdist/configs/demo_quick.toml", "eigdist/configs/demo.toml", "experiments/noticeability.toml",
                 "experiments/monitors/example.json", "eigdist_core/manifest.schema.json",
                 "eigdist/templates/stimuli.toml", "eigdist/templates/README.md"):
        assert data in names


def test_wheel_installs_the_packages_outside_the_checkout(wheel_venv, tmp_path):
    venv, env = wheel_venv
    code = f"import importlib\nfor name in {PACKAGES!r}:\n    print(importlib.import_module(name).__file__)"
    files = run([venv / "bin" / "python", "-c", code], cwd=tmp_path, env=env).stdout.split()
    assert len(files) == len(PACKAGES) and all(Path(f).is_relative_to(venv) for f in files), files
    version = run([venv / "bin" / "eigdist", "--version"], cwd=tmp_path, env=env).stdout
    from eigdist import __version__

    assert version.strip() == f"eigdist {__version__}"
    run([venv / "bin" / "eigdist", "init", "study"], cwd=tmp_path, env=env)
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == ["README.md", "experiment.toml", "images",
                                                                     "stimuli.toml"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed")
def test_quick_demo_runs_from_the_wheel_in_an_empty_folder(wheel_venv, tmp_path):
    venv, env = wheel_venv
    work = tmp_path / "empty"
    work.mkdir()
    start = time.perf_counter()
    proc = subprocess.run([venv / "bin" / "eigdist", "demo", "--quick"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=900)
    print(f"eigdist demo --quick from the wheel: {time.perf_counter() - start:.0f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = work / "out" / "demo" / "analysis" / "report.html"
    assert report.is_file() and f"report: {report.resolve()}" in proc.stdout
    assert "<- the observers' own model" in proc.stdout
    # A quiet terminal: stages, progress bars and the ranking, nothing foreign.
    assert "Warning" not in proc.stdout + proc.stderr and "warn(" not in proc.stderr, proc.stderr[-3000:]
    assert not any(venv.rglob("simulated.json")), "a profile was written into the installed package"
