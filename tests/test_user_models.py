"""A lab's own models: ``python:`` factories, families registered by entry point, ``plenoptic:``, provenance.

``tests/lab/`` plays the lab: ``lab_model.py`` is a model file, and ``site/`` an
installed package (``eigdist_testlab`` with a real ``.dist-info/entry_points.txt``)
that registers the family ``testlab`` under the group ``eigdist.models``.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest
import torch

from eigdist_core import models
from eigdist_core.build import build_set
from eigdist_core.eigendistortion import Eigendistortion
from eigdist_core.io import load_json, sha256_file
from eigdist_core.models.external import ENTRY_POINT_GROUP, ExternalModel
from eigdist_core.models.provenance import provenance
from eigdist_core.stimulus_set import StimulusSet, schema_problems, verify_set

LAB = Path(__file__).resolve().parent / "lab"


@pytest.fixture
def lab(tmp_path, monkeypatch) -> Path:
    """A working folder holding the lab's model file, with the lab's package installed (on sys.path)."""
    shutil.copy(LAB / "lab_model.py", tmp_path / "lab_model.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(LAB / "site"))
    importlib.invalidate_caches()
    return tmp_path


# --- python:<file or module>:<factory> ---------------------------------------------------------

def test_python_file_factory_loads_frozen_and_wrapped(lab):
    model = models.load("python:lab_model.py:make")
    assert isinstance(model, ExternalModel) and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 2, 8, 8)
    assert models.default_weights("python:lab_model.py:make") == "factory"


def test_python_module_factory_by_dotted_name(lab):
    model = models.load("python:tests.lab.lab_model:make", "random:1")
    assert model(torch.rand(1, 1, 6, 6)).shape == (1, 2, 6, 6)


def test_python_random_weights_are_seeded_and_a_state_file_round_trips(lab):
    a, b = models.load("python:lab_model.py:make", "random:4"), models.load("python:lab_model.py:make", "random:4")
    x = torch.rand(1, 1, 8, 8)
    assert torch.equal(a(x), b(x))
    assert not torch.allclose(a(x), models.load("python:lab_model.py:make", "random:5")(x))
    torch.save(a.model.state_dict(), lab / "w.pt")
    assert torch.equal(models.load("python:lab_model.py:make", "w.pt")(x), a(x))


@pytest.mark.parametrize("spec, weights, error, message", [
    ("python:missing.py:make", "factory", FileNotFoundError,
     r"python:missing\.py:make \(file missing\.py, factory make\): no such file 'missing\.py'"),
    ("python:lab_model.py:build", "factory", ValueError,
     r"python:lab_model\.py:build \(file lab_model\.py, factory build\): lab_model\.py has no callable 'build'; "
     r"it has make, not_a_module"),
    ("python:lab_model.py:not_a_module", "factory", ValueError,
     r"factory not_a_module\): not_a_module\(\) must return a torch\.nn\.Module mapping \(N, C, H, W\) images "
     r"to one tensor; it returned a str"),
    ("python:no_such_package.models:make", "factory", ValueError,
     r"python:no_such_package\.models:make \(module no_such_package\.models, factory make\): cannot import module"),
    ("python:lab_model.py", "factory", ValueError,
     r"model spec 'python:lab_model\.py' must look like 'python:<path/to/file\.py or package\.module>:<factory>'"),
    ("python:lab_model.py:make", "imagenet", ValueError,
     r"weights 'imagenet' are not available for python:lab_model\.py:make; allowed: factory \| random:<seed> \| a file path"),
])
def test_python_errors_name_spec_file_and_factory(lab, spec, weights, error, message):
    with pytest.raises(error, match=message):
        models.load(spec, weights)


def test_python_model_that_does_not_return_one_tensor_per_image_is_named(lab):
    (lab / "bad_output.py").write_text(
        "import torch\n"
        "class Dict(torch.nn.Module):\n    def forward(self, x):\n        return {'out': x}\n"
        "class Flat(torch.nn.Module):\n    def forward(self, x):\n        return x.sum()\n"
    )
    with pytest.raises(ValueError, match=r"python:bad_output\.py:Dict \(file bad_output\.py, factory Dict\) must map "
                                         r"\(N, C, H, W\) images to one tensor; it returned a dict with keys \['out'\]"):
        Eigendistortion(torch.rand(1, 1, 4, 4), models.load("python:bad_output.py:Dict"))
    with pytest.raises(ValueError, match=r"factory Flat\) must return one response per image \(first dimension N = 1\); got shape \(\)"):
        models.load("python:bad_output.py:Flat")(torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"factory make\) takes \(N, C, H, W\) images; got shape \(16,\)"):
        models.load("python:lab_model.py:make")(torch.rand(16))


# --- families registered by entry point ----------------------------------------------------------

def test_entry_point_family_is_listed_loaded_with_its_default_weights(lab):
    from importlib.metadata import entry_points

    assert [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)] == ["testlab"]
    assert "testlab" in models.model_names()
    assert models.default_weights("testlab:3") == "random:0"
    model = models.load("testlab:3")
    assert model(torch.rand(1, 1, 8, 8)).shape == (1, 3, 8, 8)
    assert torch.equal(model(torch.ones(1, 1, 4, 4)), models.load("testlab:3", "random:0")(torch.ones(1, 1, 4, 4)))
    assert not model(torch.ones(1, 1, 4, 4)).eq(0).all()
    assert models.load("testlab:3", "zeros")(torch.ones(1, 1, 4, 4)).eq(0).all()


def test_entry_point_family_errors_come_from_the_family_and_name_the_entry_point(lab):
    with pytest.raises(ValueError, match="testlab takes weights random:<seed> or zeros, got 'imagenet'"):
        models.load("testlab:3", "imagenet")


def test_without_the_package_the_family_is_unknown():
    with pytest.raises(ValueError, match=r"unknown model 'testlab' in spec 'testlab:3'"):
        models.load("testlab:3")


# --- plenoptic:<ModelName> -------------------------------------------------------------------------

def test_plenoptic_family_matches_our_frontend_and_is_refused_in_colour():
    pytest.importorskip("plenoptic")
    image = torch.rand(1, 1, 18, 20, generator=torch.Generator().manual_seed(0))
    theirs, ours = models.load("plenoptic:OnOff"), models.load("frontend:onoff")
    with torch.no_grad():
        assert (theirs(image) - ours(image)).abs().max() < 1e-5
    with pytest.raises(ValueError, match=r"plenoptic:OnOff takes \(N, C, H, W\) images with C = 1"):
        theirs(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="unknown plenoptic model 'Onoff'; valid: LinearNonlinear, LuminanceGainControl, "
                                         "LuminanceContrastGainControl, OnOff"):
        models.load("plenoptic:Onoff")
    with pytest.raises(ValueError, match=r"weights 'random:0' are not available for plenoptic:OnOff; allowed: published"):
        models.load("plenoptic:OnOff", "random:0")


# --- provenance and a mixed stimulus set -----------------------------------------------------------

MIXED = """\
name = "mixed"
images = ["camera"]
color = "grey"
size = 16
directions = ["max", "min"]

[[models]]
spec = "resnet18:conv1"
weights = "random:0"

[[models]]
spec = "frontend:ln"
weights = "published"

[[models]]
spec = "python:lab_model.py:make"
weights = "random:2"

[[models]]
spec = "testlab:2"
weights = "random:1"
"""


def test_provenance_records_files_and_packages(lab):
    torch.save(models.load("python:lab_model.py:make", "random:0").model.state_dict(), lab / "w.pt")
    p = provenance("python:lab_model.py:make", "w.pt")
    assert p == {"spec": "python:lab_model.py:make", "weights": "w.pt", "weights_sha256": sha256_file(lab / "w.pt"),
                 "source": "lab_model.py", "source_sha256": sha256_file(lab / "lab_model.py"), "packages": {}}
    assert provenance("testlab:2", "random:1")["packages"] == {"eigdist-testlab": "0.1"}
    assert provenance("testlab:2", "random:1")["source"] == "eigdist_testlab:load"
    assert set(provenance("resnet18:conv1", "random:0")["packages"]) == {"torchvision"}


def test_a_set_mixing_torchvision_frontend_python_and_entry_point_models_builds_and_verifies(lab):
    (lab / "mixed.toml").write_text(MIXED)
    folder = build_set(lab / "mixed.toml", lab / "set", progress=False)
    assert verify_set(folder) == []
    manifest = load_json(folder / "manifest.json")
    assert schema_problems(manifest) == []
    assert [m["spec"] for m in manifest["models"]] == [
        "resnet18:conv1", "frontend:ln", "python:lab_model.py:make", "testlab:2"]
    assert manifest["models"][2]["source_sha256"] == sha256_file(lab / "lab_model.py")
    s = StimulusSet.open(folder)
    assert len(s.items) == 4 * 2
    assert {it["model"] for it in s.items} == {"resnet18", "frontend", "python", "testlab"}
    # editing the lab's model file makes it another set: the old folder is not silently reused
    (lab / "lab_model.py").write_text((lab / "lab_model.py").read_text() + "\n# edited\n")
    with pytest.raises(FileExistsError, match="built from another config or other package versions"):
        build_set(lab / "mixed.toml", folder, progress=False)
