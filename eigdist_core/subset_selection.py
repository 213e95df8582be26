"""Whether a subset's ``selection.trials`` names exactly its items (docs/formats.md, "Subsets").

Kept apart from :mod:`eigdist_core.stimulus_subset` (which writes subsets and needs the sensitivity
tables, so torch) because the experiment reads it too, and its trial modules import no torch.
"""

from __future__ import annotations

from .stimulus_set import MANIFEST


def selection_problems(manifest: dict) -> list[str]:
    """Why a subset's ``selection`` does not describe its items (empty = it does, or the set is no subset)."""
    selection = manifest.get("selection")
    if selection is None:
        return []
    items = {it["item_id"] for it in manifest["items"]}
    listed = set(selection.get("trials", {}))
    problems = [f"{MANIFEST}: selection.trials names {i!r}, which is not an item of the set" for i in sorted(listed - items)]
    problems += [f"{MANIFEST}: item {i!r} has no trials in selection.trials" for i in sorted(items - listed)]
    return problems
