"""Stimulus-set build configs: a TOML file → a checked :class:`SetConfig`.

Every error names the key (``models[1].weights: ...``) and what is allowed.
Checks that need the models or the image files (unknown node, missing file)
happen when the build starts, in :func:`eigdist_core.build_inputs.check_inputs`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config_table import Rule, check_keys, check_value
from .images import BUILTIN_IMAGES
from .errors import EigdistError, in_context
from .io import read_toml
from .models import parse_spec
from .contract import CONTRAST_DIRECTIONS, DIRECTIONS
from .preconditioner import PROBES
from .stimulus_set import safe_name
from .validate import METHODS, validate_diagonal_probes, validate_value_range

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".npy")
COLORS = {"grey": 1, "gray": 1, "rgb": 3}
KEYS = {
    "name", "seed", "images", "color", "size", "value_range", "alpha_max", "directions", "k",
    "solver", "tol", "max_iter", "diagonal_probes", "response_points", "models", "contrasts",
}
MODEL_KEYS = {"spec", "weights"}
CONTRAST_KEYS = {"kind", "models", "name", "k", "solver"}
#: Solvers of a contrast (:data:`eigdist_core.layer_contrasts.COMPARISON_METHODS`, named here to keep torch out).
CONTRAST_SOLVERS = ("auto", "exact", "iterative")
#: The scalar keys and their rules (one checker: :mod:`eigdist_core.config_table`); the lists
#: (images, models, directions), name and value_range have their own checks below.
RULES = {
    "color": Rule("choice", choices=tuple(COLORS)),
    "size": Rule("int", low=8),
    "alpha_max": Rule("float", low=0, low_open=True),
    "k": Rule("int", low=0, low_open=True),
    "solver": Rule("choice", choices=METHODS),
    "tol": Rule("float", low=0, low_open=True),
    "max_iter": Rule("int", low=0, low_open=True),
    "diagonal_probes": Rule("int", low=0),  # and not 1: validate_diagonal_probes
    "response_points": Rule("int", low=3),  # 3 at least: 0, alpha_max/1000 and alpha_max
    "seed": Rule("int", low=0),
}


@dataclass(frozen=True)
class ModelEntry:
    """One network of the set: ``spec`` ``<model>:<layer>`` with its ``weights``."""

    spec: str
    weights: str

    @property
    def model(self) -> str:
        return self.spec.split(":", 1)[0]

    @property
    def layer(self) -> str:
        return self.spec.split(":", 1)[1]


@dataclass(frozen=True)
class Contrast:
    """One ``[[contrasts]]`` entry: stimuli that tell the set's layers ``models`` apart (docs/stimuli.md).

    ``kind`` is ``generalized`` (two layers A, B: k top and k bottom generalized eigendistortions)
    or ``principal`` (M ≥ 2 layers: the two principal distortions); ``name`` is file-safe and unique.
    """

    kind: str
    name: str
    models: tuple[ModelEntry, ...]
    k: int = 1
    solver: str = "auto"


@dataclass(frozen=True)
class SetConfig:
    """A checked build config (see ``docs/stimuli.md`` for every key).

    ``images`` holds the sources after folders are expanded: built-in names,
    or file paths relative to the config's folder when they lie below it.
    """

    name: str
    images: tuple[str, ...]
    models: tuple[ModelEntry, ...]
    color: str = "grey"
    size: int = 64
    value_range: tuple[float, float] = (0.2, 0.8)
    alpha_max: float = 4.0
    directions: tuple[str, ...] = DIRECTIONS
    k: int = 1
    solver: str = "auto"
    tol: float = 1e-4
    max_iter: int = 1000
    diagonal_probes: int = PROBES
    response_points: int = 9
    seed: int = 0
    contrasts: tuple[Contrast, ...] = ()

    @property
    def channels(self) -> int:
        return COLORS[self.color]

    def as_dict(self) -> dict[str, Any]:
        """The parsed config as plain JSON data (what the manifest stores and set_id hashes)."""
        d = asdict(self)
        d["images"] = list(self.images)
        d["value_range"] = list(self.value_range)
        d["directions"] = list(self.directions)
        d["models"] = [asdict(m) for m in self.models]
        if self.contrasts:
            d["contrasts"] = [{**asdict(c), "models": [asdict(m) for m in c.models]} for c in self.contrasts]
        else:  # a set without contrasts keeps the build_id it had before they existed
            del d["contrasts"]
        return d


def load_config(path: str | os.PathLike) -> tuple[SetConfig, Path]:
    """Read and check a TOML config; return it with the folder its relative paths start from."""
    path = Path(path)
    raw = read_toml(path, "stimulus-set config")
    try:
        return parse_config(raw, path.parent), path.parent
    except (EigdistError, FileNotFoundError) as exc:
        raise in_context(exc, str(path)) from exc


def parse_config(raw: dict[str, Any], base: Path) -> SetConfig:
    """Check the keys of a parsed TOML table and build a :class:`SetConfig`."""
    check_keys(raw, KEYS)
    for key in ("name", "images", "models"):
        if key not in raw:
            raise EigdistError(f"{key}: missing (required)")
    name = raw["name"]
    if not isinstance(name, str) or not name or safe_name(name) != name:
        raise EigdistError(f"name: must be a non-empty string of letters, digits, '.', '_', '-'; got {name!r}")
    defaults = SetConfig(name=name, images=(), models=())
    scalars = {key: check_value(key, raw.get(key, getattr(defaults, key)), rule) for key, rule in RULES.items()}
    validate_diagonal_probes(scalars["diagonal_probes"])
    try:
        value_range = validate_value_range(raw.get("value_range", defaults.value_range))
    except EigdistError as exc:
        raise EigdistError(f"value_range: {exc}") from None
    directions = raw.get("directions", list(defaults.directions))
    if not isinstance(directions, list) or not directions or any(d not in DIRECTIONS for d in directions):
        raise EigdistError(f"directions: must be a non-empty list drawn from {', '.join(DIRECTIONS)}; got {directions!r}")
    if len(set(directions)) != len(directions):
        raise EigdistError(f"directions: lists a direction twice: {directions!r}")
    models = _models(raw["models"])
    return SetConfig(
        name=name,
        images=_images(raw["images"], base),
        models=models,
        contrasts=_contrasts(raw.get("contrasts", []), models),
        value_range=value_range,
        directions=tuple(d for d in DIRECTIONS if d in directions),  # one canonical order
        **{**scalars, "color": "rgb" if scalars["color"] == "rgb" else "grey"},
    )


def _images(value: Any, base: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise EigdistError(f"images: must be a non-empty list of built-in names, files or folders; got {value!r}")
    sources: list[str] = []
    for i, source in enumerate(value):
        if source in BUILTIN_IMAGES:
            sources.append(source)
            continue
        path = base / source
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"images[{i}]: folder {source!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            sources += [_relative(p, base) for p in found]
        elif path.is_file():
            sources.append(_relative(path, base))
        else:
            raise FileNotFoundError(
                f"images[{i}]: {source!r} is neither a file, a folder nor a built-in name; "
                f"built-ins: {', '.join(BUILTIN_IMAGES)}"
            )
    ids = [image_id_of(s) for s in sources]
    for j, image_id in enumerate(ids):
        if image_id in ids[:j]:
            raise EigdistError(f"images: two images have the id {image_id!r} ({sources[ids.index(image_id)]!r} and {sources[j]!r}); rename one")
    return tuple(sources)


def _relative(path: Path, base: Path) -> str:
    # Relative to the config's folder, so a set's config (and set_id) does not depend on where the repo lives.
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def image_id_of(source: str) -> str:
    """The image id of a source: a built-in name, or a file's stem, made file-safe."""
    return safe_name(source if source in BUILTIN_IMAGES else Path(source).stem)


def _models(value: Any) -> tuple[ModelEntry, ...]:
    if not isinstance(value, list) or not value:
        raise EigdistError("models: must be a non-empty array of tables [[models]] with spec and weights")
    entries = []
    for i, table in enumerate(value):
        if not isinstance(table, dict):
            raise EigdistError(f"models[{i}]: must be a table with spec and weights, got {table!r}")
        check_keys(table, MODEL_KEYS, f"models[{i}].")
        spec, weights = table.get("spec"), table.get("weights")
        try:
            parse_spec(spec)
        except EigdistError as exc:
            raise EigdistError(f"models[{i}].spec: {exc}") from None
        if not isinstance(weights, str) or not weights:
            raise EigdistError(
                f"models[{i}].weights: missing; give imagenet, random:<seed>, published, bundled, factory or a file path"
            )
        entry = ModelEntry(spec, weights)
        if entry in entries:
            raise EigdistError(f"models[{i}]: {spec} with weights {weights} is listed twice")
        entries.append(entry)
    return tuple(entries)


def _contrasts(value: Any, models: tuple[ModelEntry, ...]) -> tuple[Contrast, ...]:
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise EigdistError("contrasts: must be an array of tables [[contrasts]] with kind and models")
    out: list[Contrast] = []
    for i, table in enumerate(value):
        where = f"contrasts[{i}]"
        check_keys(table, CONTRAST_KEYS, f"{where}.")
        kind = table.get("kind")
        if kind not in CONTRAST_DIRECTIONS:
            raise EigdistError(f"{where}.kind: must be one of {', '.join(CONTRAST_DIRECTIONS)}; got {kind!r}")
        refs = table.get("models")
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise EigdistError(f"{where}.models: must be a list of the set's layers (\"<model>:<layer>\"); got {refs!r}")
        layers = tuple(_layer_ref(f"{where}.models[{j}]", ref, models) for j, ref in enumerate(refs))
        _check_layer_count(where, kind, layers)
        if "k" in table and kind != "generalized":
            raise EigdistError(f"{where}.k: only for kind = \"generalized\" (principal distortions are one pair)")
        k = check_value(f"{where}.k", table.get("k", 1), RULES["k"])
        solver = check_value(f"{where}.solver", table.get("solver", "auto"), Rule("choice", choices=CONTRAST_SOLVERS))
        name = table.get("name", "_vs_".join(safe_name(ref) for ref in refs))
        if not isinstance(name, str) or not name or safe_name(name) != name:
            raise EigdistError(f"{where}.name: must be a non-empty string of letters, digits, '.', '_', '-'; got {name!r}")
        if any(c.name == name for c in out):
            raise EigdistError(f"{where}.name: {name!r} names an earlier contrast too; give each [[contrasts]] its own name")
        out.append(Contrast(kind, name, layers, k, solver))
    return tuple(out)


def _layer_ref(where: str, ref: str, models: tuple[ModelEntry, ...]) -> ModelEntry:
    """The set's layer that ``ref`` names: ``<model>:<layer>``, or ``<model>:<layer>@<weights>`` where the set has two."""
    spec, _, weights = ref.partition("@")
    found = [m for m in models if m.spec == spec and (not weights or m.weights == weights)]
    if not found:
        listed = ", ".join(m.spec if [n.spec for n in models].count(m.spec) == 1 else f"{m.spec}@{m.weights}"
                           for m in models)
        raise EigdistError(f"{where}: {ref!r} is not a layer of the set; its [[models]] are: {listed}")
    if len(found) > 1:
        raise EigdistError(f"{where}: {ref!r} is in the set with weights {' and '.join(m.weights for m in found)}; "
                           f"name one, e.g. {ref}@{found[0].weights!s}")
    return found[0]


def _check_layer_count(where: str, kind: str, layers: tuple[ModelEntry, ...]) -> None:
    """A generalized contrast names two different layers, a principal one at least two."""
    for j, layer in enumerate(layers):
        if layer in layers[:j]:
            raise EigdistError(f"{where}.models: names {layer.spec} ({layer.weights}) twice: a layer cannot be "
                               "contrasted with itself")
    if kind == "generalized" and len(layers) != 2:
        raise EigdistError(f"{where}.models: a generalized contrast names exactly two layers (A, then B); got {len(layers)}")
    if len(layers) < 2:
        raise EigdistError(f"{where}.models: principal distortions need at least two layers; got {len(layers)}")
