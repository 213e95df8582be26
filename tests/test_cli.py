"""The command line: every docs/formats.md command group is registered."""

import subprocess
import sys


from eigdist.cli.main import build_parser, main

GROUPS = ["init", "synth", "stimuli", "calibrate", "run", "analyze", "power", "demo"]


def test_every_command_group_is_registered():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert sorted(choices) == sorted(GROUPS)


def test_help_does_not_import_torch():
    code = "import sys; from eigdist.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_user_errors_exit_2_with_message(capsys):
    rc = main(["synth", "--model", "resnet18", "--image", "camera", "--out", "unused"])
    assert rc == 2
    assert "model spec must look like '<model>:<layer>'" in capsys.readouterr().err
