"""Choose a test set before any observer sits down: items and trials that tell the pool's layers apart.

The pool is a built stimulus set with its sensitivity table. Its own layers (the config's models; not
the L2 baseline or extra models) are the candidates. The criterion and the greedy allocation are
:mod:`eigdist_core.design_criterion` (the worst true layer's bound on naming a wrong layer, from the
expected log-likelihood ratio of every layer pair, ln k profiled); this module reads the pool, leaves out items a lab could not measure (with a
reason each), and writes the subset through :mod:`eigdist_core.stimulus_subset`.

Predicted thresholds need a scale: each layer's k_m is set so that its median predicted threshold
over the pool is ``typical_threshold`` (default: the geometric middle of the tracks' range,
alpha_max · 10^−1.5). An item is left out when, under any layer, its predicted threshold lies above
its α ceiling or below the display's smallest step (half a display level, 0.5 / (2^bits − 1), divided
by the item's largest pixel value): whichever layer the observer sees through, its track must be able
to converge. Items with s = 0 under a layer are left out too (the comparison predicts them at chance).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eigdist_core.contract import SELECTION_CRITERION, alpha_ceiling, candidate_name
from eigdist_core.design_criterion import (
    Constraints, DesignError, layer_pairs, pair_contrasts, select, trial_divergence,
)
from eigdist_core.sensitivities import read_table, set_models
from eigdist_core.stimulus_set import StimulusSet, open_verified
from eigdist_core.stimulus_subset import check_new_folder, write_subset

from .psychometric import SLOPE_PRIOR

#: The observer the criterion assumes: the fits' prior slope, the simulated observers' lapse.
DEFAULT_SLOPE = float(np.exp(SLOPE_PRIOR["weibull"][0]))
DEFAULT_LAPSE = 0.02


@dataclass(frozen=True)
class Observer:
    """The noise model of the criterion (docs/analysis.md, "Choosing the stimuli")."""

    function: str = "weibull"
    slope: float = DEFAULT_SLOPE
    lapse: float = DEFAULT_LAPSE
    n_alternatives: int = 2
    typical_threshold: float | None = None
    bits: int = 8


@dataclass
class Pool:
    """The pool's items with every layer's s (items × layers), their α ceilings and largest pixel values."""

    stimuli: StimulusSet
    layers: list[str]
    item_ids: list[str]
    image_ids: list[str]
    s: np.ndarray
    ceiling: np.ndarray
    peak: np.ndarray


def read_pool(folder: str | Path) -> Pool:
    """Open and verify the pool, and gather what the criterion needs.

    Raises
    ------
    DesignError
        A pool with fewer than two layers (naming them).
    SensitivityError, SetError
        A pool without a sensitivity table, or one that fails verification (naming what).
    """
    stimuli = open_verified(folder)
    manifest = stimuli.manifest
    models = set_models(manifest)
    if len(models) < 2:
        names = ", ".join(m.spec for m in models) or "none"
        raise DesignError(f"{folder}: the pool has {len(models)} layer ({names}); a design tells layers apart: "
                          "build the pool with at least 2 [[models]]")
    table = pd.DataFrame(read_table(folder, manifest))
    table["spec"] = table["model"] + ":" + table["layer"]
    wide = table.pivot_table(index="item_id", columns=["spec", "weights"], values="s", aggfunc="first")
    keys = [(m.spec, m.weights) for m in models]
    items = manifest["items"]
    ids = [it["item_id"] for it in items]
    set_max = float(manifest["alpha_max"])
    return Pool(stimuli, [candidate_name(*m.spec.split(":", 1), m.weights) for m in models], ids,
                [it["image_id"] for it in items], wide.loc[ids, keys].to_numpy(dtype=float),
                np.array([alpha_ceiling(set_max, it.get("alpha_displayable_max")) for it in items]),
                np.array([float(np.abs(stimuli.item(i)).max()) for i in ids]))


def typical_threshold(pool: Pool, observer: Observer) -> float:
    """The median predicted threshold of every layer: the observer's, or alpha_max · 10^−1.5."""
    return observer.typical_threshold or float(pool.stimuli.manifest["alpha_max"]) * 10 ** -1.5


def exclusions(pool: Pool, observer: Observer, per_image: int) -> dict[str, str]:
    """Item id → why it is left out: invisible to a layer, a threshold out of the measurable range, or its
    image has too few eligible directions."""
    typical = typical_threshold(pool, observer)
    step = 0.5 / (2 ** observer.bits - 1) / np.maximum(pool.peak, 1e-300)
    out = {}
    with np.errstate(divide="ignore"):
        log_t = -0.5 * np.log(pool.s)
    for m, layer in enumerate(pool.layers):
        visible = pool.s[:, m] > 0
        t = typical * np.exp(log_t[:, m] - np.median(log_t[visible, m]))
        for v in np.flatnonzero(~visible):
            out.setdefault(pool.item_ids[v], f"invisible to {layer} (s = 0)")
        for v in np.flatnonzero(visible & (t > pool.ceiling)):
            out.setdefault(pool.item_ids[v], f"predicted threshold {t[v]:.3g} under {layer} exceeds the α ceiling "
                                             f"{pool.ceiling[v]:.3g}")
        for v in np.flatnonzero(visible & (t < step)):
            out.setdefault(pool.item_ids[v], f"predicted threshold {t[v]:.3g} under {layer} is below the display's "
                                             f"smallest step {step[v]:.3g} ({observer.bits} bits)")
    left = pd.Series([i not in out for i in pool.item_ids], index=pool.image_ids).groupby(level=0).sum()
    for v, image in enumerate(pool.image_ids):
        if pool.item_ids[v] not in out and left[image] < per_image:
            out[pool.item_ids[v]] = f"image {image} has fewer than {per_image} eligible directions"
    return out


def choose(pool: Pool, limits: Constraints, observer: Observer = Observer()) -> dict:
    """The ``selection`` entry of the subset (docs/formats.md, "Subsets"): trials per item and what was left out.

    Raises
    ------
    DesignError
        A budget or caps the constraints do not allow, or no eligible image left (naming the first reason).
    """
    limits.check()
    excluded = exclusions(pool, observer, limits.per_image)
    keep = np.array([i not in excluded for i in pool.item_ids])
    if not keep.any():
        first = next(iter(excluded.items()), ("", "the pool is empty"))
        raise DesignError(f"every item of the pool is left out (e.g. {first[0]}: {first[1]})")
    delta = pair_contrasts(pool.s[keep])
    image = pd.factorize(np.asarray(pool.image_ids)[keep])[0]
    g = trial_divergence(observer.slope, observer.lapse, 1.0 / observer.n_alternatives, observer.function)
    design = select(delta, image, g, limits)
    ids = np.asarray(pool.item_ids)[keep]
    i, j = layer_pairs(len(pool.layers))
    return {
        "criterion": SELECTION_CRITERION, "value": design.value,
        "pairs": [{"layers": [pool.layers[a], pool.layers[b]], "expected_llr": float(x)}
                  for a, b, x in zip(i, j, design.information)],
        "bounds": {layer: float(b) for layer, b in zip(pool.layers, design.bounds)},
        "layers": pool.layers, **asdict(limits), **asdict(observer),
        "typical_threshold": typical_threshold(pool, observer),
        "trials": {str(ids[v]): int(design.trials[v]) for v in np.flatnonzero(design.trials)},
        "excluded": excluded,
    }


def select_subset(pool_folder: str | Path, out: str | Path, limits: Constraints,
                  observer: Observer = Observer()) -> tuple[StimulusSet, dict]:
    """Read the pool, choose the design and write the subset into ``out``; return it and its selection."""
    check_new_folder(out)
    pool = read_pool(pool_folder)
    selection = choose(pool, limits, observer)
    trials = selection.pop("trials")
    return write_subset(pool.stimuli, out, trials, selection), {**selection, "trials": trials}
