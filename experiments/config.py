"""The experiment's TOML (``experiments/noticeability.toml``): load, check, plain data.

Every key is checked here, once, with errors that name the file, the key,
what is allowed and what was found, e.g.
``noticeability.toml: timing.test_ms must be > 0, got -5``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eigdist_core.config_table import Rule, check_keys, check_value
from eigdist_core.contract import TASKS
from eigdist_core.errors import EigdistError
from eigdist_core.io import read_toml

from .staircase import DEFAULT_OPTIONS, KINDS, make_track

#: Track kinds of ``track.kind``: one track per condition (staircase.KINDS), or ``models``
#: (experiments/model_session.py): a share of the trials on those tracks, the rest chosen by the models track.
TRACK_KINDS = (*KINDS, "models")
#: The per-condition track of a ``models`` session's common trials (its options: ``[track.quest]``).
COMMON_TRACK = "quest"
#: Options of ``[track.models]`` with their defaults and rules (``budget`` None: the plan's trials).
MODEL_OPTIONS: dict[str, tuple[Any, Rule]] = {
    "common_share": (0.25, Rule("float", low=0.0, high=1.0)),
    "stop_at": (0.95, Rule("float", low=0.5, high=1.0, low_open=True)),
    "budget": (None, Rule("int", low=1)),
    "n_alpha": (30, Rule("int", low=2, high=200)),
    "n_k": (40, Rule("int", low=2, high=200)),
}

#: The defaults shipped with the package.
DEFAULT_CONFIG = Path(__file__).with_name("noticeability.toml")

#: Tasks and their number of alternatives.

DITHERING = ("frame", "trial", "off")
#: ``trials.selection``: a chosen subset's ``selection.trials`` sets each item's main trials, or is ignored
#: (every item ``per_condition``; experiments/item_trials.py).
SELECTION = ("use", "ignore")


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
    selection: str = "use"
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
    def condition_track(self) -> tuple[str, dict]:
        """Kind and options of each condition's own track (under ``models``: its common trials' track)."""
        if self.track_kind == "models":
            return COMMON_TRACK, self.track_options[COMMON_TRACK]
        return self.track_kind, self.track_options

    @property
    def n_alternatives(self) -> int:
        """The task's number of alternatives (guess rate 1 / n): it follows from the task."""
        return TASKS[self.task]

    def as_dict(self) -> dict:
        """Plain data for the session sidecar (with the task's ``n_alternatives``)."""
        return {**asdict(self), "n_alternatives": self.n_alternatives}


# (section, key) -> (field name, rule): the one table the checker reads (eigdist_core.config_table).
_SCHEMA: dict[tuple[str, str], tuple[str, Rule]] = {
    ("", "seed"): ("seed", Rule("int", low=0)),
    ("task", "name"): ("task", Rule("choice", choices=tuple(TASKS))),
    ("task", "feedback"): ("feedback", Rule("bool")),
    # more than 1000 trials per condition is hours per condition: a typo
    ("trials", "per_condition"): ("per_condition", Rule("int", low=1, high=1000)),
    ("trials", "selection"): ("selection", Rule("choice", choices=SELECTION)),
    ("trials", "catch_rate"): ("catch_rate", Rule("float", low=0.0, high=0.5)),
    ("trials", "easy_fraction"): ("easy_fraction", Rule("float", low=0.0, high=1.0)),
    ("trials", "easy_factor"): ("easy_factor", Rule("float", low=1.0, high=100.0)),
    ("trials", "practice"): ("practice", Rule("int", low=0)),
    ("trials", "practice_alpha_ratio"): ("practice_alpha_ratio", Rule("float", low=1e-6, high=1.0)),
    ("trials", "break_every"): ("break_every", Rule("int", low=1)),
    ("schedule", "images_per_session"): ("images_per_session", Rule("int", low=1)),
    ("schedule", "visits_per_image"): ("visits_per_image", Rule("int", low=1)),
    ("track", "kind"): ("track_kind", Rule("choice", choices=TRACK_KINDS)),
    ("display", "dithering"): ("dithering", Rule("choice", choices=DITHERING)),
    ("display", "magnification"): ("magnification", Rule("int", low=1, high=64)),
    ("display", "stimulus_deg"): ("stimulus_deg", Rule("float", low=0.01, high=180.0)),
    ("display", "size_tolerance"): ("size_tolerance", Rule("float", low=0.0, high=0.5)),
}
_TIMING = tuple(Timing.__dataclass_fields__)
#: Every timing.* key: a duration in ms.
DURATION = Rule("float", low=0, low_open=True)
_SECTIONS = ("task", "timing", "trials", "schedule", "track", "display")


class ConfigError(EigdistError):
    """A bad experiment configuration; the message names the file and the key."""


def _checked(name: str, check: Any, *args: Any) -> Any:
    """``check(*args)`` with its error as a :class:`ConfigError` naming the file."""
    try:
        return check(*args)
    except EigdistError as err:
        raise ConfigError(f"{name}: {err}") from err


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
    _checked(name, check_keys, data, {key for section, key in _SCHEMA if not section} | set(_SECTIONS))
    if "n_alternatives" in data.get("task", {}):
        raise ConfigError(f"{name}: task.n_alternatives is not set any more: it follows from task.name "
                          f"({', '.join(f'{t}: {n}' for t, n in TASKS.items())}); remove the key")
    fields: dict[str, Any] = {}
    for section in ("", *_SECTIONS):
        table = data if not section else data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: [{section}] must be a table, got {table!r}")
        allowed = {key for sec, key in _SCHEMA if sec == section}
        allowed |= set(_TIMING) if section == "timing" else set(TRACK_KINDS) if section == "track" else set()
        if section:
            _checked(name, check_keys, table, allowed, f"{section}.")
        for key, raw in table.items():
            if not section and key in _SECTIONS:
                continue
            where = f"{section}.{key}" if section else key
            if section == "timing":
                fields.setdefault("timing", {})[key] = _checked(name, check_value, where, raw, DURATION)
            elif section == "track" and key in TRACK_KINDS:
                if not isinstance(raw, dict):
                    raise ConfigError(f"{name}: [{where}] must be a table, got {raw!r}")
                fields.setdefault("_track_tables", {})[key] = raw
            else:
                field_name, rule = _SCHEMA[(section, key)]
                fields[field_name] = _checked(name, check_value, where, raw, rule)
    fields["timing"] = Timing(**fields.get("timing", {}))
    tables = fields.pop("_track_tables", {})
    kind = fields.get("track_kind", "quest")
    if kind == "models":
        fields["track_options"] = {**_model_options(name, tables.get(kind, {})),
                                   COMMON_TRACK: _track_options(name, COMMON_TRACK, tables.get(COMMON_TRACK, {}))}
    else:
        fields["track_options"] = _track_options(name, kind, tables.get(kind, {}))
    config = ExperimentConfig(**fields)
    if config.magnification is not None and config.stimulus_deg is not None:
        raise ConfigError(
            f"{name}: set display.stimulus_deg or display.magnification, not both (got {config.stimulus_deg:g} "
            f"degrees and magnification {config.magnification})"
        )
    return config


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
    except EigdistError as err:
        raise ConfigError(f"{name}: track.{kind}: {err}") from None
    return options


def _model_options(name: str, table: dict) -> dict:
    """Check ``[track.models]``: every key of :data:`MODEL_OPTIONS`, defaults filled in."""
    _checked(name, check_keys, table, MODEL_OPTIONS, "track.models.")
    return {key: default if key not in table else _checked(name, check_value, f"track.models.{key}", table[key], rule)
            for key, (default, rule) in MODEL_OPTIONS.items()}


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
    except EigdistError as err:
        raise ConfigError(str(err)) from None
    return parse_config(data, path.name)
