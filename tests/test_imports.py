"""The import direction of the pipeline: experiments, analysis → eigdist_core; never analysis → experiments."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Packages each package must not import (docs/formats.md: the stages talk through files).
FORBIDDEN = {"analysis": ("experiments",), "eigdist_core": ("experiments", "analysis")}



def imported(path: Path) -> set[str]:
    """The top-level packages a module imports (relative imports stay inside its package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package):
    offenders = {str(p.relative_to(ROOT)): sorted(imported(p) & set(FORBIDDEN[package]))
                 for p in sorted((ROOT / package).rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_an_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from experiments.design import conditions\n")
    assert "experiments" in imported(module)


# ---------------------------------------------------------------- any working folder

def _in_lab_folder(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """``python ARGS`` in a lab's own folder, with eigdist importable as the tests set it up (PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def test_python_m_eigdist_ignores_a_lab_s_analysis_py(tmp_path):
    (tmp_path / "analysis.py").write_text("print('LAB SCRIPT RAN')\nraise SystemExit(7)\n")
    proc = _in_lab_folder(tmp_path, "-m", "eigdist", "analyze", "nowhere", "--out", "out")
    assert "LAB SCRIPT RAN" not in proc.stdout and proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("eigdist analyze: error:") and "nowhere" in proc.stderr


def test_python_m_eigdist_ignores_a_lab_s_experiments_package(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "__init__.py").write_text("")
    proc = _in_lab_folder(tmp_path, "-m", "eigdist", "run", "--stimuli", "nowhere", "--monitor", "m",
                          "--participant", "P01", "--simulate", "weibull")
    assert proc.returncode == 2 and "No module named" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("eigdist run: error:"), proc.stderr


def test_a_lab_script_named_like_a_package_is_named(tmp_path):
    (tmp_path / "analysis.py").write_text("import eigdist\n")
    proc = _in_lab_folder(tmp_path, "analysis.py")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == (f"ImportError: {tmp_path / 'analysis.py'} hides eigdist's package "
                                            "'analysis' (it comes first on sys.path); rename it, or run from another folder")


def test_the_demo_starts_sessions_on_an_isolated_path():
    """The demo's sessions run as ``python -P -m eigdist run``: a lab's experiments/ cannot replace eigdist's."""
    import eigdist.cli.demo as demo

    source = Path(demo.__file__).read_text()
    assert '[sys.executable, "-P", "-m", "eigdist", "run"' in source
