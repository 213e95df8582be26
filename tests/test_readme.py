"""The README's commands still work: each is run on small inputs, or says visibly why it cannot be.

Every shell command in README.md's code blocks is found by :func:`readme_commands`. A command
that appears, changes or disappears fails :func:`test_every_readme_command_is_accounted_for` until
this file says how it is checked, so a stale command fails CI instead of a user.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

import eigdist
from eigdist.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COMMAND = re.compile(r"^(\.venv/bin/)?eigdist |^bash \.ci/|^pip install ")

#: Commands run for real, in this order, in one empty folder; ``demo`` is swapped for its small
#: built-in sibling ``demo_quick`` (same models, fewer images: the small input).
RUN = (
    "eigdist calibrate new lab1 --width-cm 53.1 --distance-cm 57 --resolution 1920x1080 --refresh 120 [--bits 10]",
    "eigdist calibrate fit readings.csv --monitor lab1",
    "eigdist calibrate show lab1",
    "eigdist stimuli build demo --jobs 2",
    "eigdist stimuli verify stimuli/demo",
    "eigdist stimuli show stimuli/demo",
    ".venv/bin/eigdist synth --model frontend:onoff --image camera --size 48 --grey --out out/onoff",
)
#: Commands checked elsewhere or needing what CI has not: the reason is printed as the skip reason.
ELSEWHERE = {
    "bash .ci/setup && .venv/bin/eigdist demo": "CI runs .ci/setup; tests/test_demo.py runs the demo "
                                                "(--quick) and tests/test_wheel.py from an installed wheel",
    "bash .ci/run": "this is the command CI runs",
    "eigdist calibrate check lab1 --pilot": "needs a lab screen and a photometer; tests/test_display.py "
                                            "runs calibrate check on a virtual screen",
    "eigdist run --stimuli stimuli/demo --monitor lab1 --fullscreen": "needs a lab screen, a calibrated monitor "
                                                                     "and a person; tests/test_session.py runs "
                                                                     "sessions on a virtual screen",
    "eigdist run --stimuli stimuli/demo --monitor lab1 [--participant P07] [--session 2] [--config my.toml]":
        "the synopsis of eigdist run (needs a lab screen); tests/test_session.py",
    "eigdist analyze data/ --out out/analysis --stimuli stimuli/demo": "needs observers' data of that set; "
                                                                       "tests/test_report.py analyzes a "
                                                                       "simulated lab with its set",
    "eigdist stimuli build demo --executor slurm --partition gpu --gpus 1 --cpus 4 --time 60 "
    "--array-parallelism 32 --log-folder slurm-logs": "needs a SLURM cluster with a gpu partition; "
                                                      "tests/test_slurm.py builds on a real single-node cluster",
    'pip install ".[experiment]"': "tests/test_wheel.py installs the built wheel",
    'pip install "eigdist-{version}-py3-none-any.whl[experiment]"': "tests/test_wheel.py installs the built wheel",
    'pip install -c .ci/constraints.txt ".[experiment]"': ".ci/setup installs with the constraints file",
}


def readme_commands(text: str) -> list[str]:
    """Shell commands of the README's code blocks (fenced, or indented by 4+ spaces), comments cut."""
    commands, fence, pending = [], None, ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else (stripped[3:] or "text")
            continue
        in_code = fence in ("bash", "sh", "console", "text") or (fence is None and re.match(r" {4,}\S", line))
        if not in_code:
            continue
        stripped = re.sub(r"\s+#.*$", "", pending + stripped)
        if stripped.endswith("\\"):
            pending = stripped[:-1].strip() + " "
            continue
        pending = ""
        if COMMAND.match(stripped):
            commands.append(stripped)
    return commands


def _known() -> set[str]:
    return set(RUN) | {c.format(version=eigdist.__version__) for c in ELSEWHERE}


def _argv(command: str) -> list[str] | None:
    """The ``eigdist`` arguments of a command (optional ``[...]`` parts dropped), or None for others."""
    command = command.split("&&")[-1].strip()
    if not re.match(r"^(\.venv/bin/)?eigdist ", command):
        return None
    return shlex.split(re.sub(r"\s*\[[^\]]*\]", "", command))[1:]


def test_every_readme_command_is_accounted_for():
    found = readme_commands(README.read_text(encoding="utf-8"))
    assert len(found) >= 10, found  # the parser still finds the README's blocks
    unknown = [c for c in found if c not in _known()]
    assert not unknown, f"README commands this test does not check yet (add them to RUN or ELSEWHERE): {unknown}"
    stale = sorted(_known() - set(found))
    assert not stale, f"commands this test checks that the README no longer has: {stale}"


@pytest.mark.parametrize("command", sorted(c for c in _known() if _argv(c) is not None))
def test_every_eigdist_command_of_the_readme_parses(command):
    try:
        build_parser().parse_args(_argv(command))
    except SystemExit as exc:
        pytest.fail(f"README command no longer parses (exit {exc.code}): {command}")


@pytest.mark.parametrize("command", sorted(ELSEWHERE))
def test_commands_not_run_here_say_why(command):
    pytest.skip(ELSEWHERE[command])


def test_runnable_readme_commands_run_on_small_inputs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EIGDIST_MONITORS", str(tmp_path / "monitors"))
    shutil.copy(ROOT / "docs" / "display_example_readings.csv", tmp_path / "readings.csv")
    for command in RUN:
        argv = [a.replace("demo", "demo_quick") if a in ("demo", "stimuli/demo") else a for a in _argv(command)]
        code = main(argv)
        assert code == 0, f"{command} (as {argv}) exited {code}: {capsys.readouterr().err[-2000:]}"
    assert (tmp_path / "stimuli" / "demo_quick" / "manifest.json").is_file()
    assert any((tmp_path / "stimuli" / "demo_quick" / "previews").glob("*.png"))
    assert (tmp_path / "out" / "onoff" / "eigendistortions.png").is_file()
