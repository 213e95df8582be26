"""A stimulus-set build never loses or mixes a lab's data, and refuses bad input before any work (issues 16, 24).

Each test is a case of issue 16 or 24 (numbered as there) that failed before the fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from eigdist.cli.main import main
from eigdist_core.build import build_set
from eigdist_core.errors import EigdistError
from eigdist_core.io import load_json, sha256_file
from eigdist_core.stimulus_set import StimulusSet, verify_set

ROOT = Path(__file__).resolve().parents[1]

#: A fast set: front-end models on 16 × 16 grey images (about a second a group).
CONFIG = """\
name = "{name}"
images = {images}
color = "{color}"
size = {size}
value_range = {value_range}
alpha_max = 2.0
seed = {seed}

[[models]]
spec = "frontend:ln"
weights = "published"
"""


def config(folder: Path, name: str = "set", images: str = '["camera"]', color: str = "grey", size: int = 16,
           value_range: str = "[0.2, 0.8]", seed: int = 0, file: str = "set.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file
    path.write_text(CONFIG.format(name=name, images=images, color=color, size=size, value_range=value_range,
                                  seed=seed))
    return path


def photos(folder: Path) -> dict[str, str]:
    """Two 8-bit PNG photos in ``folder``; return their sha256 by path."""
    from skimage import data, io

    folder.mkdir(parents=True, exist_ok=True)
    for name, image in (("cam", data.camera()[::8, ::8]), ("coins", data.coins()[::8, ::8])):
        io.imsave(folder / f"{name}.png", image, check_contrast=False)
    return {str(p): sha256_file(p) for p in folder.iterdir()}


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


# 16.1 --force deletes nothing it was not asked to ------------------------------------------


def test_force_into_a_folder_holding_the_photos_and_config_deletes_nothing(tmp_path, capsys):
    proj = tmp_path / "proj"
    kept = photos(proj / "images")
    cfg = config(proj, images='["images"]')
    kept[str(cfg)] = sha256_file(cfg)
    code, err = cli(capsys, "stimuli", "build", str(cfg), "--out", str(proj), "--force", "--quiet")
    assert code == 2
    assert f"{proj / 'images' / 'cam.png'} is an input of this config but lies in {proj / 'images'}, which the build writes" in err
    assert {p: sha256_file(p) for p in kept} == kept
    assert sorted(p.name for p in proj.iterdir()) == ["images", "set.toml"]


def test_force_replaces_only_an_earlier_builds_files_after_every_check(tmp_path, capsys):
    proj = tmp_path / "proj"
    kept = photos(proj / "photos")
    (proj / "notes.txt").write_text("observer notes")
    kept[str(proj / "notes.txt")] = sha256_file(proj / "notes.txt")
    first = config(proj, images='["photos"]')
    kept[str(first)] = sha256_file(first)
    assert cli(capsys, "stimuli", "build", str(first), "--out", str(proj), "--quiet")[0] == 2  # not empty
    assert main(["stimuli", "build", str(first), "--out", str(proj), "--force", "--quiet"]) == 0
    old_items = [proj / it["file"] for it in StimulusSet.open(proj).items]
    # a new config that parses but fails a check (its model cannot take colour): nothing is removed
    bad = config(proj, images='["photos"]', color="rgb", file="bad.toml")
    code, err = cli(capsys, "stimuli", "build", str(bad), "--out", str(proj), "--force", "--quiet")
    assert code == 2 and "cannot take this set's images" in err
    assert verify_set(proj) == [] and all(p.is_file() for p in old_items)
    # a good new config (another image set): the old set's files go, the photos, notes and config stay
    second = config(proj, images='["photos/cam.png", "coffee"]', seed=3, file="second.toml")
    assert main(["stimuli", "build", str(second), "--out", str(proj), "--force", "--quiet"]) == 0
    assert verify_set(proj) == []
    assert {p: sha256_file(p) for p in kept} == kept
    assert not (proj / "images" / "coins.npy").exists()
    assert sorted(p.name for p in (proj / "items").iterdir()) == sorted(
        Path(it["file"]).name for it in StimulusSet.open(proj).items)


def test_force_refuses_to_overwrite_a_file_no_build_listed(tmp_path, capsys):
    proj = tmp_path / "proj"
    cfg = config(tmp_path)
    (proj / "images").mkdir(parents=True)
    (proj / "images" / "camera.npy").write_bytes(b"my own array")
    code, err = cli(capsys, "stimuli", "build", str(cfg), "--out", str(proj), "--force", "--quiet")
    assert code == 2 and f"{proj / 'images' / 'camera.npy'} exists and no eigdist build of {proj} listed it" in err
    assert (proj / "images" / "camera.npy").read_bytes() == b"my own array"


# 16.2 one build per folder ----------------------------------------------------------------


def test_a_second_build_into_a_folder_being_built_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "set"
    first = config(tmp_path, images='["camera", "coffee", "chelsea", "astronaut"]')
    second = config(tmp_path, size=32, file="other.toml")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "eigdist", "stimuli", "build", str(first), "--out", str(out),
                             "--quiet"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    holder = tmp_path / ".set.lock.holder"
    deadline = time.monotonic() + 120
    while not holder.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    code, err = cli(capsys, "stimuli", "build", str(second), "--out", str(out), "--quiet")
    _, first_err = proc.communicate(timeout=300)  # reads and closes the pipe
    assert proc.returncode == 0, first_err.decode()
    assert code == 2
    assert f"stimulus set {out} is in use by another process (pid {proc.pid} on " in err
    assert verify_set(out) == [] and StimulusSet.open(out).manifest["size"] == 16


# 16.5 an item that cannot be shown --------------------------------------------------------


def test_images_on_the_display_bound_are_refused_before_any_work(tmp_path, capsys):
    halves = np.zeros((64, 64), dtype=np.uint8)
    halves[:, 32:] = 255  # black and white fields: pixels at 0 and 1 after resizing
    np.save(tmp_path / "halves.npy", halves)
    cfg = config(tmp_path, images='["halves.npy"]', value_range="[0.0, 1.0]")
    code, err = cli(capsys, "stimuli", "build", str(cfg), "--out", str(tmp_path / "set"), "--quiet")
    assert code == 2
    assert "images[0] ('halves.npy'): " in err and "lie on the display bound 0 or 1 once mapped into value_range [0.0, 1.0]" in err
    assert "alpha_displayable_max = 0" in err
    assert not (tmp_path / "set").exists()


def test_a_zero_ceiling_is_a_ceiling_not_a_missing_value():
    """A recorded ceiling of 0 used to be read as "missing" (the track went up to alpha_max): the
    experiment now refuses the item by name, and the ceiling rule keeps 0 as 0."""
    from eigdist_core.contract import alpha_ceiling
    from experiments.design import conditions

    assert alpha_ceiling(4.0, 0.0) == 0.0 and alpha_ceiling(4.0, None) == 4.0
    item = {"item_id": "a__m__l__w__max0", "image_id": "a", "model": "m", "layer": "l", "weights": "w",
            "direction": "max", "eigenvalue": 1.0, "alpha_displayable_max": 0.0}
    with pytest.raises(ValueError, match=r"item 'a__m__l__w__max0' has an alpha ceiling of 0 .* cannot be shown "
                                         r"without clipping"):
        conditions({"images": [{"image_id": "a"}], "items": [item], "alpha_max": 4.0})


# 16.9 image values --------------------------------------------------------------------------


@pytest.mark.parametrize("array,message", [
    (np.linspace(0, 255, 256, dtype=np.float32).reshape(16, 16), "has values in [0, 255]; a float image must lie in [0, 1]"),
    (np.full((16, 16), np.nan), "has 256 NaN or infinite values"),
    (np.arange(256, dtype=np.int32).reshape(16, 16), "has dtype int32; use uint8 (0-255), uint16 (0-65535) or float in [0, 1]"),
    (np.zeros((2, 16, 16, 5)), "has shape (2, 16, 16, 5)"),
])
def test_bad_npy_images_are_refused_naming_the_file_and_leave_no_folder(tmp_path, capsys, array, message):
    np.save(tmp_path / "photo.npy", array)
    cfg = config(tmp_path, images='["photo.npy"]')
    code, err = cli(capsys, "stimuli", "build", str(cfg), "--out", str(tmp_path / "set"), "--quiet")
    assert code == 2 and "Traceback" not in err
    assert "images[0] ('photo.npy'): image " in err and "photo.npy" in err and message in err
    assert not (tmp_path / "set").exists()


def test_8_and_16_bit_files_are_scaled_by_the_documented_rule(tmp_path):
    from skimage import io

    from eigdist_core.images import load_image

    ramp = np.arange(256, dtype=np.uint16).reshape(16, 16) * 257  # 0 … 65535
    io.imsave(tmp_path / "deep.png", ramp, check_contrast=False)
    np.save(tmp_path / "byte.npy", (ramp // 257).astype(np.uint8))
    for name in ("deep.png", "byte.npy"):
        image = load_image(tmp_path / name).numpy()
        assert image.min() == 0.0 and image.max() == 1.0
        assert np.allclose(image.ravel(), np.arange(256) / 255, atol=1e-6), name


# 24.2 a model that cannot take the set's colour --------------------------------------------


def test_a_model_that_cannot_take_the_sets_colour_is_named_before_anything_is_written(tmp_path, capsys):
    cfg = config(tmp_path, color="rgb")
    code, err = cli(capsys, "stimuli", "build", str(cfg), "--out", str(tmp_path / "set"), "--quiet")
    assert code == 2 and "Traceback" not in err
    assert "models[0] (frontend:ln, weights published) cannot take this set's images (color = 'rgb': 3 channel(s)" in err
    assert "change the color key" in err
    assert not (tmp_path / "set").exists()
    config(tmp_path, color="grey")  # the corrected config builds into the same folder: nothing trapped it
    assert main(["stimuli", "build", str(cfg), "--out", str(tmp_path / "set"), "--quiet"]) == 0


# 16.12 / 13 / 14 plain messages -------------------------------------------------------------


def bad_files(folder: Path) -> dict[str, Path]:
    from skimage import data, io

    folder.mkdir(parents=True, exist_ok=True)
    io.imsave(folder / "whole.png", data.camera()[::8, ::8], check_contrast=False)
    data_ = (folder / "whole.png").read_bytes()
    (folder / "truncated.png").write_bytes(data_[: len(data_) // 2])
    (folder / "text.png").write_text("not an image")
    return {"truncated": folder / "truncated.png", "text": folder / "text.png"}


@pytest.mark.parametrize("kind", ["truncated", "text"])
def test_unreadable_png_is_named_by_build_and_synth(tmp_path, capsys, kind):
    path = bad_files(tmp_path / "in")[kind]
    cfg = config(tmp_path, images=f'["in/{path.name}"]')
    code, err = cli(capsys, "stimuli", "build", str(cfg), "--out", str(tmp_path / "set"), "--quiet")
    assert code == 2 and f"image '{path}' is not a readable image file" in err and "Traceback" not in err
    code, err = cli(capsys, "synth", "--model", "frontend:ln", "--image", str(path), "--grey", "--size", "16",
                    "--out", str(tmp_path / "synth"))
    assert code == 2 and f"image '{path}' is not a readable image file" in err


def test_out_that_is_a_file_or_read_only_is_refused_by_build_and_synth(tmp_path, capsys):
    cfg = config(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("x")
    readonly = Path("/sys/eigdist-set") if os.geteuid() == 0 else tmp_path / "ro" / "set"
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
    synth = ["synth", "--model", "frontend:ln", "--image", "camera", "--grey", "--size", "16", "--out"]
    for argv in (["stimuli", "build", str(cfg), "--quiet", "--out"], synth):
        code, err = cli(capsys, *argv, str(afile))
        assert code == 2 and f"--out '{afile}' is a file; give a folder" in err
        code, err = cli(capsys, *argv, str(readonly))
        assert code == 2 and f"--out '{readonly}' " in err and "give a writable folder" in err


def test_a_huge_size_is_refused_from_an_estimate_before_allocating(tmp_path, capsys):
    cfg = config(tmp_path, size=100000)
    code, err = cli(capsys, "stimuli", "build", str(cfg), "--out", str(tmp_path / "set"), "--quiet")
    assert code == 2 and "size = 100000: 1 group(s) at a time would need about " in err
    assert "more than this machine's" in err and "use a smaller size" in err
    assert not (tmp_path / "set").exists()


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_configs_saved_with_a_byte_order_mark_or_in_utf16_are_read(tmp_path, encoding):
    from eigdist_core.config import load_config

    path = config(tmp_path)
    path.write_bytes(path.read_text().encode(encoding))
    assert load_config(path)[0].name == "set"


def test_a_config_in_another_encoding_is_named(tmp_path):
    from eigdist_core.config import load_config

    path = config(tmp_path)
    path.write_bytes(path.read_text().replace("set", "sét").encode("latin-1"))
    with pytest.raises(EigdistError, match="set.toml: not UTF-8 or UTF-16 text"):
        load_config(path)


@pytest.mark.parametrize("argv,message", [
    (["synth", "--model", "frontend:ln", "--image", "camera", "--grey", "--alpha", "nan"], "--alpha must be a number >= 0, got nan"),
    (["synth", "--model", "frontend:ln", "--image", "camera", "--grey", "--alpha", "inf"], "--alpha must be a number >= 0, got inf"),
    (["synth", "--model", "frontend:ln", "--image", "camera", "--grey", "--size", "100000"], "--size must be an int >= 2 and <= 1024, got 100000"),
])
def test_absurd_synth_numbers_are_refused(tmp_path, capsys, argv, message):
    code, err = cli(capsys, *argv, "--out", str(tmp_path / "o"))
    assert code == 2 and message in err
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("small")
    return build_set(config(base), base / "set", progress=False)


def test_show_refuses_an_infinite_alpha(small_set, capsys):
    code, err = cli(capsys, "stimuli", "show", str(small_set), "--alpha", "inf")
    assert code == 2 and "--alpha must be a number >= 0, got inf" in err


def test_verify_names_the_folder_once(tmp_path, capsys):
    code, err = cli(capsys, "stimuli", "verify", str(tmp_path))
    assert code == 1
    assert err.splitlines()[0] == f"{tmp_path}/manifest.json: not found: the folder is not a stimulus set (build one with 'eigdist stimuli build')"
    assert err.count(str(tmp_path)) == 2  # the problem line and the summary line


# 16.6 identity: the set that run and analyze open is the set that was built ------------------


def test_an_edited_manifest_is_refused_where_the_set_is_opened(small_set, tmp_path):
    import json
    import shutil

    folder = Path(shutil.copytree(small_set, tmp_path / "copy"))
    m = load_json(folder / "manifest.json")
    m["alpha_max"] = 0.4
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EigdistError, match="alpha_max was edited"):
        StimulusSet.open(folder)
    from experiments.engine import open_stimuli  # what eigdist run uses

    with pytest.raises(EigdistError, match="alpha_max was edited"):
        open_stimuli(folder)


# 24.8 what a built set holds ----------------------------------------------------------------


def test_readme_says_what_a_build_writes(small_set):
    assert sorted(p.name for p in small_set.iterdir()) == ["build.log", "config.toml", "images", "items", "manifest.json",
                                                              "sensitivities.csv"]
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Stimulus sets"):]
    paragraph = section[: section.index("\n\n", section.index("A set is a folder"))]
    assert "previews" not in paragraph.split("eigdist stimuli show DIR")[0]
    assert "`eigdist stimuli show DIR`\nadds contact sheets under `previews/`" in paragraph
