"""Bad paths given to the commands: empty names, folders for files, files for folders, read-only folders.

Each is refused before any work with one line naming the option, the path and what to give instead.
Read-only folders are simulated by ``os.access`` (the tests may run as root, which writes anywhere).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from eigdist.cli.main import main
from tests.build_fixtures import stimulus_set  # noqa: F401  (a module fixture)


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)``: this user may not write ``folder`` (as ``os.access`` reports it)."""
    real = os.access
    folders: set[Path] = set()
    monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) in folders else real(p, m))
    return lambda folder: folders.add(Path(folder)) or Path(folder)


def test_init_refuses_an_empty_name_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("", "  "):
        code, err = cli(capsys, "init", name)
        assert code == 2 and "the study's folder name is empty" in err and "give a name" in err
    assert list(tmp_path.iterdir()) == []


def test_init_into_a_read_only_folder_is_one_line(tmp_path, capsys, read_only):
    existing = tmp_path / "existing"
    existing.mkdir()
    read_only(existing)
    code, err = cli(capsys, "init", str(existing))
    assert code == 2 and f"the study folder '{existing}' is read-only for this user" in err
    assert list(existing.iterdir()) == []
    code, err = cli(capsys, "init", str(existing / "new"))
    assert code == 2 and f"the study folder '{existing / 'new'}' is read-only for this user (it would be created " \
                          f"in {existing})" in err
    assert "Traceback" not in err


def test_a_folder_given_as_a_config_is_named_a_folder(tmp_path, capsys):
    folder = tmp_path / "configs"
    folder.mkdir()
    code, err = cli(capsys, "stimuli", "build", str(folder))
    assert code == 2 and f"stimulus-set config '{folder}' is a folder; give the TOML file in it" in err
    code, err = cli(capsys, "run", "--stimuli", str(tmp_path), "--monitor", "m", "--participant", "P1",
                    "--simulate", "weibull", "--config", str(folder), "--monitors", str(tmp_path))
    assert code == 2 and f"experiment config '{folder}' is a folder" in err


def test_monitors_that_is_a_file_is_named_a_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, err = cli(capsys, "run", "--stimuli", str(tmp_path), "--monitor", "m", "--participant", "P1",
                    "--simulate", "weibull", "--monitors", str(afile))
    assert code == 2 and f"--monitors '{afile}' is a file; give the folder of monitor profiles" in err


def test_power_out_is_checked_before_the_simulation(tmp_path, capsys, monkeypatch, read_only):
    import analysis.power

    monkeypatch.setattr(analysis.power, "power_table", lambda *a, **k: pytest.fail("simulation started"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, err = cli(capsys, "power", "--delta-d", "0.2", "--out", str(afile))
    assert code == 2 and f"--out '{afile}' is a file; give a folder" in err
    (tmp_path / "ro").mkdir()
    code, err = cli(capsys, "power", "--delta-d", "0.2", "--out", str(read_only(tmp_path / "ro")))
    assert code == 2 and f"--out '{tmp_path / 'ro'}' " in err and "give a writable folder" in err


def test_demo_out_read_only_or_a_file_is_one_line(tmp_path, capsys, read_only):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, err = cli(capsys, "demo", "--quick", "--out", str(afile))
    assert code == 2 and f"--out '{afile}' is a file; give a folder" in err
    ro = tmp_path / "ro"
    ro.mkdir()
    code, err = cli(capsys, "demo", "--quick", "--out", str(read_only(ro)))
    assert code == 2 and f"--out '{ro}' is read-only for this user" in err
    assert list(ro.iterdir()) == []


def test_stimuli_show_on_a_read_only_set_is_one_line(stimulus_set, tmp_path, capsys, read_only):  # noqa: F811
    copy = tmp_path / "set"
    shutil.copytree(stimulus_set, copy)
    read_only(copy)
    code, err = cli(capsys, "stimuli", "show", str(copy))
    assert code == 2 and f"the set's previews folder '{copy / 'previews'}' is read-only for this user" in err
    assert not (copy / "previews").exists()


def test_stimuli_show_on_a_set_with_a_missing_item_says_it_fails_verification(stimulus_set, tmp_path,  # noqa: F811
                                                                              capsys):
    copy = tmp_path / "set"
    shutil.copytree(stimulus_set, copy)
    item = next((copy / "items").rglob("*.npy"))
    item.unlink()
    code, err = cli(capsys, "stimuli", "show", str(copy))
    assert code == 2 and f"stimulus set '{copy}' failed verification (1 problem(s)): " in err
    assert "missing" in err and "run 'eigdist stimuli verify' for the full list" in err
    assert "Errno" not in err


@pytest.mark.parametrize("shape", [(3, 1000), (10, 10)])
def test_an_image_smaller_than_size_is_refused_not_upscaled(tmp_path, capsys, shape):
    import numpy as np
    from skimage import io

    from tests.trial_fixtures import set_config_toml

    image = tmp_path / "thin.png"
    io.imsave(image, np.full(shape, 128, dtype=np.uint8), check_contrast=False)
    (tmp_path / "set.toml").write_text(set_config_toml("thin", str(image), "grey"))  # size = 16
    side = min(shape)
    code, err = cli(capsys, "stimuli", "build", str(tmp_path / "set.toml"), "--out", str(tmp_path / "set"), "--quiet")
    assert code == 2 and (f"image '{image}' is {shape[1]}×{shape[0]} pixels: its central square crop ({side}×{side}) "
                          f"is smaller than size = 16 and would be upscaled; give an image at least 16 pixels on its "
                          f"shorter side, or a size <= {side}") in err
    code, err = cli(capsys, "synth", "--model", "frontend:ln", "--image", str(image), "--grey", "--size", "16",
                    "--out", str(tmp_path / "synth"))
    assert code == 2 and "would be upscaled" in err
