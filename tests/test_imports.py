"""The import direction of the pipeline: experiments, analysis → eigdist_core; never analysis → experiments."""

import ast
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
