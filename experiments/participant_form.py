"""Who runs the session: the participant dialog (PsychoPy), the terminal form, and their checks.

``eigdist run`` without ``--participant`` calls :func:`ask_participant`: a PsychoPy dialog
(``psychopy.gui``) when a display is available, else the terminal form. Both ask for the ID,
the session, and optionally age, sex and vision, and check every answer with the same
functions as the command's flags (:data:`FIELDS`); a bad answer is explained and asked again.
Cancel in the dialog stops before anything is written.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable

from eigdist_core.errors import EigdistError

from .datafile import check_participant, check_session


@dataclass(frozen=True)
class ParticipantInfo:
    """Who runs the session; the optional fields go to the session sidecar only."""

    participant: str
    session: int = 1
    age: int | None = None
    sex: str = ""
    vision: str = ""

    def extra(self) -> dict:
        """The optional fields that were given."""
        return {k: v for k, v in (("age", self.age), ("sex", self.sex), ("vision", self.vision)) if v not in (None, "")}


SEXES = ("female", "male", "other")
VISION = ("normal", "corrected")


def _session(value: Any) -> int:
    if isinstance(value, str):
        if not re.fullmatch(r"\d+", value.strip()):
            raise EigdistError(f"session must be an int >= 1, got {value!r}")
        value = int(value)
    return check_session(value)


def _age(value: Any) -> int | None:
    text = str(value).strip() if value is not None else ""
    if text and (not text.isdigit() or not 1 <= int(text) <= 120):
        raise EigdistError(f"age must be a whole number of years between 1 and 120 (or empty), got {value!r}")
    return int(text) if text else None


def _choice(name: str, allowed: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        text = (value or "").strip().lower()
        if text and text not in allowed:
            raise EigdistError(f"{name} must be one of {', '.join(allowed)} (or empty), got {value!r}")
        return text
    return check


#: Each form field and its check (raises ValueError naming the field, the value and what is allowed).
FIELDS: dict[str, Callable[[Any], Any]] = {
    "participant": check_participant, "session": _session, "age": _age,
    "sex": _choice("sex", SEXES), "vision": _choice("vision", VISION),
}


def check_info(participant: Any, session: Any = 1, age: Any = None, sex: Any = "", vision: Any = "") -> ParticipantInfo:
    """Check the participant's details (typed in the form or given as flags) and return them typed.

    Raises
    ------
    ValueError
        Naming the field, the value and what is allowed.
    """
    values = dict(participant=participant, session=session, age=age, sex=sex, vision=vision)
    return ParticipantInfo(**{name: FIELDS[name](value) for name, value in values.items()})


# ---------------------------------------------------------------- the terminal form


def participant_form(ask: Callable[[str], str] = input, *, session: int = 1,
                     write: Callable[[str], Any] = print) -> ParticipantInfo:
    """Ask for the participant's details in the terminal; a bad answer is explained and asked again.

    Fields: ID (required), session (Enter keeps ``session``), age, sex and corrected vision
    (optional: Enter skips). Raises :class:`EOFError` when the input ends.
    """
    prompts = {
        "participant": "participant ID (letters and digits): ",
        "session": f"session [{session}]: ",
        "age": "age (Enter to skip): ",
        "sex": f"sex ({'/'.join(SEXES)}; Enter to skip): ",
        "vision": f"vision ({'/'.join(VISION)}; Enter to skip): ",
    }
    answers: dict[str, Any] = {}
    for name, prompt in prompts.items():
        while name not in answers:
            text = ask(prompt).strip() or (str(session) if name == "session" else "")
            try:
                answers[name] = FIELDS[name](text)
            except EigdistError as err:
                write(f"  {err}")
    return ParticipantInfo(**answers)


# ---------------------------------------------------------------- the dialog

#: The dialog's fields, in order, with their labels (PsychoPy's dialog says that * marks a required one).
DIALOG_LABELS = {"participant": "Participant ID *", "session": "Session *", "age": "Age (optional)",
                 "sex": "Sex (optional)", "vision": "Vision (optional)"}

#: Libraries Qt's X11 plugin needs beyond PyQt's wheel (Debian packages in parentheses): without them Qt
#: aborts the whole process, so the form falls back to the terminal instead.
QT_X11_LIBRARIES = {"xcb-cursor": "libxcb-cursor0", "xcb-icccm": "libxcb-icccm4", "xcb-keysyms": "libxcb-keysyms1"}


def display_available() -> bool:
    """Whether a dialog can open: Windows and macOS have a desktop; elsewhere ``$DISPLAY`` or ``$WAYLAND_DISPLAY``."""
    return sys.platform in ("win32", "darwin") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def missing_qt_libraries() -> list[str]:
    """The Debian packages of Qt's X11 libraries that are missing on Linux (empty elsewhere)."""
    if not sys.platform.startswith("linux"):
        return []
    from ctypes.util import find_library

    return [package for library, package in QT_X11_LIBRARIES.items() if find_library(library) is None]


def participant_dialog(session: int = 1) -> ParticipantInfo | None:
    """Ask for the participant's details in a PsychoPy dialog; ``None`` when it is cancelled.

    A bad answer reopens the dialog with the answers kept and the problem (the same message as
    the terminal form's) in red above the fields.
    """
    from .psychopy_home import import_psychopy

    import_psychopy()  # PsychoPy's per-user files under this account's lock (sessions may start at once)
    from psychopy import gui

    values = {"participant": "", "session": str(session), "age": "", "sex": "", "vision": ""}
    problem = ""
    while True:
        dlg = gui.Dlg(title="eigdist: participant")
        if problem:
            dlg.addText(problem, color="red")
        widgets = {}
        for name, label in DIALOG_LABELS.items():
            choices = {"sex": ["", *SEXES], "vision": ["", *VISION]}.get(name)
            widgets[name] = dlg.addField(name, values[name], label=label, choices=choices,
                                         required=name in ("participant", "session"))
        if dlg.show() is None:
            return None
        # Read the widgets, not dlg.data: PsychoPy updates data only on typed edits.
        values = {name: w.currentText() if hasattr(w, "currentText") else w.text() for name, w in widgets.items()}
        try:
            return check_info(**values)
        except EigdistError as err:
            problem = str(err)


def ask_participant(session: int = 1) -> ParticipantInfo:
    """The participant's details from the dialog when a display is available, else from the terminal form.

    Raises
    ------
    EigdistError
        The dialog was cancelled, or the terminal input ended: nothing has been written.
    """
    missing = missing_qt_libraries() if display_available() else []
    if missing:
        print(f"(no participant dialog: Qt needs {', '.join(missing)}; asking here instead)", file=sys.stderr)
    elif display_available():
        info = participant_dialog(session)
        if info is None:
            raise EigdistError("the participant dialog was cancelled; nothing was written")
        return info
    try:
        return participant_form(session=session)
    except EOFError:
        raise EigdistError("the participant form got no answer (input ended); give --participant") from None
