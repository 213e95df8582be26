"""The BIDS dataset's own files: created by the first session, added to (never overwritten) by later ones.

``dataset_description.json``, ``README`` and ``participants.json`` are written only when
missing; ``participants.tsv`` gains a row for a new participant and keeps every row and
column it has, also after a spreadsheet re-saved it (written back as BIDS TSV).
Its update is a read-modify-write, so it runs under a lock (two sessions of different
participants may start at once) and lands with an atomic rename.
"""

from __future__ import annotations

import csv
from pathlib import Path

from eigdist_core import __version__
from eigdist_core.contract import MISSING
from eigdist_core.errors import EigdistError
from eigdist_core.io import atomic_write_bytes, decode_text, save_json
from eigdist_core.locks import hold

#: The columns of participants.tsv: the BIDS label and the form's optional details.
PARTICIPANT_COLUMNS = ("participant_id", "age", "sex", "vision")

PARTICIPANTS_JSON = {
    "participant_id": {"Description": "participant label (sub-<label>)"},
    "age": {"Description": "age at the first session", "Units": "year"},
    "sex": {"Description": "sex as given by the participant",
            "Levels": {"female": "female", "male": "male", "other": "other"}},
    "vision": {"Description": "vision as given by the participant",
               "Levels": {"normal": "normal vision", "corrected": "corrected to normal"}},
}

README = """\
Noticeability of eigendistortions: behavioural data written by eigdist {version}.

Each session is sub-<p>/ses-<s>/beh/sub-<p>_ses-<s>_task-noticeability_beh.tsv, one row per
trial, described column by column in its _beh.json sidecar, which also holds the session's
record (stimulus set, experiment config, monitor, runs) under "eigdist". PsychoPy's own files
are under sourcedata/. The format is described in eigdist's docs/formats.md.
"""


def ensure_dataset(root: Path) -> None:
    """Create the dataset's description, README and participants.json if they are missing."""
    description = {
        "Name": "eigdist noticeability experiment", "BIDSVersion": "1.10.0", "DatasetType": "raw",
        "GeneratedBy": [{"Name": "eigdist", "Version": __version__}],
    }
    files = {
        "dataset_description.json": lambda p: save_json(p, description),
        "README": lambda p: atomic_write_bytes(p, README.format(version=__version__).encode("utf-8")),
        "participants.json": lambda p: save_json(p, PARTICIPANTS_JSON),
    }
    for name, write in files.items():
        if not (root / name).exists():
            write(root / name)


class ParticipantsFileError(EigdistError):
    """``participants.tsv`` cannot be read as a table of participants; the message names it and the fix."""


def read_participants(path: Path) -> tuple[list[str], list[list[str]]]:
    """The columns and rows of a ``participants.tsv`` as any editor may have saved it.

    A spreadsheet's re-save is read as it is: UTF-8 with or without a byte-order mark, or
    UTF-16; Windows line endings; separated by tabs, commas or semicolons (the header's first
    one of these, in that order); columns added by the lab. Empty cells become ``n/a``.

    Raises
    ------
    ParticipantsFileError
        If the text cannot be decoded or the header has no ``participant_id``.
    """
    try:
        text = decode_text(path.read_bytes(), path)
    except EigdistError as exc:
        named = str(exc).replace(path.name, str(path), 1)  # decode_text names the file only
        raise ParticipantsFileError(f"{named}, or move it away (it is written anew)") from None
    lines = text.splitlines()
    header = lines[0] if lines else ""
    delimiter = next((d for d in "\t,;" if d in header), "\t")
    table = [row for row in csv.reader(lines, delimiter=delimiter) if any(cell.strip() for cell in row)]
    columns = [c.strip() for c in table[0]] if table else []
    if "participant_id" not in columns:
        raise ParticipantsFileError(
            f"{path}: no participant_id column in its header {header[:80]!r}; restore the file, or move it away "
            "(it is written anew with this session's participant)")
    width = len(columns)
    rows = [[_cell(c) for c in row[:width]] + [MISSING] * (width - len(row)) for row in table[1:]]
    return columns, rows


def _cell(text: str) -> str:
    """A BIDS TSV cell: no tabs or line breaks, ``n/a`` for empty."""
    text = " ".join(text.split())
    return text or MISSING


def add_participant(root: Path, participant: str, info: dict) -> None:
    """Add ``participant`` to ``participants.tsv`` unless it is there (rows are never changed).

    Also creates the dataset's other files (:func:`ensure_dataset`). ``info`` holds the
    optional ``age``, ``sex`` and ``vision``. A file re-saved by a spreadsheet
    (:func:`read_participants`) is written back as BIDS TSV, every column and row kept,
    ``participant_id`` first and this module's columns added where missing.
    """
    with hold(root / "sourcedata" / "participants.lock", f"{root / 'participants.tsv'}", wait=30):
        ensure_dataset(root)
        path = root / "participants.tsv"
        columns, rows = read_participants(path) if path.exists() else (list(PARTICIPANT_COLUMNS), [])
        at = columns.index("participant_id")
        if f"sub-{participant}" not in {row[at] for row in rows}:
            values = {"participant_id": f"sub-{participant}", **info}
            rows.append([_cell(str(values.get(c) if values.get(c) is not None else "")) for c in columns])
        order = ["participant_id", *[c for c in columns if c != "participant_id"],
                 *[c for c in PARTICIPANT_COLUMNS if c not in columns]]
        index = {c: i for i, c in enumerate(columns)}
        lines = ["\t".join(order)] + ["\t".join(row[index[c]] if c in index else MISSING for c in order)
                                      for row in rows]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        if not path.exists() or path.read_bytes() != data:
            atomic_write_bytes(path, data)
