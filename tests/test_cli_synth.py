"""``eigdist synth`` end to end, offline, on tiny images (exact solver)."""

import json
import re

import numpy as np
import pytest

from eigdist.cli.main import main
from eigdist_core.io import load_json


@pytest.mark.parametrize(
    "model, extra, shape",
    [("frontend:onoff", ["--grey"], (2, 1, 16, 16)), ("efficientnet_lite0:_blocks.1", [], (2, 3, 16, 16))],
)
def test_synth_writes_arrays_figure_and_prints_diagnostics(tmp_path, capsys, model, extra, shape):
    out = tmp_path / "out"
    argv = ["synth", "--model", model, "--image", "chelsea", "--size", "16", "--method", "exact", "--out", str(out)]
    assert main(argv + extra) == 0
    dist = np.load(out / "eigendistortions.npy")
    assert dist.shape == shape
    assert np.allclose(np.linalg.norm(dist.reshape(2, -1), axis=1), 1, atol=1e-5)
    meta = load_json(out / "eigendistortion.json")
    lam_max, lam_min = meta["eigenvalues"]
    assert lam_max > 0 and -1e-6 * lam_max <= lam_min <= lam_max  # the min may be a rounding-level null direction
    assert (out / "eigendistortions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    diagnostics = json.loads(printed[: printed.rindex("}") + 1])
    assert diagnostics["method"] == "exact" and len(diagnostics["vectors"]) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "frontend"], "model spec must look like '<model>:<layer>'"),
        (["--model", "frontend:onoff"], r"frontend:onoff takes \(N, C, H, W\) images with C = 1; got shape \(1, 3, 16, 16\)"),
        (["--model", "frontend:onoff", "--weights", "bundled", "--grey"], "weights 'bundled' are not available for frontend"),
        (["--model", "efficientnet_lite0:nope"], "unknown node 'nope' of efficientnet_lite0"),
    ],
)
def test_synth_user_errors_exit_2_naming_the_bad_value(tmp_path, capsys, argv, message):
    base = ["synth", "--image", "chelsea", "--size", "16", "--method", "exact", "--out", str(tmp_path / "o")]
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("eigdist synth: error: ")
    assert re.search(message, err)
