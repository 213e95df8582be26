"""Models eigdist refuses, by one rule (eigdist_core/validate.py) in synth, build and the simulated observer.

Each model is a lab's ``python:`` file, run through the command line as a lab would: refused with one line
that names the model and the image, before any file is written.
"""

from __future__ import annotations

import re

import pytest
import torch

from eigdist.cli.main import main
from eigdist_core.errors import EigdistError
from tests.build_fixtures import stimulus_set  # noqa: F401 (fixture: a built 1-image grey set)
from tests.nets import BAD_MODELS as MODELS
from tests.profiles import make_profile
from tests.trial_fixtures import set_config_toml



@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A working folder holding the lab's models (``python:bad_models.py:<factory>``)."""
    (tmp_path / "bad_models.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def synth(capsys, factory: str, out) -> tuple[int, str]:
    code = main(["synth", "--model", f"python:bad_models.py:{factory}", "--image", "camera", "--size", "16",
                 "--out", str(out)])
    return code, capsys.readouterr().err


def refused_build(capsys, lab, factory: str) -> str:
    """The one-line error of ``eigdist stimuli build`` with ``factory``'s model, after checking it exits 2."""
    config = set_config_toml("bad", "camera", "grey").replace('"resnet18:conv1"', f'"python:bad_models.py:{factory}"')
    (lab / "bad.toml").write_text(config.replace('"random:0"', '"factory"'))
    code = main(["stimuli", "build", str(lab / "bad.toml"), "--out", str(lab / "set"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err


SYNTH_CASES = {
    "dead": r"model response does not change with the image here \(Fisher matrix 0, e.g. a dead ReLU layer\)",
    "dropout": r"model is not deterministic: two calls on the same image differ by up to .*turn off dropout",
    "growing": r"model output size changes between calls on the same image \(\(1, 101\), then \(1, 102\)\)",
    "nan_out": r"model response must be finite; it has NaN or infinite values \(512 of 512\)",
    "nan_grad": r"model gradient at the image is not finite \(NaN or inf at \d+ of 256 pixels\)",
}


@pytest.mark.parametrize("factory", list(SYNTH_CASES))
def test_synth_refuses_the_model_naming_it_and_the_image(lab, capsys, factory):
    code, err = synth(capsys, factory, lab / "out")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"eigdist synth: error: --model python:bad_models.py:{factory} (factory) at "
                               "--image camera (16 px): ")
    assert re.search(SYNTH_CASES[factory], lines[0]), lines[0]
    assert not (lab / "out" / "eigendistortion.json").exists()


@pytest.mark.parametrize("factory, message", [
    ("dropout", "model is not deterministic"),
    ("growing", r"model output size changes between calls"),
    ("nan_out", "model response must be finite"),
])
def test_build_refuses_before_writing_a_model_that_is_no_function_of_the_image(lab, capsys, factory, message):
    err = refused_build(capsys, lab, factory)
    assert f"models[0] (python:bad_models.py:{factory}, weights factory) on a mid-grey 16 × 16 image: " in err
    assert re.search(message, err)
    assert not (lab / "set").exists()


@pytest.mark.parametrize("factory, message", [
    ("dead", "model response does not change with the image here (Fisher matrix 0"),
    ("nan_grad", "model gradient at the image is not finite"),
])
def test_build_refuses_the_item_of_a_zero_or_nan_fisher_matrix_naming_image_and_model(lab, capsys, factory, message):
    """Finite and deterministic on the mid-grey probe, so found at the image: no item file is written."""
    err = refused_build(capsys, lab, factory)
    assert f"image 'camera', model python:bad_models.py:{factory} (factory): {message}" in err
    assert not list((lab / "set" / "items").glob("*.npy")) if (lab / "set" / "items").exists() else True


def test_the_simulated_observer_refuses_the_model_a_build_refuses(lab, stimulus_set):  # noqa: F811
    from eigdist_core.stimulus_set import StimulusSet
    from experiments.observers import make_responder

    source = StimulusSet.open(stimulus_set)
    with pytest.raises(EigdistError, match=r"^--simulate model=python:bad_models.py:nan_out at image 'camera': "
                                           r"model response must be finite"):
        make_responder("model=python:bad_models.py:nan_out;noise=0.1", source=source)
    with pytest.raises(EigdistError, match=r"^--simulate model=python:bad_models.py:dropout at image 'camera': "
                                           r"model is not deterministic"):
        make_responder("model=python:bad_models.py:dropout", source=source)
    make_responder("model=resnet18:conv1;weights=random:0", source=source)  # a good model passes


def test_run_with_a_simulated_nan_model_is_refused_before_any_file(lab, stimulus_set, capsys):  # noqa: F811
    from experiments.monitor import save_profile

    save_profile(make_profile(name="xvfb"), lab / "monitors")
    code = main(["run", "--stimuli", str(stimulus_set), "--monitor", "xvfb", "--monitors", str(lab / "monitors"),
                 "--data", str(lab / "data"), "--participant", "P01",
                 "--simulate", "model=python:bad_models.py:nan_out;noise=0.1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert ("eigdist run: error: --simulate model=python:bad_models.py:nan_out at image 'camera': model response "
            "must be finite") in err
    assert not (lab / "data").exists()


def test_the_check_leaves_the_global_random_generator_and_a_good_model_alone():
    from eigdist_core.validate import validate_model

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Dropout(0.5)).eval()
    image = torch.rand(1, 1, 8, 8)
    state = torch.random.get_rng_state()
    validate_model(model, image)
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(EigdistError, match="model is not deterministic"):
        validate_model(model.train(), image)  # dropout draws from the global generator: it comes back
    assert torch.equal(torch.random.get_rng_state(), state)
