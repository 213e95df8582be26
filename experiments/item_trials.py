"""Main trials per item: the config's fixed grid, or the criterion's allocation of a chosen subset.

A subset written by ``eigdist design select`` records the trials the design criterion gave each item
(``selection.trials``, docs/formats.md "Subsets"). Under ``trials.selection = "use"`` (the default) a
session on such a set gives each item exactly that many main trials over all its visits, whatever
``trials.per_condition`` says (the criterion optimised this allocation; rescaling it would change the
design); an item with 0 trials is not shown. ``"ignore"``, or a set without a ``selection``, gives every
item ``per_condition``. The allocation is a pure function of the manifest (its ``set_id`` covers the
selection) and the config, both of which a resume must match (:data:`experiments.resume_check.RESUME_FIELDS`).
"""

from __future__ import annotations

from eigdist_core.errors import EigdistError
from eigdist_core.subset_selection import selection_problems

from .config import ExperimentConfig

#: How every selection error ends: the two ways forward.
_ADVICE = "rebuild the subset with 'eigdist design select' or set trials.selection = \"ignore\""


def selected_trials(manifest: dict, config: ExperimentConfig) -> dict[str, int] | None:
    """The main trials of each item over all visits, from the set's ``selection.trials``; None: the fixed grid.

    Raises
    ------
    EigdistError
        If ``selection.trials`` does not name exactly the set's items, or a count is not an int ≥ 0
        (one line naming the item and the value).
    """
    selection = manifest.get("selection")
    if selection is None or config.selection == "ignore":
        return None
    trials = selection.get("trials") if isinstance(selection, dict) else None
    if not isinstance(trials, dict):
        raise EigdistError(f"the set's selection has no trials table ({{item_id: trials}}), got {trials!r}; {_ADVICE}")
    problems = selection_problems(manifest)
    if problems:
        raise EigdistError(f"{problems[0]}: selection.trials must name exactly the set's items; {_ADVICE}")
    for item_id, n in trials.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise EigdistError(f"selection.trials of item {item_id!r} must be an int >= 0, got {n!r}; {_ADVICE}")
    return dict(trials)


def visit_share(total: int, visits: int, visit: int) -> int:
    """An item's main trials in one visit of ``visits``: an even split, early visits taking the remainder."""
    base, extra = divmod(total, visits)
    return base + (1 if visit < extra else 0)
