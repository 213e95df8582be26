"""The stimulus-set format: ids, reader, schema and verify, on a set written by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from eigdist_core.io import save_npy
from eigdist_core.stimulus_set import (
    StimulusSet,
    alpha_displayable,
    SetError,
    compute_build_id,
    compute_set_id,
    item_id_for,
    schema_problems,
    verify_set,
    write_manifest,
)
from tests.build_fixtures import make_tiny_set


@pytest.fixture
def tiny(tmp_path) -> Path:
    make_tiny_set(tmp_path)
    return tmp_path


def test_item_id_replaces_unsafe_characters():
    assert item_id_for("camera", "efficientnet_lite0", "_blocks.4", "random:0", "min", 0) == (
        "camera__efficientnet_lite0___blocks.4__random-0__min0"
    )
    assert item_id_for("a b", "m", "l/x", "/w/file.pt", "random", 2) == "a-b__m__l-x__-w-file.pt__random2"


@pytest.mark.parametrize("direction,index,message", [
    ("sideways", 0, "direction must be one of max, min, random, gen_top, gen_bottom, principal_a, principal_b; got"),
    ("max", -1, "index must be an int >= 0"),
])
def test_item_id_rejects_bad_parts(direction, index, message):
    with pytest.raises(ValueError, match=message):
        item_id_for("a", "m", "l", "w", direction, index)


def test_build_id_depends_on_config_and_versions():
    v = {"python": "3", "torch": "2", "eigdist": "0"}
    a = compute_build_id({"seed": 0}, v)
    assert len(a) == 16 and int(a, 16) >= 0
    assert a == compute_build_id({"seed": 0}, dict(v))
    assert a != compute_build_id({"seed": 1}, v)
    assert a != compute_build_id({"seed": 0}, {**v, "torch": "3"})


def test_set_id_covers_every_field_but_its_own_digests_and_created(tiny):
    m = StimulusSet.open(tiny).manifest
    assert m["set_id"] == compute_set_id(m)
    assert compute_set_id({**m, "created": "2030-01-01T00:00:00+00:00", "set_id": "0" * 16, "digests": {}}) == m["set_id"]
    for key in ("alpha_max", "value_range", "complete", "images", "items", "config", "build_id", "name"):
        assert compute_set_id({**m, key: None}) != m["set_id"], key


def test_alpha_displayable_closed_form():
    image = np.array([0.2, 0.5, 0.9])
    e = np.array([0.5, -0.5, 0.1])
    # pixel 0: room 0.2 / 0.5 = 0.4; pixel 1: 0.5 / 0.5 = 1; pixel 2: 0.1 / 0.1 = 1
    assert alpha_displayable(image, e) == pytest.approx(0.4)
    assert alpha_displayable(image, np.zeros(3)) == math.inf
    assert alpha_displayable(np.array([0.0, 0.5]), np.array([0.1, 0.0])) == 0.0


def test_reader_gives_manifest_arrays_and_ids(tiny):
    sset = StimulusSet.open(tiny)
    assert sset.path == tiny and len(sset.set_id) == 16
    assert [im["image_id"] for im in sset.images] == ["img"]
    assert [it["direction"] for it in sset.items] == ["max", "min", "random"]
    image = sset.image("img")
    assert image.dtype == np.float32 and image.shape == (1, 4, 4)
    item = sset.item(sset.items[0]["item_id"])
    assert item.dtype == np.float32 and item.shape == (1, 4, 4)
    assert np.linalg.norm(item) == pytest.approx(1.0, abs=1e-6)


def test_reader_names_unknown_ids_and_missing_sets(tiny, tmp_path):
    sset = StimulusSet.open(tiny)
    with pytest.raises(KeyError, match="no item 'nope' in this set"):
        sset.item("nope")
    with pytest.raises(FileNotFoundError, match="is not a stimulus set"):
        StimulusSet.open(tmp_path / "empty")


def test_tiny_set_verifies_and_matches_schema(tiny):
    assert verify_set(tiny) == []
    assert schema_problems(StimulusSet.open(tiny).manifest) == []


def test_flipped_byte_in_any_file_is_named(tiny):
    files = sorted(p.relative_to(tiny).as_posix() for p in tiny.rglob("*.npy"))
    assert len(files) == 4
    for name in files:
        path = tiny / name
        data = bytearray(path.read_bytes())
        data[-1] ^= 0x01
        path.write_bytes(bytes(data))
        problems = verify_set(tiny)
        # the sha256 first, then whatever else the flip broke in that file, and nothing about the others
        assert problems[0].startswith(f"{name}: sha256") and all(p.startswith(f"{name}: ") for p in problems), problems
        data[-1] ^= 0x01
        path.write_bytes(bytes(data))
    manifest = tiny / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"max"', b'"mux"', 1))
    problems = verify_set(tiny)
    assert problems and all(p.startswith("manifest.json: ") for p in problems)
    assert any("'mux' is not one of" in p for p in problems)


def test_verify_names_every_content_problem(tiny):
    m = StimulusSet.open(tiny).manifest
    bad = np.full((1, 4, 4), 0.5, dtype=np.float32)  # norm 2, and equal to nothing else
    m["items"][0]["sha256"] = save_npy(tiny / m["items"][0]["file"], bad)
    m["items"][1]["alpha_displayable_max"] = 5.0
    m["images"][0]["sha256"] = save_npy(tiny / "images/img.npy", np.full((1, 4, 4), 0.9, dtype=np.float32))
    m["complete"] = False
    m["config"]["seed"] = 1  # the manifest no longer matches its build_id
    write_manifest(tiny, m)
    problems = "\n".join(verify_set(tiny))
    assert f"{m['items'][0]['file']}: L2 norm is 2" in problems
    assert "images/img.npy: values [0.9, 0.9] leave value_range [0.2, 0.8]" in problems
    assert f"{m['items'][1]['file']}: alpha_displayable_max is 5 in the manifest" in problems
    assert "complete = false" in problems
    assert f"manifest.json: build_id {m['build_id']!r} does not match its config, versions and models" in problems


def test_verify_catches_max_equal_to_min(tiny):
    m = StimulusSet.open(tiny).manifest
    max_vec = StimulusSet.open(tiny).item(m["items"][0]["item_id"])
    m["items"][1]["sha256"] = save_npy(tiny / m["items"][1]["file"], max_vec)
    m["items"][1]["alpha_displayable_max"] = m["items"][0]["alpha_displayable_max"]
    write_manifest(tiny, m)
    problems = verify_set(tiny)
    assert len(problems) == 1 and "the min direction is the max direction" in problems[0]
    assert problems[0].startswith(m["items"][1]["file"])


def test_verify_names_nonfinite_and_missing_files(tiny):
    m = StimulusSet.open(tiny).manifest
    nan = np.full((1, 4, 4), np.nan, dtype=np.float32)
    m["items"][2]["sha256"] = save_npy(tiny / m["items"][2]["file"], nan)
    write_manifest(tiny, m)
    (tiny / m["items"][0]["file"]).unlink()
    problems = verify_set(tiny)
    assert f"{m['items'][0]['file']}: missing" in problems
    assert f"{m['items'][2]['file']}: 16 NaN or infinite values" in problems


def test_reader_names_a_broken_or_foreign_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(SetError, match="manifest.json: not valid JSON"):
        StimulusSet.open(tmp_path)
    assert verify_set(tmp_path) == ["manifest.json: not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"]
    (tmp_path / "manifest.json").write_text('{"schema_version": 7}')
    with pytest.raises(SetError, match="schema_version must be 2, got 7"):
        StimulusSet.open(tmp_path)
    (tmp_path / "manifest.json").write_text('{"schema_version": 1}')
    assert "built by an older eigdist: build it again" in verify_set(tmp_path)[0]


def _hand_edit(folder: Path, edit) -> None:
    """Change manifest.json as a text editor would: load, edit, dump (no resealing)."""
    import json

    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m, indent=1))


@pytest.mark.parametrize("edit,named", [
    (lambda m: m.update(alpha_max=0.4), "alpha_max was edited"),
    (lambda m: m["items"][0].update(eigenvalue=m["items"][0]["eigenvalue"] * 1000),
     "items[img__net__conv.1__random-0__max0].eigenvalue was edited"),
    (lambda m: m["items"][2]["response_curve"].update(distance=[0.0, 0.0]),
     "items[img__net__conv.1__random-0__random0].response_curve was edited"),
    (lambda m: m.update(items=[it for it in m["items"] if it["direction"] != "min"]),
     "items[img__net__conv.1__random-0__min0] was removed"),
    (lambda m: m["config"].update(seed=5), "config.seed was edited"),
    (lambda m: m.update(set_id="0123456789abcdef"), "set_id '0123456789abcdef' does not match the manifest's content"),
])
def test_hand_edits_of_the_manifest_are_named_by_verify_and_refused_by_open(tiny, edit, named):
    _hand_edit(tiny, edit)
    problems = verify_set(tiny)
    assert any(p.startswith(f"manifest.json: {named}") for p in problems), problems
    with pytest.raises(SetError, match="was changed after it was built") as err:
        StimulusSet.open(tiny)
    assert named in str(err.value) and str(tiny) in str(err.value)


def test_verify_reports_every_problem_of_an_altered_and_rescaled_item(tiny):
    m = StimulusSet.open(tiny).manifest
    path = tiny / m["items"][0]["file"]
    vec = np.load(path)
    vec[0, 0, 0] += 0.1  # altered ...
    np.save(path, 3 * vec)  # ... and rescaled
    problems = [p for p in verify_set(tiny) if p.startswith(m["items"][0]["file"])]
    assert any(": sha256 " in p for p in problems), problems
    assert any(": L2 norm is " in p for p in problems), problems
    assert any(": alpha_displayable_max is " in p for p in problems), problems


def test_an_item_that_cannot_be_shown_is_a_problem(tiny):
    m = StimulusSet.open(tiny).manifest
    image = np.load(tiny / "images/img.npy")
    image[0, 0, 0] = 1.0  # a pixel on the display bound: image ± α·e clips at every α > 0
    m["images"][0]["sha256"] = save_npy(tiny / "images/img.npy", image)
    m["value_range"] = [0.2, 1.0]
    for it in m["items"]:
        it["alpha_displayable_max"] = 0.0
    write_manifest(tiny, m)
    assert f"{m['items'][0]['file']}: cannot be shown without clipping (image ± α·e leaves [0, 1] for every α > 0)" in verify_set(tiny)
