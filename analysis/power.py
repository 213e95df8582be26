"""Planning by simulation: how many observers and trials separate two layers by a given D.

For each design (observers × trials per condition) many synthetic labs are
drawn (:mod:`analysis.simulate`), fitted (:func:`fit_thresholds`, all labs in
one call) and bootstrapped exactly as ``eigdist analyze`` does. Power is the
share of labs whose 95 % CI of the paired difference D_a − D_b lies above 0.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from .psychometric import FitOptions, fit_thresholds
from .ranking import bootstrap_means, cell_sums, compute_d
from .simulate import LabSpread, make_truth, simulate_trials
from eigdist_core.errors import EigdistError

POWER_COLUMNS = ["observers", "trials", "images", "delta_d", "power", "p_order", "median_ci_width", "labs"]


def _validate(delta_d: float, observers: Sequence[int], trials: Sequence[int], n_images: int, n_labs: int) -> None:
    if not np.isfinite(delta_d) or delta_d <= 0:
        raise EigdistError(f"delta_d must be a positive number of log10 units, got {delta_d}")
    for name, values, low in (("observers", observers, 2), ("trials", trials, 10)):
        if not values or any(int(v) != v or v < low for v in values):
            raise EigdistError(f"{name} must be integers >= {low}, got {list(values)}")
    if n_images < 1 or n_labs < 2:
        raise EigdistError(f"images must be >= 1 and labs >= 2, got {n_images} and {n_labs}")


def power_table(delta_d: float, observers: Sequence[int], trials: Sequence[int], *, n_images: int = 6,
                n_labs: int = 100, d_low: float = 0.3, method: str = "constant", n_boot: int = 200,
                spread: LabSpread = LabSpread(), alpha_max: float = 30.0, seed: int = 0,
                progress: bool = True, make_track: Callable[..., Any] | None = None) -> pd.DataFrame:
    """Power to separate two layers whose true D differ by ``delta_d``.

    Parameters
    ----------
    delta_d
        True difference of mean D between the two layers (log10 units).
    observers, trials
        Designs to try: participants per lab, trials per condition.
    n_images
        Images per lab.
    n_labs
        Synthetic labs per design.
    d_low
        True D of the weaker layer (the other has ``d_low + delta_d``).
    method
        How trials are drawn: ``constant``, ``quest`` or ``updown`` (slow: real tracks).
    n_boot
        Bootstrap draws per lab.
    spread
        Between-participant, between-image and D scatter (log10 SD).
    alpha_max
        Ceiling of the tracks.
    seed
        Seed of everything.
    progress
        Show a progress bar.
    make_track
        The experiment's track factory, for ``quest`` and ``updown`` (see :func:`simulate_trials`).

    Returns
    -------
    pandas.DataFrame
        Columns ``observers, trials, images, delta_d, power`` (CI of D_a − D_b above 0),
        ``p_order`` (mean D_a > mean D_b), ``median_ci_width``, ``labs``.
    """
    _validate(delta_d, observers, trials, n_images, n_labs)
    layers = {("model", "a", "w"): d_low + delta_d, ("model", "b", "w"): d_low}
    rows = []
    designs = [(int(o), int(t)) for o in observers for t in trials]
    for k, (n_obs, n_trials) in enumerate(tqdm(designs, desc="power", disable=not progress)):
        truths = []
        for lab in range(n_labs):
            truth = make_truth(layers, n_participants=n_obs, n_images=n_images, spread=spread,
                               seed=seed * 1_000_003 + k * 10_007 + lab)
            truth["participant"] = f"lab{lab:04d}-" + truth["participant"]
            truths.append(truth[truth["direction"] != "random"])
        lab_trials = simulate_trials(pd.concat(truths, ignore_index=True), n_trials=n_trials, method=method,
                                     alpha_max=alpha_max, seed=seed + k, make_track=make_track)
        # Power needs only the thresholds: no per-condition intervals or goodness-of-fit draws.
        fits = fit_thresholds(lab_trials, alpha_max=alpha_max, options=FitOptions(gof_draws=0, intervals=False))
        d = compute_d(fits)
        d["lab"] = d["participant"].str[:7]
        separated, ordered, widths = [], [], []
        for _, lab_d in d.groupby("lab"):
            index = tuple(pd.factorize(lab_d[c], sort=True)[0] for c in ("layer", "participant", "image_id"))
            shape = tuple(int(i.max()) + 1 for i in index)
            total, count = cell_sums(lab_d["D"].to_numpy(dtype=float), index, shape)
            diff = np.diff(bootstrap_means(total, count, n_boot, seed)[:, ::-1], axis=1)[:, 0]
            lo, hi = np.nanpercentile(diff, [2.5, 97.5])
            separated.append(lo > 0)
            widths.append(hi - lo)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = total.sum(axis=(1, 2)) / count.sum(axis=(1, 2))
            ordered.append(means[0] > means[1])
        rows.append((n_obs, n_trials, n_images, delta_d, np.mean(separated), np.mean(ordered),
                     float(np.median(widths)), n_labs))
    return pd.DataFrame(rows, columns=POWER_COLUMNS)
