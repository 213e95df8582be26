"""The Bayesian fitter: every condition through psignifit 4 (Schütt et al. 2016), same table out.

``eigdist analyze --fitter psignifit`` (optional extra: ``pip install
eigdist[psignifit]``). Each condition's counts go to ``psignifit.psignifit``
matched to the maximum-likelihood fitter:

* sigmoid: psignifit's ``weibull`` (a Gumbel, fitted on ln α, which is our
  Weibull in α) or ``norm`` on ln α (our log-normal);
* ``experiment_type="nAFC"`` with the condition's n_alternatives (γ = 1/n);
* lapse λ bounded to [0, max_lapse]; overdispersion η fixed at 0, so the
  likelihood is the same binomial one;
* ``thresh_PC = 0.5``: psignifit's threshold is where its sigmoid is ½, the
  midpoint between guess and 1 − λ, which is our criterion;
* ``stimulus_range`` = [lowest α shown, alpha_ceiling] in ln α: psignifit's
  default priors (threshold, width) are set from it.

``threshold_fit`` is the MAP threshold, ``ci_low``/``ci_high`` the 95 %
credible interval. The data-level checks are the maximum-likelihood fitter's
and the same for both fitters: validation, ``few_trials``, the deviance
test (``gof_p``, ``poor_fit``) and the censoring test (the likelihood ratio
at the ceiling; a MAP threshold at or above alpha_ceiling is censored too), so both
feed the ranking the same bounds. ``slope_at_bound`` does not apply (the
prior keeps the width inside its range) and is false. A condition tested at
one α only is not given to psignifit (it refuses it): it is a bound where the
censoring test says so, else not estimable.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm import tqdm

from eigdist_core.executors import run_tasks
from eigdist_core.psychometric_function import CRITERION

from .fit_input import pool_levels, validate_trials
from .psychometric import FitOptions, fit_thresholds, flag_text, reported_threshold

#: psignifit's width: the ln α distance from F = 0.05 to F = 0.95 (its default width_alpha).
WIDTH_ALPHA = 0.05
_SIGMOID = {"weibull": "weibull", "lognormal": "norm"}


def _spread_from_width(width: np.ndarray, function: str) -> np.ndarray:
    """Weibull β or log-normal σ of a psignifit width (ln α from F = 0.05 to 0.95)."""
    from scipy import special

    if function == "weibull":
        return (np.log(-np.log(WIDTH_ALPHA)) - np.log(-np.log(1 - WIDTH_ALPHA))) / width
    return width / (2 * special.ndtri(1 - WIDTH_ALPHA))


def _fit_chunk(task: tuple[int, list[np.ndarray], list[int], list[tuple[float, float]], str, float]) -> list[tuple]:
    """psignifit on each condition of a chunk: (threshold, ci_low, ci_high, width, lapse) in ln α units."""
    import warnings

    import psignifit

    _, data, choices, ranges, function, max_lapse = task
    out = []
    for counts, n_alt, stimulus_range in zip(data, choices, ranges):
        if len(counts) < 2:  # psignifit needs two levels; the censoring test decides these
            out.append((np.nan,) * 5)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = psignifit.psignifit(
                counts, sigmoid=_SIGMOID[function], experiment_type="nAFC", experiment_choices=int(n_alt),
                bounds={"lambda": (0.0, max_lapse)}, fixed_parameters={"eta": 0.0}, thresh_PC=CRITERION,
                stimulus_range=stimulus_range, verbose=False)
        est = result.parameter_estimate_MAP
        lo, hi = result.confidence_intervals["threshold"]["0.95"]
        out.append((est["threshold"], lo, hi, est["width"], est["lambda"]))
    return out


def fit_thresholds_psignifit(trials: pd.DataFrame, alpha_max: float | None = None,
                             options: FitOptions = FitOptions(), jobs: int = 1,
                             chunk: int = 64) -> pd.DataFrame:
    """The table of :func:`analysis.psychometric.fit_thresholds`, thresholds and intervals from psignifit.

    Parameters
    ----------
    trials, alpha_max, options
        As for :func:`~analysis.psychometric.fit_thresholds` (``slope``,
        ``slope_prior`` and ``intervals`` do not apply: psignifit fits a width
        per condition under its own priors).
    jobs
        Local worker processes (psignifit costs ≈ 0.2 s per condition).
    chunk
        Conditions per task.

    Raises
    ------
    ImportError
        If psignifit is not installed, with the command that installs it.
    """
    try:
        import psignifit  # noqa: F401
    except ImportError as exc:
        raise ImportError("--fitter psignifit needs psignifit 4: pip install 'eigdist[psignifit]' "
                          "(or pip install psignifit)") from exc
    ml = fit_thresholds(trials, alpha_max, replace(options, slope="free", intervals=False))
    conditions, levels = pool_levels(validate_trials(trials, alpha_max))
    data = [g[["alpha", "k", "n"]].to_numpy(dtype=float) for _, g in levels.groupby("cond", sort=True)]
    for counts in data:
        counts[:, 0] = np.log(counts[:, 0])
    lowest = np.array([np.exp(c[:, 0].min()) for c in data])
    ceiling = ml["alpha_ceiling"].to_numpy(dtype=float)
    ranges = [(float(np.log(lo)), float(np.log(max(hi, lo * 1.01)))) for lo, hi in zip(lowest, ceiling)]
    tasks = [(i, data[i:i + chunk], list(conditions["n_alternatives"][i:i + chunk]), ranges[i:i + chunk],
              options.function, options.max_lapse) for i in range(0, len(data), chunk)]
    results: dict[int, list[tuple]] = {}
    for task, result in tqdm(run_tasks(_fit_chunk, tasks, jobs=jobs), total=len(tasks), desc="psignifit",
                             unit="chunk", disable=len(tasks) < 2):
        results[task[0]] = result
    m, lo, hi, width, lapse = np.array([r for i in sorted(results) for r in results[i]]).T

    fitted = np.exp(m)  # NaN for one-level conditions
    estimable = ~ml["not_estimable"].to_numpy()
    censored = (ml["censored"].to_numpy() | (fitted >= ceiling)) & estimable
    below = ~censored & estimable & ((fitted < lowest) | (np.isnan(fitted) & ml["below_range"].to_numpy()))
    out = ml.copy()
    out["threshold"] = reported_threshold(fitted, ceiling, lowest, censored, below, estimable)
    out["log10_threshold"] = np.log10(out["threshold"])
    out["ci_low"] = np.where(estimable, np.exp(lo), np.nan)
    out["ci_high"] = np.where(estimable, np.where(censored, np.inf, np.exp(hi)), np.nan)
    out["censored"], out["below_range"] = censored, below
    out["slope_at_bound"] = False
    out["flags"] = flag_text(out)
    out["threshold_fit"] = fitted
    out["slope"] = _spread_from_width(width, options.function)
    out["lapse"] = lapse
    out["slope_prior"] = False
    out["fitter"] = "psignifit"
    return out
