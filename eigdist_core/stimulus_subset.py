"""A stimulus set made of some items of another: byte-for-byte copies, a manifest that names its parent.

The subset keeps the parent's config, versions and models (so its ``build_id``), copies the chosen
items and their images unchanged (same sha256), adds ``parent`` and ``selection`` to the manifest
(docs/formats.md, "Subsets"; both are identity fields, so the selection is part of the subset's
``set_id``), and carries the parent's sensitivity rows of the chosen items, re-tied to the subset.
It is verified like any set (``eigdist stimuli verify``).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import shutil
from datetime import datetime, timezone
from pathlib import Path

from .contract import SELECTION_FIELDS, SENSITIVITY_FILE
from .errors import EigdistError
from .io import atomic_write_bytes
from .sensitivities import items_digest
from .stimulus_set import StimulusSet, safe_name, write_manifest


def write_subset(parent: StimulusSet, out: str | Path, trials: dict[str, int], selection: dict) -> StimulusSet:
    """Write the subset of ``parent`` holding the items of ``trials`` into the new folder ``out``; open it.

    Parameters
    ----------
    parent
        The pool, opened (and verified) by the caller.
    out
        A folder that does not exist yet, or is empty.
    trials
        Trials per chosen item (item id → trials > 0), recorded as ``selection.trials``.
    selection
        The rest of the manifest's ``selection`` entry (:data:`~eigdist_core.contract.SELECTION_FIELDS`
        but ``trials``).

    Raises
    ------
    EigdistError
        ``out`` exists and is not empty; an item id that is not the parent's.
    """
    out = check_new_folder(out)
    manifest = _manifest(parent, out, trials, selection)
    for entry in [*manifest["images"], *manifest["items"]]:
        (out / entry["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(parent.path / entry["file"], out / entry["file"])
    if (parent.path / "config.toml").is_file():
        shutil.copyfile(parent.path / "config.toml", out / "config.toml")
    write_manifest(out, manifest)  # seals: the subset's set_id, which its sensitivity entry names
    if parent.manifest.get("sensitivities"):
        data = _table_rows(parent, set(trials))
        atomic_write_bytes(out / SENSITIVITY_FILE, data)
        manifest["sensitivities"] = dict(parent.manifest["sensitivities"], sha256=hashlib.sha256(data).hexdigest(),
                                         set_id=manifest["set_id"], items_sha256=items_digest(manifest))
        write_manifest(out, manifest)
    return StimulusSet.open(out)


def check_new_folder(out: str | Path) -> Path:
    """``out`` as a Path, when it does not exist or is an empty folder (before any work).

    Raises
    ------
    EigdistError
        Naming ``out``.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EigdistError(f"--out {out}: exists and is not an empty folder; give a new folder for the subset")
    return out


def _manifest(parent: StimulusSet, out: Path, trials: dict[str, int], selection: dict) -> dict:
    """The parent's manifest with only the chosen items and their images, ``parent`` and ``selection``."""
    unknown = [i for i in trials if i not in {it["item_id"] for it in parent.items}]
    if unknown:
        raise EigdistError(f"item {unknown[0]!r} is not an item of the pool {parent.path}")
    manifest = copy.deepcopy({k: v for k, v in parent.manifest.items() if k not in ("sensitivities", "digests")})
    manifest["items"] = [it for it in manifest["items"] if it["item_id"] in trials]
    shown = {it["image_id"] for it in manifest["items"]}
    manifest["images"] = [im for im in manifest["images"] if im["image_id"] in shown]
    manifest["name"] = safe_name(out.resolve().name)
    manifest["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    manifest["parent"] = {"set_id": parent.set_id, "name": parent.manifest["name"],
                          "build_id": parent.manifest["build_id"]}
    manifest["selection"] = {**selection, "trials": {i: int(n) for i, n in trials.items()}}
    missing = [f for f in SELECTION_FIELDS if f not in manifest["selection"]]
    if missing:
        raise EigdistError(f"the selection lacks {', '.join(missing)} (docs/formats.md, 'Subsets')")
    return manifest


def _table_rows(parent: StimulusSet, chosen: set[str]) -> bytes:
    """The parent's sensitivity table, header and the rows of the chosen items, as the parent wrote them."""
    text = (parent.path / parent.manifest["sensitivities"]["file"]).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([rows[0], *(r for r in rows[1:] if r[0] in chosen)])
    return buffer.getvalue().encode("utf-8")
