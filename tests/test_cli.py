"""The command line: every command group answers, errors are one line, numbers are checked."""

import subprocess
import sys

import pytest

from eigdist.cli.main import build_parser, main

GROUPS = ["init", "synth", "stimuli", "calibrate", "run", "analyze", "power", "demo"]


@pytest.mark.parametrize("group", GROUPS)
def test_every_command_group_answers_help(group, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([group, "--help"])
    assert exit_.value.code == 0 and f"usage: eigdist {group}" in capsys.readouterr().out


def test_help_does_not_import_torch():
    code = "import sys; from eigdist.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_user_errors_exit_2_with_message(capsys):
    rc = main(["synth", "--model", "resnet18", "--image", "camera", "--out", "unused"])
    assert rc == 2
    assert "model spec must look like '<model>:<layer>'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["analyze", "data", "--out", "o", "--seed", "-1"], "argument --seed: must be an int >= 0, got -1"),
    (["analyze", "data", "--out", "o", "--n-boot", "0"], "argument --n-boot: must be an int >= 1, got 0"),
    (["power", "--delta-d", "0.3", "--sd-d", "-1"], "argument --sd-d: must be a number >= 0, got -1.0"),
    (["power", "--delta-d", "nan"], "argument --delta-d: must be a number > 0, got nan"),
    (["power", "--delta-d", "0.3", "--seed", "x"], "argument --seed: must be an int, got 'x'"),
])
def test_numeric_options_are_checked_where_they_are_parsed(argv, message, capsys):
    """Issue 16 item 13: --seed -1 and --sd-d -1 were accepted."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
