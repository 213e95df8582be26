"""docs/tutorial.py runs (``--quick``) as CI runs it: a subprocess, its checks printed true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tutorial_runs_quick_and_its_checks_hold(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "tutorial.py"), "--quick", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for check in ("Jacobian == weight matrix M: True", "same max eigendistortion: True", "Jacobian at x1 == M: True",
                  "degenerate (the min is one of many null directions): True"):
        assert check in out
    header, best = out.split("ranking:\n", 1)[1].splitlines()[:2]
    assert header.split()[:2] == ["model", "layer"]
    assert best.split()[1] == "_blocks.1" and best.split()[5] == "1"  # the observers' layer ranks first
    for name in ("linear.png", "camera__blocks.1.png", "chelsea__blocks.4.png", "analysis/report.html"):
        assert (tmp_path / name).is_file()
