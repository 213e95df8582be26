"""One analysis run: trial files → exclusions → fits → D → ranking → report folder."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from eigdist_core.errors import EigdistError
from eigdist_core.io import check_output_folder

from .exclusions import ExclusionRules, apply_exclusions
from .load import check_alpha_ceiling, load_trial_files
from .psychometric import QUALITY_FLAGS, FitOptions, fit_thresholds

THRESHOLD_COLUMNS = ["participant", "image_id", "model", "layer", "weights", "direction", "threshold",
                     "ci_low", "ci_high", "log10_threshold", "censored", "below_range", "alpha_ceiling", "n_trials",
                     "converged", "flags", "not_estimable", "few_trials", "slope_at_bound", "poor_fit", "gof_p",
                     "fitter"]
FITTERS = ("eigdist", "psignifit")


@dataclass(frozen=True)
class AnalysisSettings:
    """Everything that shapes an analysis; shown in the report."""

    seed: int = 0
    n_boot: int = 2000
    stimuli: str | None = None
    alpha_max: float | None = None
    fit: FitOptions = field(default_factory=FitOptions)
    fitter: str = "eigdist"
    jobs: int = 1
    exclusions: ExclusionRules = field(default_factory=ExclusionRules)
    #: Models not in the set to compare too (``SPEC`` or ``SPEC=WEIGHTS``; needs ``stimuli``).
    models: tuple[str, ...] = ()


def analyze(paths: Sequence[str | os.PathLike], out: str | os.PathLike,
            settings: AnalysisSettings = AnalysisSettings()) -> Path:
    """Run the whole analysis and write its folder; return the path of ``report.html``.

    Writes ``ranking.csv``, ``thresholds.csv``, ``fits.csv``, ``flags.csv``, ``pairwise.csv``,
    ``control.csv``, ``d.csv``, ``exclusions.csv``, with a stimulus set that has a sensitivity table
    ``comparison.csv``, ``matrix.csv``, ``predictions.csv`` and ``mixture.csv`` (:mod:`analysis.comparison`), the
    figures and ``report.html``.
    ``settings.fitter``: ``eigdist`` (maximum likelihood with the slope prior) or
    ``psignifit`` (:mod:`analysis.psignifit_fit`); both feed the same ranking.
    """
    if settings.fitter not in FITTERS:
        raise EigdistError(f"fitter must be one of {', '.join(FITTERS)}, got {settings.fitter!r}")
    from . import manifest as stimuli
    from .comparison import CompareOptions
    from .comparison_report import CAPTIONS, comparison_outputs, sensitivities_for
    from .ranking import compute_d, flag_summary, rank_layers
    from .report import (d_per_image_figure, fits_figure, forest_plot, ratio_figure, response_curves_figure,
                         write_report)

    start = time.perf_counter()
    check_output_folder(out, "--out")  # before the fitting, not after it
    manifest = stimuli.load_manifest(settings.stimuli) if settings.stimuli else None
    sensitivities, why_not = sensitivities_for(settings.stimuli, manifest, tuple(settings.models))
    files = load_trial_files(paths)
    trials = files.trials
    stimuli.check_sets(trials, manifest, settings.stimuli)
    table = stimuli.condition_table(manifest) if manifest else None
    # the ceilings first: the easy-catch score needs them (analysis.exclusions.attention_catches)
    trials, ceiling_source = stimuli.attach_ceiling(trials, alpha_max=settings.alpha_max, table=table)
    check_alpha_ceiling(trials, "alpha_ceiling", f" from {ceiling_source}")
    kept, excluded = apply_exclusions(trials, settings.exclusions, files.empty)
    if kept.empty:
        raise EigdistError(f"no trials left after exclusions ({len(trials)} read); see the reasons: "
                         + "; ".join(sorted(set(excluded["reason"]))))
    if settings.fitter == "psignifit":
        from .psignifit_fit import fit_thresholds_psignifit

        fits = fit_thresholds_psignifit(kept, options=settings.fit, jobs=settings.jobs)
    else:
        fits = fit_thresholds(kept, options=settings.fit)
    flags = flag_summary(fits)
    d = compute_d(fits)
    result = rank_layers(d, n_boot=settings.n_boot, seed=settings.seed)
    options = CompareOptions(function=settings.fit.function, max_lapse=settings.fit.max_lapse,
                             slope_prior=settings.fit.slope_prior, n_boot=settings.n_boot, seed=settings.seed)
    compared, sections, status = comparison_outputs(kept, fits, result.ranking, sensitivities, why_not, options)
    eigen = stimuli.eigenvalues(kept, table)
    curves = stimuli.response_curves(manifest) if manifest else stimuli.response_curves({})
    report_settings = {
        "data": ", ".join(map(str, paths)), "trials read": len(trials), "trials analysed (incl. catch)": len(kept),
        "observers analysed": ", ".join(sorted(kept["observer"].unique())[:5]),
        "fitter": settings.fitter, "participants": kept["participant"].nunique(), "conditions fitted": len(fits),
        "below-range thresholds": int(fits["below_range"].sum()),
        "censored thresholds": int(fits["censored"].sum()),
        **{f"thresholds flagged {f}": int(flags[f].iloc[-1]) for f in QUALITY_FLAGS + ("not_estimable",)},
        "alpha_ceiling source": ceiling_source, **{f"fit.{k}": v for k, v in asdict(settings.fit).items()},
        **{f"exclusions.{k}": v for k, v in asdict(settings.exclusions).items()},
        "bootstrap draws": settings.n_boot, "seed": settings.seed, "stimuli": settings.stimuli,
        "model comparison": status, "extra models": ", ".join(settings.models),
    }
    figures = {
        "forest.png": forest_plot(result.ranking, result.control),
        "fits.png": fits_figure(fits, kept),
        "d_per_image.png": d_per_image_figure(d),
        "ratio.png": ratio_figure(d, eigen) if not eigen.empty else None,
        "response_curves.png": response_curves_figure(curves),
    }
    report_settings["seconds"] = round(time.perf_counter() - start, 2)
    tables = {
        "ranking.csv": result.ranking, "control.csv": result.control, "pairwise.csv": result.pairwise,
        "thresholds.csv": fits[THRESHOLD_COLUMNS], "fits.csv": fits, "flags.csv": flags, "d.csv": d,
        "exclusions.csv": excluded, **compared,
    }
    return write_report(out, tables=tables, figures=figures, settings=report_settings, exclusions=excluded,
                        sections=sections, captions=CAPTIONS)
