"""What ``stimuli verify`` checks of a set's contrast items (pure: no torch, as :mod:`eigdist_core.stimulus_set`).

A contrast item (docs/formats.md, "Contrast items") has a contrast direction, the condition
``(<kind>, <contrast name>, contrast)`` and a ``contrast`` entry naming the set's layers it tells
apart, as the config's ``[[contrasts]]`` entry of that name lists them; a layer's own item has none.
"""

from __future__ import annotations

from .contract import CONTRAST_DIRECTIONS, CONTRAST_WEIGHTS

MANIFEST = "manifest.json"


def contrast_problems(manifest: dict) -> list[str]:
    """Every contrast item whose condition, direction or layers disagree with its ``contrast`` entry or the config."""
    config = manifest.get("config", {})
    layers = [(m.get("spec"), m.get("weights")) for m in config.get("models", [])]
    asked = {c.get("name"): c for c in config.get("contrasts", [])}
    problems = []
    for item in manifest["items"]:
        where = f"{MANIFEST}: item {item['item_id']!r}"
        record = item.get("contrast")
        kind = next((k for k, pair in CONTRAST_DIRECTIONS.items() if item["direction"] in pair), None)
        if kind is None:
            if record is not None:
                problems.append(f"{where} has a contrast entry but direction {item['direction']!r}, not a contrast's")
            continue
        if record is None:
            problems.append(f"{where}: direction {item['direction']!r} needs a contrast entry (the layers it tells apart)")
            continue
        expected = (record["kind"], record["name"], CONTRAST_WEIGHTS)
        if (item["model"], item["layer"], item["weights"]) != expected or record["kind"] != kind:
            problems.append(f"{where}: model, layer, weights {item['model']}, {item['layer']}, {item['weights']} and "
                            f"direction {item['direction']!r} do not match its contrast {record['kind']} "
                            f"{record['name']!r} (expected {', '.join(expected)})")
        named = [(m["spec"], m["weights"]) for m in record["models"]]
        strangers = [f"{spec} ({weights})" for spec, weights in named if (spec, weights) not in layers]
        if strangers:
            problems.append(f"{where} contrasts {', '.join(strangers)}, not among the set's [[models]]")
        entry = asked.get(record["name"])
        if entry is None or entry.get("kind") != record["kind"] or \
                [(m["spec"], m["weights"]) for m in entry.get("models", [])] != named:
            problems.append(f"{where}: its contrast {record['name']!r} is not the config's [[contrasts]] entry "
                            "of that name (kind and layers in order)")
    return problems
