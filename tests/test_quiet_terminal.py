"""A quiet terminal: no third-party warnings, an unconverged solver reported once (build.log, manifest, summary)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

from eigdist.cli.main import main
from eigdist_core.build import build_notes, build_set
from eigdist_core.io import load_json

ROOT = Path(__file__).resolve().parents[1]


def test_first_forward_mode_product_prints_no_torch_jit_warning():
    # A fresh interpreter: torch loads its jvp decompositions (and warns) only on the first use.
    code = ("import torch\nfrom eigdist_core import models\nfrom eigdist_core.fisher import FisherOperator\n"
            "op = FisherOperator(models.load('frontend:ln', weights='published'), torch.rand(1, 1, 16, 16))\n"
            "print((op @ torch.rand(256)).shape)\n")
    proc = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]


def test_unconverged_items_are_noted_once_not_warned_per_item(tmp_path, capsys):
    config = tmp_path / "cfg.toml"
    config.write_text('name = "tiny"\nimages = ["camera"]\nsize = 16\nsolver = "lobpcg"\nmax_iter = 1\n'
                      'directions = ["max", "min"]\n[[models]]\nspec = "frontend:onoff"\nweights = "published"\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = build_set(config, tmp_path / "tiny", progress=False)
    assert not [w for w in caught if "did not reach tol" in str(w.message)]
    manifest = load_json(folder / "manifest.json")
    bad = [i for i in manifest["items"] if not i["converged"]]
    assert bad, "max_iter = 1 must leave an item unconverged, or this test checks nothing"
    (note,) = build_notes(manifest)
    assert note.startswith(f"{len(bad)} of 2 items did not reach tol=0.0001 (largest residual ")
    assert (folder / "build.log").read_text().count("did not reach tol") == 1
    capsys.readouterr()
    assert main(["stimuli", "build", str(config), "--out", str(tmp_path / "tiny"), "--quiet"]) == 0
    out = capsys.readouterr()
    assert f"note: {note}" in out.out and "did not reach" not in out.err


def test_a_converged_set_on_one_device_has_no_note():
    assert build_notes({"items": [{"converged": True, "residual": 1e-9, "device": "cpu"}] * 2,
                        "config": {"tol": 1e-4}}) == []


def test_the_note_advises_more_iterations_only_to_items_that_used_them_all():
    config = {"tol": 1e-4, "max_iter": 100}
    capped = {"converged": False, "residual": 2e-4, "iterations": 100, "device": "cpu"}
    early = {"converged": False, "residual": 3e-4, "iterations": 40, "device": "cpu"}
    (note,) = build_notes({"items": [capped], "config": config})
    assert note.endswith("in manifest.json); raise max_iter to go further")
    (note,) = build_notes({"items": [capped, early], "config": config})
    assert note.startswith("2 of 2 items did not reach tol=0.0001 (largest residual 3.00e-04;")
    assert note.endswith("raise max_iter to go further; 1 stopped before max_iter, where more iterations would not "
                         "help: a looser tol, or the exact solver for small images")
    (note,) = build_notes({"items": [early], "config": config})
    assert "raise max_iter" not in note and "1 stopped before max_iter" in note


def test_a_set_computed_on_two_kinds_of_device_says_so():
    items = [{"converged": True, "residual": 1e-9, "device": "cpu"}] * 3 + [
        {"converged": True, "residual": 1e-9, "device": "cuda: NVIDIA H200"}]
    (note,) = build_notes({"items": items, "config": {"tol": 1e-4}})
    assert note.startswith("items were computed on 2 kinds of device (cpu: 3, cuda: NVIDIA H200: 1)")
