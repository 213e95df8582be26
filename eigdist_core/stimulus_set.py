"""The stimulus-set folder format: names, reading, the manifest and its checks.

A set is a folder (docs/formats.md, "Stimulus set")::

    <set>/manifest.json          what is in the set, with a sha256 per file
    <set>/images/<image_id>.npy  float32 C × H × W, in value_range
    <set>/items/<item_id>.npy    float32 C × H × W, unit L2 norm

This module knows the format only; building a set is :mod:`eigdist_core.build`.
It imports numpy and jsonschema, not torch, so the experiment and the analysis
can read a set cheaply.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .contract import DISPLAY_RANGE, ITEM_DIRECTIONS, ITEM_ID_SEPARATOR, SAFE_CHARACTERS, UNSAFE_REPLACEMENT
from .errors import EigdistError, FileFormatError
from .validate import validate_number
from .io import json_bytes, load_json, load_npy, save_json, sha256_bytes, sha256_file

SCHEMA_VERSION = 2
MANIFEST = "manifest.json"
#: Manifest fields outside the set's identity: the id itself, its per-field digests, the first build time,
#: and the sensitivity table (added to a set whose trials exist; :mod:`eigdist_core.sensitivities` checks it).
NOT_IDENTITY = ("set_id", "digests", "created", "sensitivities")
#: Tolerances of :func:`verify_set`: unit norm, max/min overlap, recorded α.
NORM_TOL = 1e-4
OVERLAP_TOL = 0.1
ALPHA_RTOL = 1e-4

_UNSAFE = re.compile(f"[^{SAFE_CHARACTERS}]")


def safe_name(text: str) -> str:
    """``text`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``-`` (the contract's rule)."""
    return _UNSAFE.sub(UNSAFE_REPLACEMENT, str(text))


def item_id_for(image_id: str, model: str, layer: str, weights: str, direction: str, index: int) -> str:
    """The item id ``<image_id>__<model>__<layer>__<weights>__<direction><index>``, made file-safe.

    Examples
    --------
    >>> item_id_for("camera", "resnet18", "layer2", "random:0", "max", 0)
    'camera__resnet18__layer2__random-0__max0'
    """
    if direction not in ITEM_DIRECTIONS:
        raise EigdistError(f"direction must be one of {', '.join(ITEM_DIRECTIONS)}; got {direction!r}")
    validate_number("index", index, integer=True, low=0)
    names = (image_id, model, layer, weights)
    return ITEM_ID_SEPARATOR.join([*(safe_name(p) for p in names), f"{direction}{index}"])


def compute_build_id(config: dict[str, Any], versions: dict[str, str], models: list[dict] | None = None) -> str:
    """First 16 hex of the sha256 of the parsed config, the package versions and the models' provenance.

    What a build is *asked* to make: a rerun with the same build_id resumes, another is refused.
    ``models`` (the manifest's ``models``: source and weights files' sha256) makes an edited
    model file another build.
    """
    return _digest({"config": config, "versions": versions, **({"models": models} if models is not None else {})}, 16)


def compute_set_id(manifest: dict[str, Any]) -> str:
    """First 16 hex of the sha256 of every manifest field but :data:`NOT_IDENTITY`.

    What a set *is*: the config, the shapes and ranges, ``alpha_max``, every
    image and item entry (sha256, eigenvalue, response curve, ceiling…), so any
    edit of a field the experiment or the analysis reads changes it.
    """
    return _digest({k: v for k, v in manifest.items() if k not in NOT_IDENTITY}, 16)


def field_digests(manifest: dict[str, Any]) -> dict[str, str]:
    """A 12-hex digest of each identity field, by path (``alpha_max``, ``config.seed``, ``items[<id>].eigenvalue``).

    Stored in the manifest so that a set whose ``set_id`` no longer matches can say which field changed.
    """
    out = {}
    for key, value in manifest.items():
        if key in NOT_IDENTITY:
            continue
        if key in ("images", "items") and isinstance(value, list):
            for i, entry in enumerate(value):
                name = entry.get(f"{key[:-1]}_id", i) if isinstance(entry, dict) else i
                fields = entry.items() if isinstance(entry, dict) else [("", entry)]
                for sub, v in fields:
                    out[f"{key}[{name}]" + (f".{sub}" if sub else "")] = _digest(v, 12)
        elif key in ("config", "versions") and isinstance(value, dict):
            for sub, v in value.items():
                out[f"{key}.{sub}"] = _digest(v, 12)
        else:
            out[key] = _digest(value, 12)
    return out


def seal(manifest: dict[str, Any]) -> dict[str, Any]:
    """Set ``digests`` and ``set_id`` of ``manifest`` from its content, in place; return it."""
    manifest["digests"] = field_digests(manifest)
    manifest["set_id"] = compute_set_id(manifest)
    return manifest


def identity_problems(manifest: dict[str, Any]) -> list[str]:
    """Why ``manifest`` is not the set its ``set_id`` names, each naming the field (empty = it is)."""
    problems = []
    if manifest.get("set_id") != compute_set_id(manifest):
        stored = manifest.get("digests") if isinstance(manifest.get("digests"), dict) else {}
        now = field_digests(manifest)
        before, after = _entries(stored), _entries(now)
        problems += [f"{MANIFEST}: {e} was removed" for e in sorted(before - after)]
        problems += [f"{MANIFEST}: {e} was added" for e in sorted(after - before)]
        changed = (before - after) | (after - before)
        for path in sorted(set(stored) | set(now)):
            if _entry_of(path) in changed:
                continue
            if path not in now:
                problems.append(f"{MANIFEST}: {path} was removed")
            elif path not in stored:
                problems.append(f"{MANIFEST}: {path} was added")
            elif stored[path] != now[path]:
                problems.append(f"{MANIFEST}: {path} was edited")
        if not problems:
            problems.append(f"{MANIFEST}: set_id {manifest.get('set_id')!r} does not match the manifest's content "
                            f"({compute_set_id(manifest)}): set_id or digests were edited")
    config, versions = manifest.get("config"), manifest.get("versions")
    if isinstance(config, dict) and isinstance(versions, dict):
        build_id = compute_build_id(config, versions, manifest.get("models"))
        if manifest.get("build_id") != build_id:
            problems.append(f"{MANIFEST}: build_id {manifest.get('build_id')!r} does not match its config, versions "
                            f"and models ({build_id})")
        for key in ("size", "value_range", "alpha_max"):
            if key in config and manifest.get(key) != config[key]:
                problems.append(f"{MANIFEST}: {key} is {manifest.get(key)!r} but config.{key} is {config[key]!r}")
    return problems


def _entries(digests: dict[str, str]) -> set[str]:
    """The image and item entries (``items[<id>]``) named by the paths of ``digests``."""
    return {_entry_of(path) for path in digests if path.startswith(("images[", "items["))}


def _entry_of(path: str) -> str:
    """``items[<id>]`` for ``items[<id>].<field>`` (ids may hold dots, never brackets); else the top-level key."""
    return path[: path.index("]") + 1] if path.startswith(("images[", "items[")) else path.split(".")[0]


def _digest(value: Any, length: int) -> str:
    return hashlib.sha256(json_bytes(value)).hexdigest()[:length]


def alpha_displayable(image: np.ndarray, direction: np.ndarray, bounds=DISPLAY_RANGE) -> float:
    """The largest α for which ``image ± α·direction`` stays inside ``bounds``.

    Returns ``inf`` for an all-zero direction. Values are computed in float64.
    """
    lo, hi = bounds
    x = np.asarray(image, dtype=np.float64).ravel()
    e = np.abs(np.asarray(direction, dtype=np.float64).ravel())
    room = np.minimum(x - lo, hi - x)  # the sign of e is random on screen: both ways must fit
    nz = e > 0
    if not nz.any():
        return math.inf
    return float(max(0.0, np.min(room[nz] / e[nz])))


@lru_cache(maxsize=1)
def manifest_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (``manifest.schema.json`` next to this module)."""
    return load_json(Path(__file__).with_name("manifest.schema.json"))


def schema_problems(manifest: Any) -> list[str]:
    """Every place where ``manifest`` breaks the schema, as ``manifest.json: <path>: <message>``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(manifest_schema())
    problems = []
    for err in sorted(validator.iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path))):
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        problems.append(f"{MANIFEST}: {where}: {err.message}")
    return problems


def write_manifest(folder: str | os.PathLike, manifest: dict[str, Any]) -> str:
    """Seal ``manifest`` (set its ``digests`` and ``set_id``, in place), write it atomically into ``folder``; return its sha256."""
    return save_json(Path(folder) / MANIFEST, seal(manifest))


class SetError(EigdistError):
    """A stimulus set that cannot be used: unreadable, of another format, or changed after its build."""


def _read_manifest(path: Path) -> tuple[dict | None, str | None]:
    """``(manifest, None)``, or ``(None, problem)`` with the problem starting with ``manifest.json: ``."""
    file = path / MANIFEST
    if not file.is_file():
        return None, f"{MANIFEST}: not found: the folder is not a stimulus set (build one with 'eigdist stimuli build')"
    try:
        manifest = load_json(file)
    except FileFormatError as exc:
        return None, f"{MANIFEST}: not valid JSON ({exc.__cause__})"
    found = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if found != SCHEMA_VERSION:
        older = isinstance(found, int) and found < SCHEMA_VERSION
        hint = "; it was built by an older eigdist: build it again with 'eigdist stimuli build CONFIG --force'" if older else ""
        return None, f"{MANIFEST}: schema_version must be {SCHEMA_VERSION}, got {found!r}{hint}"
    return manifest, None


@dataclass
class StimulusSet:
    """A stimulus set opened for reading.

    Attributes
    ----------
    path : Path
        The set's folder.
    manifest : dict
        ``manifest.json`` as read.
    set_id : str
        The set's id (16 hex).
    items, images : list[dict]
        The manifest's item and image entries, in manifest order.
    """

    path: Path
    manifest: dict[str, Any]
    _items: dict[str, dict] = field(default_factory=dict, repr=False)
    _images: dict[str, dict] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "StimulusSet":
        """Read the manifest of the set in folder ``path`` and check its identity.

        File contents are not read here (see :func:`verify_set`), but a manifest
        whose fields no longer give its ``set_id`` (a hand edit) is refused.

        Raises
        ------
        FileNotFoundError
            If ``path`` holds no manifest.
        SetError
            If the manifest is unreadable, of another schema version, or edited (naming the fields).
        """
        path = Path(path)
        manifest, problem = _read_manifest(path)
        if problem is not None:
            error = FileNotFoundError if manifest is None and "not found" in problem else SetError
            raise error(f"{path}/{problem}")
        problems = identity_problems(manifest)
        if problems:
            more = f"; … and {len(problems) - 5} more" if len(problems) > 5 else ""
            raise SetError(
                f"stimulus set {path} was changed after it was built, so it is not set {manifest.get('set_id')!r}: "
                + "; ".join(p.removeprefix(f"{MANIFEST}: ") for p in problems[:5]) + more
                + "; rebuild it, or restore its manifest.json ('eigdist stimuli verify' lists every problem)"
            )
        obj = cls(path, manifest)
        obj._images = {im["image_id"]: im for im in manifest.get("images", [])}
        obj._items = {it["item_id"]: it for it in manifest.get("items", [])}
        return obj

    @property
    def set_id(self) -> str:
        return self.manifest["set_id"]

    @property
    def items(self) -> list[dict]:
        return self.manifest["items"]

    @property
    def images(self) -> list[dict]:
        return self.manifest["images"]

    def item_entry(self, item_id: str) -> dict:
        """The manifest entry of ``item_id``."""
        return _lookup(self._items, item_id, "item")

    def image_entry(self, image_id: str) -> dict:
        """The manifest entry of ``image_id``."""
        return _lookup(self._images, image_id, "image")

    def image(self, image_id: str) -> np.ndarray:
        """The image ``image_id`` as float32 C × H × W, in the set's value_range."""
        return self._read(self.image_entry(image_id))

    def item(self, item_id: str) -> np.ndarray:
        """The distortion ``item_id`` as float32 C × H × W with unit L2 norm."""
        return self._read(self.item_entry(item_id))

    def _read(self, entry: dict) -> np.ndarray:
        """A listed array, as the manifest opened lists it (its sha256), or :class:`SetError`.

        A set rebuilt (``--force``) or edited while a session or preview reads it is named as
        such, not as a raw missing file or, worse, read as other stimuli.
        """
        file = self.path / entry["file"]
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            data = None
        if data is None or sha256_bytes(data) != entry["sha256"]:
            state = "is gone" if data is None else "has other content"
            raise SetError(
                f"stimulus set {self.path} changed while in use: {entry['file']} {state} (rebuilt with --force, or "
                f"edited?); finished trials are saved: restore set {self.set_id} (eigdist stimuli verify "
                f"{self.path}), then continue with --resume, or run a new session on the new set"
            )
        return np.ascontiguousarray(np.load(io.BytesIO(data), allow_pickle=False), dtype=np.float32)


def open_verified(path: str | os.PathLike) -> StimulusSet:
    """Open the set in ``path`` after :func:`verify_set` found no problem (the one check before a set is used).

    Raises
    ------
    FileNotFoundError
        If ``path`` holds no manifest.
    SetError
        Listing the verification problems (first five) and the command that lists them all.
    """
    stimuli = StimulusSet.open(path)
    problems = verify_set(path)
    if problems:
        more = f"; … and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise SetError(
            f"stimulus set {str(path)!r} failed verification ({len(problems)} problem(s)): "
            + "; ".join(problems[:5]) + more + "; run 'eigdist stimuli verify' for the full list"
        )
    return stimuli


def _lookup(table: dict[str, dict], key: str, kind: str) -> dict:
    try:
        return table[key]
    except KeyError:
        known = ", ".join(sorted(table)[:5]) + (", ..." if len(table) > 5 else "")
        raise KeyError(f"no {kind} {key!r} in this set; {kind}s include: {known}") from None


def verify_set(path: str | os.PathLike) -> list[str]:
    """Check a whole set; return every problem found, each naming its file (empty = OK).

    Checks: the set's identity (``set_id`` from every field, naming each field
    edited since the build); the manifest against its JSON Schema; every listed file exists with
    its sha256; images are finite float32 C × H × W in value_range; items are
    finite float32 of the image's shape with unit norm; each item's
    ``alpha_displayable_max`` is what its image and direction give (so the
    image ± min(alpha_max, alpha_displayable_max)·e is displayable); the max
    and min directions of a condition differ (|cos| < 0.1). A file gets every
    problem it has (a changed sha256 and a wrong norm, say), not just the first.
    """
    path = Path(path)
    m, problem = _read_manifest(path)
    if problem is not None:
        return [problem]
    problems = schema_problems(m)
    if problems:
        return identity_problems(m) + problems  # the field checks below rely on the schema
    problems += _id_problems(m)
    images = {}
    lo, hi = m["value_range"]
    shape = (m["channels"], m["size"], m["size"])
    for entry in m["images"]:
        array, bad = _checked_array(path, entry, shape)
        problems += bad
        if array is None:
            continue
        if array.min() < lo - 1e-6 or array.max() > hi + 1e-6:
            problems.append(
                f"{entry['file']}: values [{array.min():.6g}, {array.max():.6g}] leave value_range [{lo}, {hi}]"
            )
        if not bad:  # a changed image is reported once, not again through each of its items
            images[entry["image_id"]] = array
    vectors: dict[tuple, np.ndarray] = {}
    for entry in m["items"]:
        array, bad = _checked_array(path, entry, shape)
        problems += bad
        if array is None:
            continue
        norm = float(np.linalg.norm(array.astype(np.float64)))
        if abs(norm - 1.0) > NORM_TOL:
            problems.append(f"{entry['file']}: L2 norm is {norm:.6g}, not 1")
        image = images.get(entry["image_id"])
        if image is not None:
            problems += _alpha_problems(entry, image, array, m["alpha_max"])
        if entry["index"] == 0 and entry["direction"] in ("max", "min") and not bad:
            key = tuple(entry[k] for k in ("image_id", "model", "layer", "weights"))
            vectors[key + (entry["direction"],)] = array
    for key, vmax in vectors.items():
        vmin = vectors.get(key[:-1] + ("min",)) if key[-1] == "max" else None
        if vmin is not None:
            cos = abs(float(np.dot(vmax.ravel().astype(np.float64), vmin.ravel().astype(np.float64))))
            if cos >= OVERLAP_TOL:
                problems.append(
                    f"items/{item_id_for(*key[:4], 'min', 0)}.npy: the min direction is the max direction "
                    f"(|cos| = {cos:.3g} with items/{item_id_for(*key[:4], 'max', 0)}.npy)"
                )
    from .sensitivities import table_problems
    from .subset_selection import selection_problems

    return problems + table_problems(path, m) + selection_problems(m)


def _id_problems(m: dict) -> list[str]:
    problems = identity_problems(m)
    image_ids = {im["image_id"] for im in m["images"]}
    for im in m["images"]:
        if im["file"] != f"images/{im['image_id']}.npy":
            problems.append(f"{MANIFEST}: image {im['image_id']!r} has file {im['file']!r}, expected images/{im['image_id']}.npy")
    seen = set()
    for it in m["items"]:
        expected = item_id_for(it["image_id"], it["model"], it["layer"], it["weights"], it["direction"], it["index"])
        if it["item_id"] != expected:
            problems.append(f"{MANIFEST}: item_id {it['item_id']!r} should be {expected!r}")
        if it["item_id"] in seen:
            problems.append(f"{MANIFEST}: item_id {it['item_id']!r} is listed twice")
        seen.add(it["item_id"])
        if it["file"] != f"items/{it['item_id']}.npy":
            problems.append(f"{MANIFEST}: item {it['item_id']!r} has file {it['file']!r}, expected items/{it['item_id']}.npy")
        if it["image_id"] not in image_ids:
            problems.append(f"{MANIFEST}: item {it['item_id']!r} names image {it['image_id']!r}, which is not in images")
    from .contrast_items import contrast_problems

    problems += contrast_problems(m)
    if m.get("complete") is False:
        problems.append(f"{MANIFEST}: the build did not finish (complete = false): rerun 'eigdist stimuli build'")
    return problems


def _checked_array(folder: Path, entry: dict, shape: tuple[int, ...]) -> tuple[np.ndarray | None, list[str]]:
    """Hash, load and check one listed array; (array, or None when unusable; every problem found).

    A sha256 mismatch does not stop the checks: the content checks say what else is wrong with the file.
    """
    file = folder / entry["file"]
    if not file.is_file():
        return None, [f"{entry['file']}: missing"]
    problems = []
    digest = sha256_file(file)
    if digest != entry["sha256"]:
        problems.append(f"{entry['file']}: sha256 {digest[:12]}… differs from the manifest's {entry['sha256'][:12]}…")
    try:
        array = load_npy(file)
    except (ValueError, OSError) as exc:
        return None, problems + [f"{entry['file']}: not a readable .npy file ({exc})"]
    usable = len(problems)
    if array.dtype != np.float32:
        problems.append(f"{entry['file']}: dtype {array.dtype}, expected float32")
    if array.shape != shape:
        problems.append(f"{entry['file']}: shape {array.shape}, expected {shape}")
    if not np.isfinite(array).all():
        problems.append(f"{entry['file']}: {int((~np.isfinite(array)).sum())} NaN or infinite values")
    return (array if len(problems) == usable else None), problems


def _alpha_problems(entry: dict, image: np.ndarray, item: np.ndarray, alpha_max: float) -> list[str]:
    recorded = entry["alpha_displayable_max"]
    actual = alpha_displayable(image, item)
    if actual == 0.0:
        return [f"{entry['file']}: cannot be shown without clipping (image ± α·e leaves [0, 1] for every α > 0)"]
    if not math.isclose(recorded, actual, rel_tol=ALPHA_RTOL, abs_tol=1e-9):
        return [
            f"{entry['file']}: alpha_displayable_max is {recorded:.6g} in the manifest but image ± α·e "
            f"leaves [0, 1] beyond α = {actual:.6g} (alpha_max {alpha_max})"
        ]
    return []
