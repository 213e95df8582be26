"""One table-driven checker for eigdist's TOML configs (stimulus sets and experiments).

A config module lists its keys with a :class:`Rule` each; :func:`check_keys` refuses unknown keys
(a typo must not fall back to a default) and :func:`check_value` checks one value. Every message
has one shape: ``<key> must be <what is allowed>, got <value>``; numbers go through the one
number check, :func:`eigdist_core.validate.validate_number`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .errors import EigdistError
from .validate import validate_number

KINDS = ("int", "float", "bool", "choice")


@dataclass(frozen=True)
class Rule:
    """What one config key takes: a ``kind`` of value (``int``; ``float``, a finite number returned as
    float; ``bool``; or ``choice``, one of ``choices``), and for a number its bounds ``low`` and
    ``high``, where ``low_open`` asks for ``> low`` instead of ``>= low``."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Rule.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")


def check_value(where: str, raw: Any, rule: Rule) -> Any:
    """``raw`` checked against ``rule`` (floats returned as float).

    Raises
    ------
    EigdistError
        ``<where> must be <what is allowed>, got <raw>``.
    """
    if rule.kind == "bool":
        if not isinstance(raw, bool):
            raise EigdistError(f"{where} must be true or false, got {raw!r}")
        return raw
    if rule.kind == "choice":
        if isinstance(raw, bool) or raw not in rule.choices:
            raise EigdistError(f"{where} must be one of {', '.join(repr(c) for c in rule.choices)}, got {raw!r}")
        return raw
    value = validate_number(where, raw, integer=rule.kind == "int", low=rule.low, high=rule.high,
                            low_open=rule.low_open)
    return float(value) if rule.kind == "float" else value


def check_keys(table: dict, allowed: Iterable[str], prefix: str = "") -> None:
    """Refuse a key of ``table`` not in ``allowed``, naming it as ``prefix + key`` and listing the allowed ones.

    Raises
    ------
    EigdistError
        ``unknown key '<prefix><key>'; allowed: <keys>``.
    """
    allowed = set(allowed)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise EigdistError(f"unknown key {prefix + unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
