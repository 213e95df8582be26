"""docs/formats.md's contract tables say what eigdist_core/contract.py and the manifest's schema say.

A table (or the item-id rule) is a *contract table* when the line above it is
``<!-- contract: NAME -->``. Each NAME has a checker in :data:`CHECKERS` that compares the table with
the code: the columns of a trial file with their types, units and allowed values
(:mod:`eigdist_core.contract`), the manifest's fields and allowed values
(``eigdist_core/manifest.schema.json``, whose enumerations are checked against the contract too) and
the item-id rule (:func:`eigdist_core.stimulus_set.item_id_for`). A marker without a checker, a checker
without its table, and any difference fail. Tables without a marker are prose and are not compared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from eigdist_core import contract as c
from eigdist_core.stimulus_set import item_id_for, manifest_schema

FORMATS = Path(__file__).resolve().parents[1] / "docs" / "formats.md"
MARKER = re.compile(r"^<!-- contract: (\w+) -->$")


def contract_blocks(text: str) -> dict[str, list[str]]:
    """NAME → the lines after each ``<!-- contract: NAME -->`` marker, up to the next blank line."""
    lines = text.splitlines()
    blocks: dict[str, list[str]] = {}
    for i, line in enumerate(lines):
        match = MARKER.match(line.strip())
        if not match:
            continue
        name = match.group(1)
        assert name not in blocks, f"docs/formats.md: contract table {name} appears twice"
        block = []
        for following in lines[i + 1:]:
            if not following.strip():
                break
            block.append(following)
        assert block, f"docs/formats.md: contract marker {name} is not followed by its table"
        blocks[name] = block
    return blocks


def table(block: list[str], header: list[str]) -> list[list[str]]:
    """The rows of the markdown table in ``block`` (cells stripped), after checking its header."""
    rows = [[cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            for line in block if line.strip().startswith("|")]
    assert len(rows) >= 2 and set("".join(rows[1])) <= set("-: "), f"not a markdown table: {block[:2]}"
    assert [h.strip("`") for h in rows[0]][1:] == header[1:], f"table header {rows[0]} should be {header}"
    return rows[2:]


def names(cell: str) -> list[str]:
    """The field or column names of a table's first cell: ``a, b`` or `` `a`, `b` ``."""
    return [name.strip().strip("`") for name in cell.split(",")]


def ticked(cell: str) -> set[str]:
    """The values a cell quotes as code (``\\`max\\```)."""
    return set(re.findall(r"`([^`]*)`", cell))


def by_name(rows: list[list[str]]) -> dict[str, list[str]]:
    """Name → its row, a row naming several fields counting for each; in table order."""
    out: dict[str, list[str]] = {}
    for row in rows:
        for name in names(row[0]):
            assert name not in out, f"{name} has two rows"
            out[name] = row
    return out


# --- the trial columns ------------------------------------------------------------------------------------


def column_type(column: str) -> str:
    for kind, members in (("int", c.INT_COLUMNS), ("float", c.FLOAT_COLUMNS), ("bool", c.BOOL_COLUMNS)):
        if column in members:
            return kind
    return "str"


def check_columns(block: list[str], expected: tuple[str, ...], required: bool) -> None:
    rows = by_name(table(block, ["column", "type", "units", "values"]))
    assert list(rows) == list(expected), f"columns (in file order) differ from the contract's: {list(rows)}"
    for column, (_, kind, units, values) in rows.items():
        assert kind == column_type(column), f"{column}: type {kind!r}, the contract says {column_type(column)!r}"
        want_units = c.COLUMN_INFO[column][2] or ""
        assert units == want_units, f"{column}: units {units!r}, the contract says {want_units!r}"
        quoted = ticked(values)
        if column in c.COLUMN_LEVELS and column not in c.BOOL_COLUMNS:
            levels = set(c.COLUMN_LEVELS[column]) | ({c.MISSING} if column in c.MAY_BE_EMPTY else set())
            assert quoted == levels, f"{column}: values {sorted(quoted)}, the contract allows {sorted(levels)}"
        if required:
            assert (c.MISSING in quoted) == (column in c.MAY_BE_EMPTY), (
                f"{column}: `{c.MISSING}` is allowed only in {sorted(c.MAY_BE_EMPTY)}")
        if column == "n_alternatives":
            counts = set(re.findall(r"\d+", values))
            assert counts == {str(n) for n in c.TASKS.values()}, f"n_alternatives: {counts} against TASKS"


def check_required_columns(block: list[str]) -> None:
    check_columns(block, c.REQUIRED_COLUMNS, required=True)
    assert list(c.COLUMN_LEVELS["direction"]) == list(c.ITEM_DIRECTIONS)
    assert set(c.COLUMN_LEVELS["task"]) == set(c.TASKS)
    assert set(c.COLUMN_LEVELS["catch_type"]) == set(c.CATCH_TYPES) - {""}


def check_recommended_columns(block: list[str]) -> None:
    check_columns(block, c.RECOMMENDED_COLUMNS, required=False)


# --- the manifest -----------------------------------------------------------------------------------------


def check_fields(block: list[str], first: str, schema: dict) -> None:
    """The table's fields are the schema object's properties, in order; enums and consts are quoted."""
    rows = by_name(table(block, [first, "meaning"]))
    properties = schema["properties"]
    assert list(rows) == list(properties), f"fields {list(rows)}, the schema has {list(properties)}"
    for field, (_, meaning) in rows.items():
        allowed = properties[field].get("enum", [properties[field]["const"]] if "const" in properties[field] else None)
        if allowed is None:
            continue
        quoted = {json.loads(v) if re.fullmatch(r"-?\d+", v) else v for v in ticked(meaning)}
        if all(isinstance(v, str) for v in allowed):
            assert quoted == set(allowed), f"{field}: values {sorted(map(str, quoted))}, the schema allows {allowed}"
        else:
            numbers = {v for v in quoted if isinstance(v, int)}
            assert numbers == set(allowed), f"{field}: values {sorted(numbers)}, the schema allows {allowed}"


def check_manifest(block: list[str]) -> None:
    check_fields(block, "field", manifest_schema())


def check_manifest_image(block: list[str]) -> None:
    check_fields(block, "`images[]` field", manifest_schema()["$defs"]["image"])


def check_manifest_item(block: list[str]) -> None:
    item = manifest_schema()["$defs"]["item"]
    assert item["properties"]["direction"]["enum"] == list(c.ITEM_DIRECTIONS), "the schema's directions are not ITEM_DIRECTIONS"
    check_fields(block, "`items[]` field", item)


def check_manifest_model(block: list[str]) -> None:
    check_fields(block, "`models[]` field", manifest_schema()["properties"]["models"]["items"])


def check_item_id(block: list[str]) -> None:
    """The rule's template, character class and replacement are the contract's, and give item_id_for's ids."""
    text = " ".join(line.strip() for line in block)
    template = next(t for t in ticked(text) if c.ITEM_ID_SEPARATOR in t)
    fields = [f"<{name}>" for name in c.CONDITION_KEY]
    assert template == c.ITEM_ID_SEPARATOR.join(fields) + "<index>", f"item id template {template!r}"
    match = re.search(r"characters outside `\[([^`]*)\]` replaced by `([^`]*)`", text)
    assert match, "the item-id rule should say: characters outside `[...]` replaced by `x`"
    safe, replacement = match.groups()
    assert (safe, replacement) == (c.SAFE_CHARACTERS, c.UNSAFE_REPLACEMENT), (
        f"rule says [{safe}] → {replacement!r}; the contract: [{c.SAFE_CHARACTERS}] → {c.UNSAFE_REPLACEMENT!r}")
    key = "(" + ", ".join(c.CONDITION_KEY) + ")"
    assert f"`{key}`" in text, f"the condition key should read `{key}`"
    # The documented rule, applied by hand, gives the code's ids.
    values = {"image_id": "my photo", "model": "python:lab/m.py:f", "layer": "blocks.1", "weights": "random:0",
              "direction": "min", "index": "2"}
    by_hand = template
    for name, value in values.items():
        value = value if name in ("direction", "index") else re.sub(f"[^{safe}]", replacement, value)
        by_hand = by_hand.replace(f"<{name}>", value)
    assert by_hand == item_id_for(*(values[n] for n in c.CONDITION_KEY), int(values["index"]))
    assert manifest_schema()["$defs"]["id"]["pattern"] == f"^[{c.SAFE_CHARACTERS}]+$"


CHECKERS: dict[str, Callable[[list[str]], None]] = {
    "MANIFEST": check_manifest,
    "MANIFEST_IMAGE": check_manifest_image,
    "MANIFEST_ITEM": check_manifest_item,
    "MANIFEST_MODEL": check_manifest_model,
    "ITEM_ID": check_item_id,
    "REQUIRED_COLUMNS": check_required_columns,
    "RECOMMENDED_COLUMNS": check_recommended_columns,
}


def check(text: str) -> None:
    """Every contract table of ``text`` agrees with the code, and every checker found its table."""
    blocks = contract_blocks(text)
    assert set(blocks) == set(CHECKERS), (
        f"contract tables in docs/formats.md: {sorted(blocks)}; checked here: {sorted(CHECKERS)}")
    for name, block in blocks.items():
        CHECKERS[name](block)


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_contract_table_agrees_with_the_code(name):
    blocks = contract_blocks(FORMATS.read_text(encoding="utf-8"))
    assert name in blocks, f"docs/formats.md has no table marked <!-- contract: {name} -->"
    CHECKERS[name](blocks[name])


def test_every_contract_marker_has_a_checker():
    assert set(contract_blocks(FORMATS.read_text(encoding="utf-8"))) == set(CHECKERS)


#: Edits of the page that each must fail the check: (what, old text, new text).
DRIFTS = [
    ("a column's type", "| session | int |", "| session | float |"),
    ("a column's units", "| rt | float | s |", "| rt | float | ms |"),
    ("a column left out", "| is_practice | bool | | |\n", ""),
    ("an allowed value", "| direction | str | | `max`, `min`, `random`, `gen_top`, `gen_bottom`, `principal_a`, `principal_b` |",
     "| direction | str | | `max`, `min`, `random`, `gen_top`, `gen_bottom`, `principal_a` |"),
    ("n/a on a column that is never empty", "| set_id | str | | the stimulus set's `set_id` |",
     "| set_id | str | | the stimulus set's `set_id` or `n/a` |"),
    ("a manifest field", "| `channels` |", "| `color` |"),
    ("the manifest's channel counts", "`1` (grey) or `3` (rgb)", "`1` (grey) or `4` (rgba)"),
    ("the item-id replacement", "replaced by `-`", "replaced by `_`"),
    ("the item-id template", "<direction><index>`", "<index><direction>`"),
    ("a contract marker", "<!-- contract: RECOMMENDED_COLUMNS -->\n", ""),
    ("an unknown contract marker", "<!-- contract: ITEM_ID -->", "<!-- contract: ITEM_NAME -->"),
]


@pytest.mark.parametrize("what, old, new", DRIFTS, ids=[d[0] for d in DRIFTS])
def test_a_drift_of_the_page_fails(what, old, new):
    text = FORMATS.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"the drift {what!r} no longer applies to docs/formats.md: update it"
    check(text)
    with pytest.raises(AssertionError):
        check(text.replace(old, new))


def test_a_drift_of_the_contract_fails(monkeypatch):
    text = FORMATS.read_text(encoding="utf-8")
    monkeypatch.setattr(c, "FLOAT_COLUMNS", c.FLOAT_COLUMNS - {"alpha_ceiling"})
    with pytest.raises(AssertionError, match="alpha_ceiling: type 'float'"):
        check(text)
    monkeypatch.undo()
    monkeypatch.setattr(c, "UNSAFE_REPLACEMENT", "_")
    with pytest.raises(AssertionError, match="rule says"):
        check(text)
