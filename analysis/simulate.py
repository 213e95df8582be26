"""Synthetic labs: trial tables from known thresholds, for tests, power and demos.

A lab is a table of true thresholds per participant × image × (model, layer,
weights) × direction (:func:`make_truth`), turned into contract trial rows by a
Weibull observer (:func:`simulate_trials`; :func:`eigdist_core.psychometric_function.weibull`,
the threshold at F = ½ as in the fits and the tracks) either at constant stimuli or
through the experiment's own adaptive tracks (``experiments.staircase.make_track``, passed in
by the caller: the analysis never imports the experiment).
Everything is seeded: the same arguments give the same trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from eigdist_core.contract import TRACK_KEY
from eigdist_core.psychometric_function import weibull
from eigdist_core.errors import EigdistError

Layer = tuple[str, str, str]  # (model, layer, weights)
#: Constant-stimulus levels as multiples of the true threshold (a pilot-informed design).
DEFAULT_LEVELS = tuple(2.0 ** np.linspace(-0.75, 0.75, 6))
#: The ``set_id`` of simulated rows that belong to no stimulus set.
SIMULATED_SET = "0" * 16
METHODS = ("constant", "quest", "updown")
TASK = {2: "2afc_ref", 3: "3afc_oddity"}


@dataclass(frozen=True)
class LabSpread:
    """Between-unit spreads of a synthetic lab, in log10 units (standard deviations).

    Attributes
    ----------
    participant
        Overall sensitivity of a participant (shifts every threshold).
    image
        Overall visibility of distortions at an image.
    d
        Participant × image scatter of D (and of D_random) around the layer's value.
    """

    participant: float = 0.1
    image: float = 0.1
    d: float = 0.1


def make_truth(layers: Mapping[Layer, float], *, n_participants: int = 6, n_images: int = 6,
               d_random: float | Mapping[Layer, float] = 0.0, log10_t_max: float = 0.0,
               spread: LabSpread = LabSpread(), predicted_d: Mapping[Layer, float] | None = None,
               seed: int = 0) -> pd.DataFrame:
    """True thresholds of a synthetic lab.

    log10 T_max = log10_t_max + participant + image effects; log10 T_min =
    log10 T_max + D (layer value + scatter); log10 T_random = log10 T_max +
    D_random (+ scatter).

    Parameters
    ----------
    layers
        True mean D per (model, layer, weights).
    n_participants, n_images
        Lab size (participants ``p01…``, images ``img1…``).
    d_random
        True mean D_random, one value or one per layer (0: the max direction is no
        more visible than a random one).
    log10_t_max
        Mean log10 threshold of the max direction.
    spread
        Standard deviations of the random effects.
    predicted_d
        The model's own prediction of D per layer; written as an ``eigenvalue``
        column (λ_max = 1, λ_min = 10^(−2·prediction)) so reports can compare.
    seed
        Seed of the random effects.

    Returns
    -------
    pandas.DataFrame
        Condition columns, ``threshold`` and ``eigenvalue`` (NaN for random).
    """
    if not layers:
        raise EigdistError("layers must name at least one (model, layer, weights) with its true D")
    rng = np.random.default_rng(seed)
    participants = [f"p{i + 1:02d}" for i in range(n_participants)]
    images = [f"img{i + 1}" for i in range(n_images)]
    p_eff = rng.normal(0, spread.participant, n_participants)
    i_eff = rng.normal(0, spread.image, n_images)
    rows = []
    for (model, layer, weights), d in layers.items():
        dr = d_random[(model, layer, weights)] if isinstance(d_random, Mapping) else d_random
        pred = None if predicted_d is None else predicted_d[(model, layer, weights)]
        for pi, participant in enumerate(participants):
            for ii, image in enumerate(images):
                base = log10_t_max + p_eff[pi] + i_eff[ii]
                logs = {"max": base, "min": base + d + rng.normal(0, spread.d),
                        "random": base + dr + rng.normal(0, spread.d)}
                eig = {"max": 1.0, "min": np.nan if pred is None else 10.0 ** (-2 * pred), "random": np.nan}
                for direction, log_t in logs.items():
                    rows.append((participant, image, model, layer, weights, direction, 10.0 ** log_t,
                                 eig[direction] if pred is not None else np.nan))
    return pd.DataFrame(rows, columns=[*TRACK_KEY, "threshold", "eigenvalue"])


def _constant(truth: pd.DataFrame, n_trials: int, levels: Sequence[float],
              alpha_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Condition index and α of every trial: levels × true threshold, equal counts, capped."""
    factors = np.resize(np.asarray(levels, float), n_trials)
    cond = np.repeat(np.arange(len(truth)), n_trials)
    alpha = np.minimum(truth["threshold"].to_numpy()[cond] * np.tile(factors, len(truth)), alpha_max)
    return cond, alpha


def _adaptive(truth: pd.DataFrame, n_trials: int, method: str, alpha_max: float, slope: float,
              lapse: float, n_alternatives: int, seed: int, rng: np.random.Generator,
              make_track: Callable[..., Any], track_options: Mapping) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trials drawn through the experiment's own tracks (``make_track``), one per condition."""
    cond = np.repeat(np.arange(len(truth)), n_trials)
    alpha = np.empty(len(cond))
    correct = np.empty(len(cond), bool)
    for c, threshold in enumerate(truth["threshold"].to_numpy()):
        track = make_track(method, alpha_max, n_alternatives, seed=seed * 100003 + c, **track_options)
        for t in range(n_trials):
            a = float(track.next_alpha())
            ok = bool(rng.random() < weibull(a, threshold, slope, 1.0 / n_alternatives, lapse))
            track.update(a, ok)
            alpha[c * n_trials + t], correct[c * n_trials + t] = a, ok
    return cond, alpha, correct


def simulate_trials(truth: pd.DataFrame, *, n_trials: int = 60, method: str = "constant",
                    alpha_max: float = 30.0, slope: float = 3.5, lapse: float = 0.02,
                    n_alternatives: int = 2, levels: Sequence[float] = DEFAULT_LEVELS,
                    seed: int = 0, set_id: str = SIMULATED_SET, make_track: Callable[..., Any] | None = None,
                    **track_options) -> pd.DataFrame:
    """Contract trial rows (one session per participant) answered by a Weibull observer.

    Parameters
    ----------
    truth
        From :func:`make_truth` (condition columns and ``threshold``).
    n_trials
        Trials per condition.
    method
        ``"constant"`` (``levels`` × the true threshold, capped at ``alpha_max``),
        or ``"quest"`` / ``"updown"``: through ``make_track``.
    alpha_max
        Largest amplitude shown.
    slope, lapse, n_alternatives
        The observer: Weibull slope β, lapse rate, alternatives (guess = 1/n).
    levels
        Constant-stimulus levels relative to the true threshold.
    seed
        Seed of the responses (and of the tracks).
    set_id
        The ``set_id`` column (the rows' ``alpha_ceiling`` is ``alpha_max``).
    make_track
        For ``quest`` and ``updown``: the experiment's track factory,
        ``experiments.staircase.make_track`` (given by the caller, so that the analysis
        never imports the experiment).
    **track_options
        Passed to ``make_track``.

    Returns
    -------
    pandas.DataFrame
        Rows with every required column, interleaved at random within each
        session, plus ``eigenvalue`` where the truth has one.
    """
    if method not in METHODS:
        raise EigdistError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method != "constant" and make_track is None:
        raise EigdistError(f"method {method!r} draws trials through the experiment's tracks: pass "
                         "make_track=experiments.staircase.make_track")
    if n_alternatives not in TASK:
        raise EigdistError(f"n_alternatives must be 2 or 3, got {n_alternatives}")
    if int(n_trials) < 1:
        raise EigdistError(f"n_trials must be >= 1, got {n_trials}")
    rng = np.random.default_rng(seed)
    truth = truth.reset_index(drop=True)
    if method == "constant":
        cond, alpha = _constant(truth, n_trials, levels, alpha_max)
        p = weibull(alpha, truth["threshold"].to_numpy()[cond], slope, 1.0 / n_alternatives, lapse)
        correct = rng.random(len(cond)) < p
    else:
        cond, alpha, correct = _adaptive(truth, n_trials, method, alpha_max, slope, lapse,
                                         n_alternatives, seed, rng, make_track, track_options)
    # One order for the whole lab (by participant, trials interleaved at random), applied
    # to integer indices before any text column is built: text columns are slow to permute.
    person = pd.factorize(truth["participant"])[0][cond]
    order = np.lexsort((rng.random(len(cond)), person))
    cond, alpha, correct = cond[order], alpha[order], correct[order]
    item = (truth["image_id"] + "__" + truth["model"] + "__" + truth["layer"] + "__"
            + truth["weights"].str.replace(":", "-") + "__" + truth["direction"])
    columns = {c: truth[c].to_numpy(dtype=object)[cond] for c in TRACK_KEY}
    trial = np.arange(len(cond)) - np.searchsorted(person[order], person[order]) + 1
    rows = pd.DataFrame({
        "participant": columns["participant"], "session": 1, "trial": trial,
        **{c: columns[c] for c in TRACK_KEY[1:]},
        "item_id": item.to_numpy(dtype=object)[cond], "alpha": alpha, "correct": correct,
        "n_alternatives": n_alternatives, "task": TASK[n_alternatives], "is_catch": False,
        "catch_type": "", "is_practice": False,
        "observer": f"weibull;slope={slope:g};lapse={lapse:g};seed={seed}", "calibrated": True,
        "set_id": set_id, "alpha_ceiling": float(alpha_max),
    })
    if "eigenvalue" in truth:
        rows["eigenvalue"] = truth["eigenvalue"].to_numpy()[cond]
    return rows
