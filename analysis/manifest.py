"""What the analysis takes from a stimulus set: ceilings, eigenvalues, response curves.

The set is optional: without it the ceiling of each track comes from the
trials (an ``alpha_max`` column, else the largest α shown in the session) and
the eigenvalues from the trials' ``eigenvalue`` column.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from eigdist_core.contract import CONDITION_KEY
from eigdist_core.io import load_json
from experiments.design import conditions

KEY = list(CONDITION_KEY)


def load_manifest(folder: str | os.PathLike) -> dict:
    """Read ``<folder>/manifest.json`` (or the file itself)."""
    path = Path(folder)
    path = path / "manifest.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no stimulus-set manifest at {path}")
    return load_json(path)


def condition_table(manifest: dict) -> pd.DataFrame:
    """One row per condition: key, ``item_id``, ``eigenvalue``, ``alpha_max`` (as the experiment used)."""
    rows = [{**dict(zip(KEY, c.key)), "item_id": c.item_id, "eigenvalue": c.eigenvalue,
             "alpha_max": c.alpha_max} for c in conditions(manifest)]
    table = pd.DataFrame(rows, columns=[*KEY, "item_id", "eigenvalue", "alpha_max"])
    table["eigenvalue"] = pd.to_numeric(table["eigenvalue"], errors="coerce")
    return table


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


def attach_alpha_max(trials: pd.DataFrame, *, alpha_max: float | None = None,
                     table: pd.DataFrame | None = None) -> tuple[pd.DataFrame, str]:
    """Give every trial the ceiling of its track, from the best source at hand.

    Order: ``alpha_max`` given; the stimulus set's ``table`` (:func:`condition_table`);
    an ``alpha_max`` column in the trials; the largest α shown in the session
    (catch trials included), a fallback that the returned text says.

    Returns
    -------
    trials, source
        The trials with a float ``alpha_max`` column, and where it came from.
    """
    trials = trials.copy()
    if alpha_max is not None:
        if not np.isfinite(alpha_max) or alpha_max <= 0:
            raise ValueError(f"alpha_max must be a positive number, got {alpha_max}")
        trials["alpha_max"] = float(alpha_max)
        return trials, f"given: {alpha_max:g}"
    if table is not None:
        merged = trials.drop(columns=["alpha_max"], errors="ignore").merge(
            table[[*KEY, "alpha_max"]], on=KEY, how="left")
        if merged["alpha_max"].isna().any():
            row = merged[merged["alpha_max"].isna()].iloc[0]
            raise ValueError(f"{row['source_file']}, row {row['source_line']}: condition "
                             f"{tuple(row[KEY])} is not an item of the stimulus set")
        return merged, "stimulus-set manifest (min of the set's alpha_max and the item's displayable maximum)"
    if "alpha_max" in trials:
        values = pd.to_numeric(trials["alpha_max"], errors="coerce")
        if values.notna().all():
            trials["alpha_max"] = values.astype(float)
            return trials, "alpha_max column of the trial files"
    trials["alpha_max"] = trials.groupby(["participant", "session"])["alpha"].transform("max")
    return trials, "fallback: largest alpha shown in each session (give --stimuli or --alpha-max)"


def eigenvalues(trials: pd.DataFrame, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """λ per (image, model, layer, weights, direction) from the set, else the trials' column."""
    if table is not None:
        source = table[[*KEY, "eigenvalue"]]
    elif "eigenvalue" in trials:
        source = trials[KEY].assign(eigenvalue=pd.to_numeric(trials["eigenvalue"], errors="coerce"))
    else:
        return pd.DataFrame(columns=[*KEY, "eigenvalue"])
    return source.groupby(KEY, sort=True)["eigenvalue"].mean().dropna().reset_index()
