"""The experiment's TOML (``experiments/noticeability.toml``): load, check, plain data.

Every key is checked here, once, with errors that name the file, the key,
what is allowed and what was found, e.g.
``noticeability.toml: timing.test_ms must be > 0, got -5``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eigdist_core.contract import TASKS
from eigdist_core.errors import EigdistError
from eigdist_core.io import read_toml

from .staircase import DEFAULT_OPTIONS, KINDS, make_track

#: The defaults shipped with the package.
DEFAULT_CONFIG = Path(__file__).with_name("noticeability.toml")

#: Tasks and their number of alternatives.

DITHERING = ("frame", "trial", "off")


@dataclass(frozen=True)
class Timing:
    """Durations in milliseconds."""

    fixation_ms: float = 500
    reference_ms: float = 500
    isi_ms: float = 500
    test_ms: float = 500
    feedback_ms: float = 300


@dataclass(frozen=True)
class ExperimentConfig:
    """The parsed, checked experiment configuration (see ``noticeability.toml`` for meanings)."""

    task: str = "2afc_ref"
    feedback: bool = False
    timing: Timing = field(default_factory=Timing)
    per_condition: int = 50
    catch_rate: float = 0.08
    easy_fraction: float = 0.5
    easy_factor: float = 4.0
    practice: int = 8
    practice_alpha_ratio: float = 0.5
    break_every: int = 100
    images_per_session: int = 2
    visits_per_image: int = 1
    track_kind: str = "quest"
    track_options: dict = field(default_factory=dict)
    dithering: str = "frame"
    magnification: int | None = None
    stimulus_deg: float | None = None
    size_tolerance: float = 0.05
    seed: int = 0

    @property
    def n_alternatives(self) -> int:
        """The task's number of alternatives (guess rate 1 / n): it follows from the task."""
        return TASKS[self.task]

    def as_dict(self) -> dict:
        """Plain data for the session sidecar (with the task's ``n_alternatives``)."""
        return {**asdict(self), "n_alternatives": self.n_alternatives}


# (section, key) -> (field name, kind, check); kind is "int", "float", "bool" or "str".
_SCHEMA: dict[tuple[str, str], tuple[str, str, Any]] = {
    ("", "seed"): ("seed", "int", (0, None)),
    ("task", "name"): ("task", "str", tuple(TASKS)),
    ("task", "feedback"): ("feedback", "bool", None),
    ("trials", "per_condition"): ("per_condition", "int", (1, 1000)),  # more is hours per condition: a typo
    ("trials", "catch_rate"): ("catch_rate", "float", (0.0, 0.5)),
    ("trials", "easy_fraction"): ("easy_fraction", "float", (0.0, 1.0)),
    ("trials", "easy_factor"): ("easy_factor", "float", (1.0, 100.0)),
    ("trials", "practice"): ("practice", "int", (0, None)),
    ("trials", "practice_alpha_ratio"): ("practice_alpha_ratio", "float", (1e-6, 1.0)),
    ("trials", "break_every"): ("break_every", "int", (1, None)),
    ("schedule", "images_per_session"): ("images_per_session", "int", (1, None)),
    ("schedule", "visits_per_image"): ("visits_per_image", "int", (1, None)),
    ("track", "kind"): ("track_kind", "str", KINDS),
    ("display", "dithering"): ("dithering", "str", DITHERING),
    ("display", "magnification"): ("magnification", "int", (1, 64)),
    ("display", "stimulus_deg"): ("stimulus_deg", "float", (0.01, 180.0)),
    ("display", "size_tolerance"): ("size_tolerance", "float", (0.0, 0.5)),
}
_TIMING = tuple(Timing.__dataclass_fields__)
_SECTIONS = ("task", "timing", "trials", "schedule", "track", "display")


class ConfigError(EigdistError):
    """A bad experiment configuration; the message names the file and the key."""


def _value(name: str, where: str, raw: Any, kind: str, check: Any) -> Any:
    def fail(what: str) -> ConfigError:
        return ConfigError(f"{name}: {where} must be {what}, got {raw!r}")

    if kind == "bool":
        if not isinstance(raw, bool):
            raise fail("true or false")
        return raw
    if kind == "str":
        if raw not in check:
            raise fail(f"one of {', '.join(repr(c) for c in check)}")
        return raw
    if kind == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise fail("an integer")
    elif isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise fail("a number")
    low, high = check
    if raw < low or (high is not None and raw > high):
        raise fail(f">= {low}" if high is None else f"between {low} and {high}")
    return float(raw) if kind == "float" else raw


def parse_config(data: dict, name: str = "noticeability.toml") -> ExperimentConfig:
    """Check a parsed TOML dict and return an :class:`ExperimentConfig`.

    Missing keys take the defaults of :class:`ExperimentConfig`; unknown
    sections or keys are refused (a typo must not silently fall back to a
    default).

    Raises
    ------
    ConfigError
        Naming the file, the key, what is allowed and what was found.
    """
    known_top = {key for section, key in _SCHEMA if not section} | set(_SECTIONS)
    for key in data:
        if key not in known_top:
            raise ConfigError(f"{name}: unknown key {key!r}; allowed: {', '.join(sorted(known_top))}")
    if "n_alternatives" in data.get("task", {}):
        raise ConfigError(f"{name}: task.n_alternatives is not set any more: it follows from task.name "
                          f"({', '.join(f'{t}: {n}' for t, n in TASKS.items())}); remove the key")
    fields: dict[str, Any] = {}
    for section in ("", *_SECTIONS):
        table = data if not section else data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: [{section}] must be a table, got {table!r}")
        allowed = {key for sec, key in _SCHEMA if sec == section}
        allowed |= set(_TIMING) if section == "timing" else set(KINDS) if section == "track" else set()
        for key, raw in table.items():
            if not section and key in _SECTIONS:
                continue
            where = f"{section}.{key}" if section else key
            if key not in allowed:
                raise ConfigError(f"{name}: unknown key {where!r}; allowed: {', '.join(sorted(allowed))}")
            if section == "timing":
                fields.setdefault("timing", {})[key] = _timing(name, where, raw)
            elif section == "track" and key in KINDS:
                if not isinstance(raw, dict):
                    raise ConfigError(f"{name}: [{where}] must be a table, got {raw!r}")
                fields.setdefault("_track_tables", {})[key] = raw
            else:
                field_name, kind, check = _SCHEMA[(section, key)]
                fields[field_name] = _value(name, where, raw, kind, check)
    fields["timing"] = Timing(**fields.get("timing", {}))
    tables = fields.pop("_track_tables", {})
    kind = fields.get("track_kind", "quest")
    fields["track_options"] = _track_options(name, kind, tables.get(kind, {}))
    config = ExperimentConfig(**fields)
    if config.magnification is not None and config.stimulus_deg is not None:
        raise ConfigError(
            f"{name}: set display.stimulus_deg or display.magnification, not both (got {config.stimulus_deg:g} "
            f"degrees and magnification {config.magnification})"
        )
    return config


def _timing(name: str, where: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or raw <= 0:
        raise ConfigError(f"{name}: {where} must be > 0, got {raw!r}")
    return float(raw)


def _track_options(name: str, kind: str, table: dict) -> dict:
    """Check the options of the chosen track kind by building a throwaway track."""
    options = dict(table)
    for key in ("alpha_min", "start"):
        if key in options:
            raise ConfigError(
                f"{name}: track.{kind}.{key} cannot be set here: it depends on each condition's alpha_max; "
                f"allowed: {', '.join(k for k in DEFAULT_OPTIONS[kind] if k not in ('alpha_min', 'start'))}"
            )
    try:
        make_track(kind, 1.0, 2, **options)
    except ValueError as err:
        raise ConfigError(f"{name}: track.{kind}: {err}") from None
    return options


def load_config(path: str | Path | None = None) -> ExperimentConfig:
    """Read and check an experiment TOML (default: the shipped ``noticeability.toml``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ConfigError
        If the TOML is malformed or a key is bad; the message names the file and key.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        data = read_toml(path, "experiment config")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return parse_config(data, path.name)
