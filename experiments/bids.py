"""The BIDS dataset's own files: created by the first session, added to (never overwritten) by later ones.

``dataset_description.json``, ``README`` and ``participants.json`` are written only when
missing; ``participants.tsv`` gains a row for a new participant and keeps every row it has.
Its update is a read-modify-write, so it runs under a lock (two sessions of different
participants may start at once) and lands with an atomic rename.
"""

from __future__ import annotations

from pathlib import Path

from eigdist_core import __version__
from eigdist_core.contract import MISSING
from eigdist_core.io import atomic_write_bytes, save_json
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


def add_participant(root: Path, participant: str, info: dict) -> None:
    """Add ``participant`` to ``participants.tsv`` unless it is there (rows are never changed).

    Also creates the dataset's other files (:func:`ensure_dataset`). ``info`` holds the
    optional ``age``, ``sex`` and ``vision``.
    """
    with hold(root / "sourcedata" / "participants.lock", f"{root / 'participants.tsv'}", wait=30):
        ensure_dataset(root)
        path = root / "participants.tsv"
        text = path.read_text(encoding="utf-8") if path.exists() else "\t".join(PARTICIPANT_COLUMNS) + "\n"
        labels = {line.split("\t", 1)[0] for line in text.splitlines()[1:]}
        if f"sub-{participant}" in labels:
            return
        values = {"participant_id": f"sub-{participant}", **info}
        row = "\t".join(str(values.get(c)) if values.get(c) not in (None, "") else MISSING
                        for c in PARTICIPANT_COLUMNS)
        atomic_write_bytes(path, (text + row + "\n").encode("utf-8"))
