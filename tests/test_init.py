"""``eigdist init STUDY``: a study folder whose configs load, with the lab's monitor folder, never overwritten."""

from __future__ import annotations

import pytest

from eigdist.cli.main import main
from eigdist_core.config import load_config as load_set_config
from experiments.config import load_config as load_experiment_config


@pytest.fixture
def monitors(monkeypatch, tmp_path):
    monkeypatch.setenv("EIGDIST_MONITORS", str(tmp_path / "lab monitors"))
    return tmp_path / "lab monitors"


def test_init_writes_configs_that_load_and_a_readme_of_the_workflow(tmp_path, monitors, capsys):
    study = tmp_path / "texture study"
    assert main(["init", str(study)]) == 0
    assert sorted(p.name for p in study.iterdir()) == ["README.md", "experiment.toml", "images", "stimuli.toml"]
    config, base = load_set_config(study / "stimuli.toml")
    assert config.name == "texture-study" and base == study and len(config.models) == 3
    assert "# " in (study / "stimuli.toml").read_text()  # commented for the lab
    experiment = load_experiment_config(study / "experiment.toml")
    assert experiment == load_experiment_config(None)  # the shipped defaults, a copy the lab owns
    readme = (study / "README.md").read_text()
    assert readme.startswith("# texture study\n") and str(monitors) in readme
    assert "eigdist stimuli build stimuli.toml --out sets/texture-study" in readme and "$" not in readme.replace(
        "$EIGDIST_MONITORS", "")
    assert f"next: follow {study / 'README.md'}" in capsys.readouterr().out


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path, monitors, capsys):
    study = tmp_path / "s1"
    study.mkdir()
    (study / "experiment.toml").write_text("# ours\n")
    assert main(["init", str(study)]) == 2
    err = capsys.readouterr().err
    assert (f"eigdist init: error: {study} already holds experiment.toml: eigdist init never overwrites a study's "
            "files; choose a new folder") in err
    assert sorted(p.name for p in study.iterdir()) == ["experiment.toml"]
    assert (study / "experiment.toml").read_text() == "# ours\n"


def test_init_into_an_existing_empty_folder_is_fine_but_not_onto_a_file(tmp_path, monitors, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["init", str(tmp_path / "empty")]) == 0
    (tmp_path / "afile").write_text("x")
    assert main(["init", str(tmp_path / "afile")]) == 2
    assert f"{tmp_path / 'afile'} exists and is not a folder" in capsys.readouterr().err


def test_every_command_of_the_study_readme_parses(tmp_path, monitors):
    import shlex

    from eigdist.cli.main import build_parser

    assert main(["init", str(tmp_path / "s")]) == 0
    text = (tmp_path / "s" / "README.md").read_text().replace("\\\n", " ")
    commands = [line.strip() for line in text.splitlines() if line.strip().startswith("eigdist ")]
    assert len(commands) >= 8
    for command in commands:
        build_parser().parse_args(shlex.split(command, comments=True)[1:])  # exits (fails the test) on a bad one
