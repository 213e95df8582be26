"""The command line: every command group answers, errors are one line, numbers are checked."""

import subprocess
import sys

import pytest

from eigdist.cli.main import main

GROUPS = ["init", "synth", "stimuli", "calibrate", "run", "analyze", "power", "design", "demo"]


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
    (["design", "select", "pool", "--out", "o", "--budget-trials", "0"],
     "argument --budget-trials: must be an int >= 1, got 0"),
])
def test_numeric_options_are_checked_where_they_are_parsed(argv, message, capsys):
    """Issue 16 item 13: --seed -1 and --sd-d -1 were accepted."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_numpy_error_inside_a_command_keeps_its_traceback(tmp_path):
    """A foreign ValueError (numpy's broadcasting) is a bug, not a user error: traceback, exit 1."""
    code = ("import sys, numpy as np; from eigdist_core import previews\n"
            "previews.write_previews = lambda folder, alpha=None: np.ones(2) + np.ones(3)\n"
            "from eigdist.cli.main import main; sys.exit(main(['stimuli', 'show', 'set']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" in proc.stderr and "ValueError: operands could not be broadcast" in proc.stderr
    assert "eigdist stimuli: error" not in proc.stderr


def test_a_json_decode_error_of_a_project_file_names_the_file(tmp_path, monkeypatch, capsys):
    from eigdist_core import previews
    from eigdist_core.io import load_json

    (tmp_path / "manifest.json").write_text('{"items": [')
    monkeypatch.setattr(previews, "write_previews", lambda folder, alpha=None: load_json(tmp_path / "manifest.json"))
    assert main(["stimuli", "show", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"eigdist stimuli: error: {tmp_path / 'manifest.json'}: not valid JSON (Expecting value")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("exc,user", [
    (FileNotFoundError("no such set"), True),
    (OSError(28, "No space left on device", "/data/x.tsv"), True),  # an OS error naming its file
    (OSError(28, "No space left on device"), False),
    (ValueError("operands could not be broadcast"), False),
    (__import__("json").JSONDecodeError("Expecting value", "", 0), False),
])
def test_only_eigdist_errors_and_file_errors_are_user_errors(exc, user):
    from eigdist.cli.main import is_user_error
    from eigdist_core.errors import EigdistError

    assert is_user_error(exc) is user and is_user_error(EigdistError("bad key")) is True


def test_an_error_raised_while_ctrl_c_unwinds_is_an_interruption(monkeypatch, capsys):
    """Ctrl-C inside torch.func's transform bookkeeping surfaces as a RuntimeError whose context is the
    KeyboardInterrupt (an internal assert on the transform stack): the command was interrupted (130, the
    resume message), it did not fail."""
    from eigdist.cli import stimuli

    def interrupted_inside_torch_func(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("!dynamicLayerStack.empty() INTERNAL ASSERT FAILED")

    monkeypatch.setattr(stimuli, "show", interrupted_inside_torch_func)
    assert main(["stimuli", "show", "set"]) == 130
    err = capsys.readouterr().err
    assert err == "eigdist stimuli: interrupted; rerun the same command to resume\n"


def test_caused_by_interrupt_follows_causes_and_contexts_and_stops_on_a_cycle():
    from eigdist_core.errors import caused_by_interrupt

    inner = KeyboardInterrupt()
    outer = RuntimeError("x")
    outer.__context__ = ValueError("y")
    outer.__context__.__cause__ = inner
    loop = RuntimeError("a")
    loop.__context__ = RuntimeError("b")
    loop.__context__.__context__ = loop
    assert caused_by_interrupt(outer) and caused_by_interrupt(inner)
    assert not caused_by_interrupt(loop) and not caused_by_interrupt(ValueError("plain"))
