"""The experiment TOML: defaults load, every bad key is named."""

from __future__ import annotations

import pytest

from experiments.config import DEFAULT_CONFIG, ConfigError, load_config, parse_config


def test_shipped_defaults():
    config = load_config()
    assert config.task == "2afc_ref" and config.n_alternatives == 2
    assert (config.timing.fixation_ms, config.timing.reference_ms, config.timing.isi_ms,
            config.timing.test_ms) == (500, 500, 500, 500)
    assert config.catch_rate == 0.08 and config.track_kind == "quest"
    assert config.track_options["n_grid"] == 40
    assert load_config(DEFAULT_CONFIG) == config


def test_updown_and_oddity():
    config = parse_config({"task": {"name": "3afc_oddity"},
                           "track": {"kind": "updown", "updown": {"n_down": 3}}})
    assert config.n_alternatives == 3 and config.track_options == {"n_down": 3}


@pytest.mark.parametrize("data,message", [
    ({"timing": {"test_ms": -5}}, "noticeability.toml: timing.test_ms must be a number > 0, got -5"),
    ({"timing": {"tset_ms": 5}}, "noticeability.toml: unknown key 'timing.tset_ms'; allowed: feedback_ms, fixation_ms"),
    ({"trial": {}}, "unknown key 'trial'; allowed: display, schedule, seed, task, timing, track, trials"),
    ({"task": {"name": "yesno"}}, "task.name must be one of '2afc_ref', '3afc_oddity', got 'yesno'"),
    ({"task": {"name": "3afc_oddity", "n_alternatives": 2}},
     "task.n_alternatives is not set any more: it follows from task.name (2afc_ref: 2, 3afc_oddity: 3)"),
    ({"task": {"feedback": "yes"}}, "task.feedback must be true or false, got 'yes'"),
    ({"trials": {"catch_rate": 0.9}}, "trials.catch_rate must be a number >= 0 and <= 0.5, got 0.9"),
    ({"trials": {"per_condition": 2.5}}, "trials.per_condition must be an int >= 1 and <= 1000, got 2.5"),
    ({"trials": {"per_condition": 100000}}, "trials.per_condition must be an int >= 1 and <= 1000, got 100000"),
    ({"trials": {"break_every": 0}}, "trials.break_every must be an int >= 1, got 0"),
    ({"trials": {"selection": "maybe"}}, "trials.selection must be one of 'use', 'ignore', got 'maybe'"),
    ({"seed": -1}, "noticeability.toml: seed must be an int >= 0, got -1"),
    ({"track": {"kind": "quest", "quest": {"n_grid": 1}}}, "track.quest: quest.n_grid must be an int >= 2, got 1"),
    ({"track": {"quest": {"alpha_min": 0.1}}}, "track.quest.alpha_min cannot be set here"),
    ({"track": {"quest": 3}}, "[track.quest] must be a table, got 3"),
    ({"display": {"dithering": "sometimes"}}, "display.dithering must be one of 'frame', 'trial', 'off'"),
    ({"timing": 5}, "[timing] must be a table, got 5"),
])
def test_bad_keys_are_named(data, message):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert message in str(err.value)


@pytest.mark.parametrize("text,error,message", [
    (None, FileNotFoundError, "experiment config .*mine.toml.* does not exist"),
    ("[timing\n", ConfigError, "mine.toml: not valid TOML"),
    ("[timing]\nisi_ms = 0\n", ConfigError, "mine.toml: timing.isi_ms must be a number > 0, got 0"),
])
def test_file_errors(tmp_path, text, error, message):
    path = tmp_path / "mine.toml"
    if text is not None:  # None: no file at all
        path.write_text(text)
    with pytest.raises(error, match=message):
        load_config(path)
