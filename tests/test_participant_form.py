"""The participant dialog (PsychoPy's Qt dialog, filled programmatically under Xvfb) and its terminal fallback."""

from __future__ import annotations

import io
import json
import sys

import pytest

from eigdist_core.errors import EigdistError
from experiments import participant_form as pf
from tests.display_fixtures import run_python, xvfb, xvfb_factory  # noqa: F401  (fixtures)

#: Runs in a subprocess on the Xvfb screen: answers each dialog that opens with the next round of
#: ``ROUNDS`` (field texts, then "ok" or "cancel"; a round may save a screenshot), records the problem
#: shown in red, then calls ``CALL`` and prints what came back as JSON.
DRIVER = r"""
import json, sys
from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication, QLabel
from psychopy.gui import qtgui

rounds, call = json.loads(sys.argv[1]), sys.argv[2]
shown = []
qtgui.ensureQtApp()

def answer():
    open_now = [w for w in QApplication.topLevelWidgets() if isinstance(w, qtgui.Dlg) and w.isVisible()]
    if not open_now or not rounds:
        QTimer.singleShot(50, answer)
        return
    dlg = open_now[0]
    step = rounds.pop(0)
    shown.append([w.text() for w in dlg.findChildren(QLabel) if "red" in w.styleSheet()])
    for widget, text in zip(dlg.inputFields, step["fields"]):
        widget.setCurrentText(text) if hasattr(widget, "setCurrentText") else widget.setText(text)
    if step.get("shot"):
        dlg.grab().save(step["shot"])
    QTimer.singleShot(50, answer)  # the next dialog, if the answer is refused
    (dlg.okBtn if step["button"] == "ok" else dlg.cancelBtn).click()

QTimer.singleShot(50, answer)
if call == "ask":
    from experiments.participant_form import ask_participant
    info = ask_participant(session=2)
    print(json.dumps({"info": info.__dict__, "shown": shown}))
else:
    from eigdist.cli.main import main
    rc = main(json.loads(call))
    print(json.dumps({"rc": rc, "shown": shown}))
"""


def drive(screen, rounds: list[dict], call: str = "ask"):
    proc = run_python(screen, "-c", DRIVER, json.dumps(rounds), call, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_dialog_asks_again_with_the_problem_shown_until_the_answers_are_valid(xvfb):
    result, _ = drive(xvfb, [
        {"fields": ["P07", "2", "200", "female", ""], "button": "ok"},
        {"fields": ["P07", "x", "31", "female", ""], "button": "ok"},
        {"fields": ["P07", "3", "31", "female", "corrected"], "button": "ok"},
    ])
    assert result["info"] == {"participant": "P07", "session": 3, "age": 31, "sex": "female", "vision": "corrected"}
    assert result["shown"] == [
        [], ["age must be a whole number of years between 1 and 120 (or empty), got '200'"],
        ["session must be an int >= 1, got 'x'"],
    ]


def test_dialog_keeps_the_session_default_and_optional_fields_empty(xvfb):
    result, _ = drive(xvfb, [{"fields": ["P08"], "button": "ok"}])
    assert result["info"] == {"participant": "P08", "session": 2, "age": None, "sex": "", "vision": ""}


def test_cancel_stops_eigdist_run_and_writes_nothing(xvfb, tmp_path):
    data, monitors = tmp_path / "data", tmp_path / "monitors"
    args = ["run", "--stimuli", str(tmp_path / "set"), "--monitor", "example", "--monitors", str(monitors),
            "--data", str(data), "--pilot"]
    result, stderr = drive(xvfb, [{"fields": ["P09", "1"], "button": "cancel"}], json.dumps(args))
    assert result["rc"] == 2
    assert "eigdist run: error: the participant dialog was cancelled; nothing was written" in stderr
    assert list(tmp_path.iterdir()) == []


def test_without_a_display_the_terminal_form_asks(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("P10\n\n\n\n\n"))
    assert not pf.display_available()
    assert pf.ask_participant(session=4) == pf.ParticipantInfo("P10", 4)


def test_terminal_form_without_input_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(EigdistError, match=r"the participant form got no answer \(input ended\); give --participant"):
        pf.ask_participant()


def test_missing_qt_libraries_fall_back_to_the_terminal_with_a_note(monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None if name == "xcb-cursor" else f"lib{name}.so")
    monkeypatch.setattr(sys, "stdin", io.StringIO("P11\n\n\n\n\n"))
    assert pf.ask_participant() == pf.ParticipantInfo("P11", 1)
    assert "no participant dialog: Qt needs libxcb-cursor0; asking here instead" in capsys.readouterr().err
