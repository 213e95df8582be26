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


@pytest.mark.parametrize("kind, specs, rows", [
    ("generalized", ["frontend:ln", "frontend:onoff"], 2),
    ("principal", ["frontend:ln", "frontend:lg", "frontend:onoff"], 2),
])
def test_synth_kinds_that_compare_layers_write_arrays_json_and_figure(tmp_path, capsys, kind, specs, rows):
    out = tmp_path / "out"
    argv = ["synth", "--kind", kind, "--image", "camera", "--size", "16", "--grey", "--method", "exact",
            "--out", str(out)]
    for spec in specs:
        argv += ["--model", spec]
    assert main(argv) == 0
    dist = np.load(out / "eigendistortions.npy")
    assert dist.shape == (rows, 1, 16, 16)
    assert np.allclose(np.linalg.norm(dist.reshape(rows, -1), axis=1), 1, atol=1e-5)
    meta = load_json(out / "eigendistortion.json")
    assert meta["kind"] == kind and meta["models"] == specs and meta["method"] == "exact"
    assert meta["regularization"]["rule"] == "F + epsilon * lambda_max(F) * I"
    if kind == "generalized":
        assert meta["eigenvalues"][0] >= meta["eigenvalues"][1] > 0
    else:
        assert meta["objective"] > 0 and len(meta["log_sensitivities"]) == 3
    assert (out / "eigendistortions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert json.loads(printed[: printed.rindex("}") + 1])["method"] == "exact"


@pytest.mark.parametrize("kind, specs, message", [
    ("generalized", ["frontend:ln"], r"--kind generalized takes exactly two \(A then B\) --model; got 1"),
    ("generalized", ["frontend:ln", "frontend:lg", "frontend:lgg"], "takes exactly two .* got 3"),
    ("principal", ["frontend:ln"], r"--kind principal takes two or more --model; got 1"),
    ("eigen", ["frontend:ln", "frontend:lg"], r"--kind eigen takes exactly one --model; got 2"),
    ("principal", ["frontend:ln", "frontend:lg", "frontend:ln"],
     r"--model frontend:ln is given twice: a layer cannot be compared with itself"),
    ("generalized", ["efficientnet_lite0:_blocks.1", "frontend:ln"],  # RGB for the network, grey for frontend
     r"layer 1 cannot take the image of shape \(1, 3, 16, 16\) \(all layers of a comparison see the same image\)"),
])
def test_synth_bad_layer_lists_exit_2_with_one_line(tmp_path, capsys, kind, specs, message):
    grey = [] if "efficientnet_lite0:_blocks.1" in specs else ["--grey"]
    argv = ["synth", "--kind", kind, "--image", "chelsea", "--size", "16", *grey, "--out", str(tmp_path / "o")]
    for spec in specs:
        argv += ["--model", spec]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("eigdist synth: error: ") and err.count("\n") == 1
    assert re.search(message, err)
