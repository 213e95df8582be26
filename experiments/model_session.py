"""The models track inside a session: which item and α a chosen trial shows, the posterior columns, the stop.

Under ``track.kind = "models"`` (docs/experiment.md) the plan marks each main trial ``common`` or
``chosen`` (:func:`experiments.design.main_designs`). :class:`ModelSession` holds the posterior over the
set's layers (:class:`experiments.model_track.ModelTrack`), fed by every tracked row of the participant
on the set, common and chosen alike, and answers the engine's three questions:

- which condition and α a chosen trial shows: the candidate of largest expected information about the
  layer among the items of the trial's image (the plan's block image), timed;
- what the posterior columns of a row hold (``design``, ``map_layer``, ``p_map``, ``posterior``,
  ``choice_ms``; docs/formats.md);
- whether the session stops: one layer's posterior at ``stop_at`` (< 1; 1 never stops on the posterior),
  or ``budget`` tracked trials.

The posterior is a pure function of the saved ``(item, α, correct)`` rows, so a resumed session rebuilds it
by replaying them and makes the choices an unbroken one would have made.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from eigdist_core.errors import EigdistError

from .config import ExperimentConfig
from .design import Condition, conditions
from .model_track import ModelGrid, ModelTrack, open_grid


class StoredSet(Protocol):
    """What :func:`model_grid` reads of a set: its folder and manifest (``eigdist_core.stimulus_set.StimulusSet``).

    Not part of :class:`experiments.engine.StimulusSource`: the in-memory sets of the tests and benchmarks
    have no folder (a models-track engine over one is given its ``grid``).
    """

    path: Path
    manifest: dict


def model_grid(source: StoredSet, config: ExperimentConfig) -> ModelGrid:
    """The models track's grid of a stimulus set opened for a session (its folder is ``source.path``).

    Raises
    ------
    EigdistError
        A set with fewer than two layers, or without a valid sensitivity table (saying how to add one).
    """
    opts = config.track_options
    return open_grid(source.path, source.manifest, config.n_alternatives, n_alpha=opts["n_alpha"], n_k=opts["n_k"])


class ModelSession:
    """The posterior of one participant on one set, its choices and its stopping rule.

    Parameters
    ----------
    grid
        :func:`model_grid` of the set (its items are the manifest's, in order).
    manifest
        The set's manifest (its conditions).
    config
        The experiment config (``track_options``: ``stop_at``, ``budget``).
    rows
        The participant's saved tracked rows of this set (earlier sessions, then this one), in order.
    """

    def __init__(self, grid: ModelGrid, manifest: dict, config: ExperimentConfig, rows: Iterable[dict]) -> None:
        self.grid, self.track = grid, ModelTrack(grid)
        self.stop_at, self.budget = config.track_options["stop_at"], config.track_options["budget"]
        self.index = {item: i for i, item in enumerate(grid.items)}
        self.conditions = {c.item_id: c for c in conditions(manifest)}
        by_image: dict[str, list[int]] = {}
        for cond in self.conditions.values():
            by_image.setdefault(cond.image_id, []).append(self.index[cond.item_id])
        self.among = {image: grid.subset(items) for image, items in by_image.items()}
        empty = sorted(image for image, sub in self.among.items() if not sub.cand_item.size)
        if empty:
            raise EigdistError(f"track kind 'models': image {empty[0]!r} has no item whose alpha ceiling reaches "
                               f"the α grid's start {grid.alphas[0]:g}; rebuild the set or choose another track kind")
        for row in rows:
            self.update(row)

    def update(self, row: dict) -> None:
        """Multiply in one tracked row's response (rows of items outside the set's grid are skipped)."""
        if row["item_id"] in self.index:
            self.track.update(self.index[row["item_id"]], float(row["alpha"]), bool(row["correct"]))

    def choose(self, image_id: str) -> tuple[Condition, float, float]:
        """The condition and α of a chosen trial on ``image_id``, and the time the choice took (ms)."""
        start = time.perf_counter()
        item, alpha = self.track.choose(self.among[image_id])
        ms = (time.perf_counter() - start) * 1e3
        return self.conditions[self.grid.items[item]], alpha, ms

    def stop_reason(self) -> str | None:
        """Why the session ends now (a layer decided, the budget spent), or None."""
        layer, p = self.track.map_layer()
        if p >= self.stop_at and self.stop_at < 1:  # 1: never (a posterior can round to exactly 1)
            return f"{layer} reached a posterior of {p:.3f} (stop_at {self.stop_at:g})"
        if self.budget is not None and self.track.n_trials >= self.budget:
            return f"the budget of {self.budget} tracked trials is spent ({layer} leads at {p:.3f})"
        return None

    def columns(self) -> dict:
        """The posterior columns of the row just recorded (docs/formats.md)."""
        probabilities = self.track.layer_probabilities()
        m = int(np.argmax(probabilities))
        return {"map_layer": self.grid.layers[m], "p_map": float(probabilities[m]),
                "posterior": json.dumps(dict(zip(self.grid.layers, map(float, probabilities))))}

    def state(self) -> dict:
        """Plain data: the trials fed and the posterior of each layer."""
        return {"n_trials": self.track.n_trials, **self.columns()}


def choice_times(rows: Iterable[dict]) -> list[float]:
    """The ``choice_ms`` of the rows that have one (the chosen trials)."""
    return [r["choice_ms"] for r in rows if r.get("choice_ms") is not None]


def summary_lines(rows: list[dict]) -> list[str]:
    """End-of-session lines of a models session: the leading layer and the choice times (none otherwise)."""
    last = next((r for r in reversed(rows) if r.get("map_layer")), None)
    if last is None:
        return []
    lines = [f"most probable layer: {last['map_layer']} (posterior {last['p_map']:.3f})"]
    times = choice_times(rows)
    if times:
        lines.append(f"choice time: median {np.median(times):.2f} ms, 99th percentile "
                     f"{np.percentile(times, 99):.2f} ms over {len(times)} chosen trials")
    return lines
