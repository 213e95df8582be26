"""Build configs: defaults, folders of images, and every bad input named by its key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eigdist_core.build import build_set
from eigdist_core.build_plan import plan
from eigdist_core.build_inputs import check_inputs
from eigdist_core.config import load_config

GOOD = {
    "name": '"cfg"',
    "images": '["camera"]',
    "size": "16",
}
MODEL = '[[models]]\nspec = "resnet18:conv1"\nweights = "random:0"\n'


def write(folder: Path, models: str = MODEL, **keys: str) -> Path:
    table = {**GOOD, **keys}
    lines = [f"{k} = {v}" for k, v in table.items() if v is not None]
    path = folder / "cfg.toml"
    path.write_text("\n".join(lines) + "\n\n" + models)
    return path


def test_defaults_and_canonical_direction_order(tmp_path):
    config, base = load_config(write(tmp_path, directions='["random", "max", "min"]'))
    assert base == tmp_path
    assert config.directions == ("max", "min", "random")
    assert config.color == "grey" and config.channels == 1 and config.value_range == (0.2, 0.8)
    assert [g.item_ids for g in plan(config)] == [(
        "camera__resnet18__conv1__random-0__max0",
        "camera__resnet18__conv1__random-0__min0",
        "camera__resnet18__conv1__random-0__random0",
    )]


def test_image_folder_is_expanded_relative_to_the_config(tmp_path):
    from skimage.io import imsave

    (tmp_path / "pics").mkdir()
    for name in ("b", "a"):
        imsave(tmp_path / "pics" / f"{name}.png", (np.random.default_rng(0).random((20, 24)) * 255).astype(np.uint8))
    config, base = load_config(write(tmp_path, images='["pics", "camera"]'))
    assert config.images == ("pics/a.png", "pics/b.png", "camera")
    images = check_inputs(config, base)
    assert sorted(images) == ["a", "b", "camera"]
    assert images["a"].shape == (1, 16, 16) and images["a"].dtype == np.float32
    assert images["a"].min() >= 0.2 and images["a"].max() <= 0.8


@pytest.mark.parametrize("keys,message", [
    ({"name": None}, "name: missing"),
    ({"colour": '"grey"'}, "unknown key 'colour'; allowed: alpha_max, color, "),
    ({"color": '"sepia"'}, "color must be one of 'grey', 'gray', 'rgb', got 'sepia'"),
    ({"value_range": "[0.8, 0.2]"}, r"value_range: value_range must satisfy 0 <= low < high <= 1, got \[0.8, 0.2\]"),
    ({"value_range": "[-0.1, 0.9]"}, r"value_range: .*got \[-0.1, 0.9\]"),
    ({"directions": '["max", "sideways"]'}, "directions: must be a non-empty list drawn from max, min, random; got"),
    ({"solver": '"magic"'}, "solver must be one of 'auto', 'exact', 'lanczos', 'lobpcg', 'power', got 'magic'"),
    ({"alpha_max": "-1"}, "alpha_max must be a number > 0, got -1"),
    ({"k": "1.5"}, "k must be an int > 0, got 1.5"),
    ({"images": '["camera", "no_such_photo.png"]'}, r"images\[1\]: 'no_such_photo.png' is neither a file, a folder nor a built-in name"),
    ({"images": '["camera", "camera"]'}, "images: two images have the id 'camera'"),
    ({"name": '"my set"'}, "name: must be a non-empty string of letters"),
    ({"response_points": "2"}, "response_points must be an int >= 3, got 2"),
    ({"diagonal_probes": "-4"}, "diagonal_probes must be an int >= 0, got -4"),
    ({"diagonal_probes": "1"}, r"diagonal_probes must be 0 \(no preconditioner\) or >= 2 .*got 1"),
])
def test_bad_config_keys_are_named(tmp_path, keys, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_config(write(tmp_path, **keys))


@pytest.mark.parametrize("models,message", [
    ("", "models: missing"),
    ('[[models]]\nspec = "resnet18"\nweights = "random:0"\n', r"models\[0\].spec: model spec must look like '<model>:<layer>'"),
    ('[[models]]\nspec = "resnet18:conv1"\n', r"models\[0\].weights: missing"),
    ('[[models]]\nspec = "resnet18:conv1"\nweights = "random:0"\nlayer = "x"\n', r"unknown key 'models\[0\].layer'; allowed: spec, weights"),
])
def test_bad_model_tables_are_named(tmp_path, models, message):
    with pytest.raises(ValueError, match=message):
        load_config(write(tmp_path, models=models))


@pytest.mark.parametrize("spec,weights,error,message", [
    ("resnet99:conv1", "random:0", ValueError, r"models\[0\] \(resnet99:conv1, weights random:0\): unknown model 'resnet99'"),
    ("resnet18:layer9", "random:0", ValueError, r"models\[0\] \(resnet18:layer9, weights random:0\): unknown node 'layer9'"),
    ("resnet18:conv1", "nowhere.pt", FileNotFoundError, r"models\[0\].weights \('nowhere.pt'\)"),
])
def test_unknown_models_nodes_and_weights_are_named_before_any_work(tmp_path, spec, weights, error, message):
    config = write(tmp_path, models=f'[[models]]\nspec = "{spec}"\nweights = "{weights}"\n')
    with pytest.raises(error, match=message):
        build_set(config, tmp_path / "set", progress=False)
    assert not list((tmp_path / "set").glob("items/*"))


def test_missing_config_and_bad_toml(tmp_path):
    with pytest.raises(FileNotFoundError, match="stimulus-set config '.*nope.toml' does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ValueError, match="bad.toml: not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize("name", ["demo", "seed"])
def test_shipped_configs_parse(name):
    from eigdist.configs import built_in_config

    with built_in_config(name) as path:
        config, _ = load_config(path)
    assert config.name == name and config.channels == 1 and config.size == 64 and config.k == 1


def test_unknown_built_in_config_lists_the_built_in_ones():
    from eigdist.configs import built_in_config
    from eigdist_core.errors import EigdistError

    with pytest.raises(EigdistError, match=r"'dmeo' is neither a file nor a built-in stimulus-set config \(demo, demo_quick, demo_color, demo_color_quick, demo_compare, seed\)"):
        with built_in_config("dmeo"):
            pass


def test_seed_set_says_where_the_imagenet_weights_go(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    from eigdist.configs import built_in_config

    with pytest.raises(FileNotFoundError, match=r"models\[0\].weights \('imagenet'\): .*put resnet18-f37072fd.pth .* into .*hub/checkpoints"), \
            built_in_config("seed") as path:
        build_set(path, tmp_path / "seed", progress=False)


@pytest.mark.parametrize("probes", [None, "0", "8"])
def test_diagonal_probes_reach_the_solver(tmp_path, monkeypatch, probes):
    from eigdist_core.eigendistortion import Eigendistortion

    seen = []
    real = Eigendistortion.synthesize

    def spy(self, **kwargs):
        seen.append(kwargs["diagonal_probes"])
        return real(self, **kwargs)

    monkeypatch.setattr(Eigendistortion, "synthesize", spy)
    config = write(tmp_path, diagonal_probes=probes)
    assert load_config(config)[0].diagonal_probes == (32 if probes is None else int(probes))
    build_set(config, tmp_path / "set", progress=False)
    assert seen == [32 if probes is None else int(probes)]
