"""What the analysis takes from a stimulus set: its identity, eigenvalues, response curves.

Every trial row records its set (``set_id``) and its track's α ceiling (``alpha_ceiling``),
so the set is optional: given with ``--stimuli``, rows of another set are refused
(:func:`check_sets`), and its eigenvalues and response curves are used; rows of the first
trial format, which lack ``alpha_ceiling``, take the set's ceilings (the rule of
:func:`eigdist_core.contract.alpha_ceiling`). Nothing here imports :mod:`experiments`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from eigdist_core.contract import CONDITION_KEY, L2_MODEL, alpha_ceiling
from eigdist_core.stimulus_set import StimulusSet

from .load import TrialDataError
from eigdist_core.errors import EigdistError

KEY = list(CONDITION_KEY)


def load_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of the set in ``folder`` (or of the manifest file itself), its identity checked.

    A manifest edited after its build (its fields no longer give its ``set_id``) is refused,
    naming the edited fields, as ``eigdist run`` refuses it.
    """
    path = Path(folder)
    path = path / "manifest.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no stimulus-set manifest at {path}")
    return StimulusSet.open(path.parent).manifest


def condition_table(manifest: dict) -> pd.DataFrame:
    """One row per item: condition key, ``item_id``, ``eigenvalue``, ``alpha_ceiling`` (the α ceiling)."""
    set_alpha_max = float(manifest["alpha_max"])
    rows = [{**{k: item[k] for k in KEY}, "item_id": item["item_id"], "eigenvalue": item.get("eigenvalue"),
             "alpha_ceiling": alpha_ceiling(set_alpha_max, item.get("alpha_displayable_max"))}
            for item in manifest.get("items", [])]
    table = pd.DataFrame(rows, columns=[*KEY, "item_id", "eigenvalue", "alpha_ceiling"])
    table["eigenvalue"] = pd.to_numeric(table["eigenvalue"], errors="coerce")
    return table


def _files(rows: pd.DataFrame) -> str:
    files = sorted(set(rows["source_file"]))
    return ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def check_sets(trials: pd.DataFrame, manifest: dict | None = None, stimuli: str | os.PathLike | None = None) -> None:
    """Refuse rows of another set than ``manifest``'s, or (without one) rows of several sets.

    Raises
    ------
    TrialDataError
        Naming the files, their ``set_id`` and the set given (or the sets found).
    """
    if manifest is not None:
        other = trials[trials["set_id"] != manifest["set_id"]]
        if not other.empty:
            ids = ", ".join(sorted(set(other["set_id"])))
            raise TrialDataError(
                f"{_files(other)}: recorded with stimulus set {ids}, not the set given with --stimuli "
                f"{stimuli} (set_id {manifest['set_id']}); analyse them with their own set"
            )
        return
    sets = sorted(set(trials["set_id"]))
    if len(sets) > 1:
        found = "; ".join(f"{s} in {_files(trials[trials['set_id'] == s])}" for s in sets)
        raise TrialDataError(f"sessions of different stimulus sets cannot be pooled: {found}; "
                             "analyse each set on its own")


def response_curves(manifest: dict) -> pd.DataFrame:
    """Long table of the items' response curves: key, ``alpha``, ``distance`` (empty if none)."""
    frames = []
    for item in manifest.get("items", []):
        curve = item.get("response_curve") or {}
        if curve.get("alpha") and curve.get("distance"):
            frame = pd.DataFrame({"alpha": curve["alpha"], "distance": curve["distance"]})
            for k in KEY:
                frame[k] = item[k]
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*KEY, "alpha", "distance"])


def attach_ceiling(trials: pd.DataFrame, *, alpha_max: float | None = None,
                   table: pd.DataFrame | None = None) -> tuple[pd.DataFrame, str]:
    """Give every trial the ceiling of its track (its ``alpha_ceiling``), from the best source at hand.

    Order: ``alpha_max`` given (one ceiling for every row); the ``alpha_ceiling`` each row recorded; for rows of the
    first format (no ``alpha_ceiling``), the stimulus set's ``table`` (:func:`condition_table`),
    else the largest α shown in the session (catch trials included), a fallback that the
    returned text says.

    Returns
    -------
    trials, source
        The trials with a float ``alpha_ceiling`` column, and where it came from.
    """
    trials = trials.copy()
    if alpha_max is not None:
        if not np.isfinite(alpha_max) or alpha_max <= 0:
            raise EigdistError(f"alpha_max must be a positive number, got {alpha_max}")
        trials["alpha_ceiling"] = float(alpha_max)
        return trials, f"given: {alpha_max:g}"
    recorded = pd.to_numeric(trials["alpha_ceiling"], errors="coerce")
    trials["alpha_ceiling"] = recorded.astype(float)
    if recorded.notna().all():
        return trials, "alpha_ceiling recorded on each trial row"
    if table is not None:
        merged = trials.merge(table[[*KEY, "alpha_ceiling"]].rename(columns={"alpha_ceiling": "_set"}), on=KEY,
                              how="left")
        lacking = merged["alpha_ceiling"].isna()
        if merged.loc[lacking, "_set"].isna().any():
            row = merged[lacking & merged["_set"].isna()].iloc[0]
            raise EigdistError(f"{row['source_file']}, row {row['source_line']}: condition "
                             f"{tuple(row[KEY])} is not an item of the stimulus set")
        merged["alpha_ceiling"] = merged["alpha_ceiling"].fillna(merged["_set"])
        return merged.drop(columns="_set"), ("alpha_ceiling of each row; the stimulus set's ceilings for rows "
                                             "of the first format")
    fallback = trials.groupby(["participant", "session"])["alpha"].transform("max")
    trials["alpha_ceiling"] = trials["alpha_ceiling"].fillna(fallback)
    return trials, "fallback for rows without alpha_ceiling: largest alpha shown in each session (give --stimuli)"


def eigenvalues(trials: pd.DataFrame, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """λ per (image, model, layer, weights, direction) from the set, else the trials' column."""
    if table is not None:
        source = table[[*KEY, "eigenvalue"]]
    elif "eigenvalue" in trials:
        source = trials[KEY].assign(eigenvalue=pd.to_numeric(trials["eigenvalue"], errors="coerce"))
    else:
        return pd.DataFrame(columns=[*KEY, "eigenvalue"])
    return source.groupby(KEY, sort=True)["eigenvalue"].mean().dropna().reset_index()


def sensitivity_table(folder: str | os.PathLike, manifest: dict, models: Sequence[str] = ()) -> pd.DataFrame:
    """The set's sensitivity table, checked (:func:`eigdist_core.sensitivities.read_table`), plus the rows of
    ``models`` (``SPEC`` or ``SPEC=WEIGHTS``) not in the set, computed now on the set's items.

    Raises
    ------
    eigdist_core.sensitivities.SensitivityError
        No table (saying how to add one), a stale one (naming the item), a model that cannot take the set's images.
    """
    from eigdist_core.sensitivities import extra_table, parse_model_arg, read_table

    folder = Path(folder)
    folder = folder.parent if folder.is_file() else folder
    extra = [parse_model_arg(m) for m in models]
    table = pd.DataFrame(read_table(folder, manifest))
    if not extra:
        return table
    more = pd.DataFrame(extra_table(folder, manifest, extra))
    more = more[more["model"] != L2_MODEL[0]]  # the set's table has the baseline already
    return pd.concat([table, more], ignore_index=True)
