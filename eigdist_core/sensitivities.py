"""What every model predicts about every item of a set: s = vᵀF_m(x)v and the linearity ratio ρ.

For an item v at image x and a model layer f_m, the Fisher information along v is
s_m(v) = vᵀF_m v = ‖J_m v‖²: one Jacobian-vector product per (item, network) pair, no eigensolve
(:mod:`~eigdist_core.sensitivity_values`). A model observer with additive Gaussian noise
then has the threshold k_m/√s_m(v). That holds while f_m responds linearly along v;
ρ = ‖f(x + αv) − f(x)‖² / (α²·s) checks it at the amplitudes the experiment can show (the set's
response-curve grid up to the item's α ceiling, and the ceiling itself); items whose ρ leaves
:data:`~eigdist_core.contract.LINEARITY_BAND` are flagged. The layers of one network share their
passes, one task per network.

The table is a file of the set (``sensitivities.csv``, docs/formats.md "Sensitivities"), outside the
set's identity, tied to the set's items by the manifest's ``sensitivities`` entry and checked by
:func:`table_problems` (``stimuli verify``) and :func:`read_table` (the analysis).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .config import ModelEntry
from .contract import (
    L2_MODEL, LINEARITY_BAND, SENSITIVITY_COLUMNS, SENSITIVITY_FILE, SENSITIVITY_TAIL, alpha_ceiling,
)
from .errors import EigdistError
from .io import atomic_write_bytes, load_npy, sha256_file
from .provenance import versions
from .sensitivity_values import as_float64, layer_values


class SensitivityError(EigdistError):
    """A sensitivity table that cannot be made or used: a model that does not fit the set, a stale table."""


def curve_alphas(alpha_max: float, points: int) -> list[float]:
    """The response-curve grid of a set: 0, then ``points − 1`` amplitudes geometric from alpha_max/1000 to alpha_max."""
    return [0.0] + [float(a) for a in np.geomspace(alpha_max * 1e-3, alpha_max, points - 1)]


def rho_alphas(manifest: dict) -> list[float]:
    """The amplitudes of the ρ columns: the set's response-curve grid without α = 0."""
    return curve_alphas(float(manifest["alpha_max"]), int(manifest["config"]["response_points"]))[1:]


def items_digest(manifest: dict) -> str:
    """sha256 (16 hex) of every item's ``item_id`` and ``sha256``, in manifest order."""
    text = "\n".join(f"{it['item_id']} {it['sha256']}" for it in manifest["items"])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def parse_model_arg(text: str) -> ModelEntry:
    """``SPEC`` or ``SPEC=WEIGHTS`` (``--models``) as a :class:`ModelEntry`; default weights as the family's.

    Raises
    ------
    SensitivityError
        Naming the argument when the spec is malformed.
    """
    from .models import default_weights, parse_spec

    spec, _, weights = str(text).partition("=")
    try:
        parse_spec(spec)
    except ValueError as exc:
        raise SensitivityError(f"--models {text!r}: {exc}; give SPEC or SPEC=WEIGHTS") from None
    return ModelEntry(spec, weights or default_weights(spec))


def columns(k: int) -> list[str]:
    """The table's header for ``k`` ρ amplitudes."""
    return [*SENSITIVITY_COLUMNS, *(f"rho_{i + 1}" for i in range(k)), *SENSITIVITY_TAIL]


def response_curve(model64, image, direction, alpha_max: float, points: int) -> dict[str, list[float]]:
    """‖f(x + αe) − f(x)‖ at α = 0 and ``points − 1`` amplitudes spaced geometrically from alpha_max/1000 to alpha_max.

    Near α = 0 it grows as √λ·α (λ = eᵀFe); where it bends away, the Fisher
    (local) approximation stops describing the model. ``model64`` is a float64 copy
    (:func:`~eigdist_core.sensitivity_values.as_float64`), so a direction with a tiny λ
    is not lost in float32 rounding; a build makes one copy per group for all its items.
    """
    import torch

    from .model_state import keeping_buffers
    from .validate import validate_response

    def f(image: torch.Tensor) -> torch.Tensor:
        with keeping_buffers(model64):  # every call sees the model as given
            return model64(image)

    alphas = curve_alphas(alpha_max, points)
    x, e = image.double(), direction.double()[None]
    with torch.no_grad():
        base = f(x)
        dist = [float((validate_response(f(x + a * e), x, like=base) - base).norm()) for a in alphas]
    return {"alpha": alphas, "distance": dist}


@dataclass(frozen=True)
class ModelTask:
    """One network of a set: s and ρ of every item under each of its layers (picklable; it loads once).

    ``candidates`` are the layers of one model with the same weights (their passes are shared where
    they are one network's); ``images`` holds (image_id, item ids, their α ceilings) per image.
    """

    folder: str
    candidates: tuple[ModelEntry, ...]
    images: tuple[tuple[str, tuple[str, ...], tuple[float, ...]], ...]
    alphas: tuple[float, ...]


def compute_model(task: ModelTask) -> dict[tuple[str, ModelEntry], tuple[float, list[float], float]]:
    """s, the ρ row and ρ at the ceiling of every (item, candidate) of ``task`` (a worker's function)."""
    from .device import THREADS, torch_threads

    with torch_threads(THREADS):
        folder = Path(task.folder)
        out = {}
        for candidates, model, sizes in _networks(task.candidates, load_npy(folder / "images" / f"{task.images[0][0]}.npy")):
            model64 = as_float64(model)
            for image_id, item_ids, ceilings in task.images:
                image = load_npy(folder / "images" / f"{image_id}.npy")
                items = np.stack([load_npy(folder / "items" / f"{i}.npy") for i in item_ids])
                s, rho, rho_c = layer_values(model64, sizes, image, items, ceilings, task.alphas, model)
                out.update({(i, c): (float(s[j, m]), [float(r) for r in rho[j, m]], float(rho_c[j, m]))
                            for j, i in enumerate(item_ids) for m, c in enumerate(candidates)})
        return out


def _networks(candidates: Sequence[ModelEntry], image: np.ndarray) -> list[tuple[tuple[ModelEntry, ...], object, list | None]]:
    """(candidates, module, sizes of their responses): the layers of one network stacked into one module
    (:func:`~eigdist_core.models.adapter.stack_layers`), or each model alone (``sizes`` ``None``) where they cannot be."""
    import torch

    from . import models
    from .models.adapter import stack_layers

    loaded = [models.load(c.spec, c.weights) for c in candidates]
    stack = stack_layers(loaded, [c.layer for c in candidates])
    if stack is None:
        return [((c,), m, None) for c, m in zip(candidates, loaded)]
    return [(tuple(candidates), stack, stack.sizes(torch.from_numpy(image).float()[None]))]


def networks(candidates: Sequence[ModelEntry]) -> list[tuple[ModelEntry, ...]]:
    """``candidates`` grouped by model and weights: the layers of one network, whose passes may be shared."""
    groups: dict[tuple[str, str], list[ModelEntry]] = {}
    for c in candidates:
        groups.setdefault((c.model, c.weights), []).append(c)
    return [tuple(g) for g in groups.values()]


def check_models(manifest: dict, candidates: Sequence[ModelEntry]) -> None:
    """Refuse, before any work, a candidate that cannot load or take the set's images, naming it and why."""
    import torch

    from . import models
    from .validate import validate_model

    shape = (1, int(manifest["channels"]), int(manifest["size"]), int(manifest["size"]))
    lo, hi = manifest["value_range"]
    for entry in candidates:
        try:
            model = models.load(entry.spec, entry.weights)
            validate_model(model, torch.full(shape, (lo + hi) / 2, dtype=torch.float32))
        except FileNotFoundError as exc:
            raise SensitivityError(f"--models {entry.spec}={entry.weights}: {exc}") from None
        except (RuntimeError, ValueError, TypeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SensitivityError(
                f"--models {entry.spec}={entry.weights} cannot take this set's images ({shape[1]} channel(s), "
                f"{shape[2]} × {shape[3]} px): {first}") from None


def compute_table(folder: str | Path, manifest: dict, candidates: Sequence[ModelEntry],
                  runner: Callable | None = None, jobs: int = 1) -> tuple[bytes, dict]:
    """The table's bytes and the manifest's ``sensitivities`` entry, for ``candidates`` plus the L2 baseline."""
    from .executors import run_tasks
    from .models.provenance import provenance

    alphas = tuple(rho_alphas(manifest))
    set_max = float(manifest["alpha_max"])
    ceiling = {it["item_id"]: alpha_ceiling(set_max, it.get("alpha_displayable_max")) for it in manifest["items"]}
    images = []
    for im in manifest["images"]:
        ids = tuple(it["item_id"] for it in manifest["items"] if it["image_id"] == im["image_id"])
        if ids:
            images.append((im["image_id"], ids, tuple(ceiling[i] for i in ids)))
    tasks = [ModelTask(str(folder), net, tuple(images), alphas) for net in networks(candidates)]
    values: dict[tuple[str, ModelEntry], tuple] = {}
    for _, result in (runner or (lambda fn, ts: run_tasks(fn, ts, jobs)))(compute_model, tasks):
        values.update(result)
    l2 = ModelEntry(f"{L2_MODEL[0]}:{L2_MODEL[1]}", L2_MODEL[2])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns(len(alphas)))
    for it in manifest["items"]:
        v = load_npy(Path(folder) / it["file"]).astype(np.float64).ravel()
        norm2 = float(v @ v)
        for c in (*candidates, l2):
            s, rho, rho_c = values.get((it["item_id"], c)) or (
                norm2, [1.0 if a <= ceiling[it["item_id"]] else math.nan for a in alphas], 1.0)
            writer.writerow(_row(it, c, s, rho, rho_c, ceiling[it["item_id"]]))
    data = out.getvalue().encode("utf-8")
    entry = {
        "file": SENSITIVITY_FILE, "sha256": hashlib.sha256(data).hexdigest(), "set_id": manifest["set_id"],
        "items_sha256": items_digest(manifest), "alpha": list(alphas), "band": list(LINEARITY_BAND),
        "models": [provenance(c.spec, c.weights) for c in candidates]
        + [{"spec": l2.spec, "weights": l2.weights, "weights_sha256": None, "source": None,
            "source_sha256": None, "packages": {}}],
        "versions": versions(),
    }
    return data, entry


def _row(item: dict, c: ModelEntry, s: float, rho: list[float], rho_c: float, ceiling: float) -> list[str]:
    shown = [r for r in rho if not math.isnan(r)] + [rho_c]
    low, high = min(shown), max(shown)
    lo, hi = LINEARITY_BAND
    nonlinear = not (lo <= low and high <= hi)
    return [item["item_id"], item["sha256"], item["image_id"], c.model, c.layer, c.weights, _num(s), _num(ceiling),
            *(_num(r) for r in rho), _num(rho_c), _num(low), _num(high), "true" if nonlinear else "false"]


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else repr(float(value))


def add_sensitivities(folder: str | Path, extra: Sequence[ModelEntry] = (), jobs: int = 1,
                      runner: Callable | None = None) -> Path:
    """Compute the table of the set in ``folder`` (its layers, ``extra`` models, L2) and record it; return its path.

    The set's identity is checked first (an edited set is refused), then every extra model on the set's
    images, all before any work. The table is written atomically, then the manifest's ``sensitivities``
    entry; neither changes ``set_id``. Runs under the set folder's build lock.

    Raises
    ------
    SensitivityError
        An unfinished set, a model that does not fit its images, a model listed twice.
    """
    from .locks import hold
    from .stimulus_set import StimulusSet

    folder = Path(folder)
    StimulusSet.open(folder)  # not a set, or an edited one: refused before the lock file is made
    where = folder.resolve()
    with hold(where.parent / f".{where.name}.lock", f"stimulus set {folder}"):
        manifest = StimulusSet.open(folder).manifest
        if manifest.get("complete") is False:
            raise SensitivityError(f"{folder}: the build did not finish (complete = false): rerun "
                                   "'eigdist stimuli build' first")
        check_extra(manifest, extra)
        record_table(folder, manifest, [*set_models(manifest), *extra], runner, jobs)
    return folder / SENSITIVITY_FILE


def set_models(manifest: dict) -> list[ModelEntry]:
    """The set's own layers, in config order."""
    return [ModelEntry(m["spec"], m["weights"]) for m in manifest["config"]["models"]]


def check_extra(manifest: dict, extra: Sequence[ModelEntry]) -> None:
    """Refuse, before any work, an extra model listed twice, already in the set, or unable to take its images."""
    own = set_models(manifest)
    for entry in extra:
        if entry in own or list(extra).count(entry) > 1 or entry.model == L2_MODEL[0]:
            raise SensitivityError(f"--models {entry.spec}={entry.weights}: already a candidate of this "
                                   "set (its own layers and the l2 baseline are always included)")
    check_models(manifest, extra)


def extra_table(folder: str | Path, manifest: dict, extra: Sequence[ModelEntry], jobs: int = 1) -> dict[str, list]:
    """The sensitivity rows of models not in the set (and L2), computed now and not stored (``analyze --models``)."""
    check_extra(manifest, extra)
    data, entry = compute_table(folder, manifest, extra, jobs=jobs)
    return parse_table(data.decode("utf-8"), len(entry["alpha"]))


def parse_table(text: str, k: int) -> dict[str, list]:
    """The table's columns: text for names, floats for numbers (``n/a`` → NaN), bools for ``nonlinear``.

    Raises
    ------
    ValueError
        The header is not the table's for ``k`` amplitudes (the message lists both).
    """
    rows = list(csv.reader(io.StringIO(text)))
    header = columns(k)
    if not rows or rows[0] != header:
        raise ValueError(f"columns {rows[0] if rows else []} are not {header}")
    out: dict[str, list] = {c: [r[i] for r in rows[1:]] for i, c in enumerate(header)}
    for c in header[6:-1]:
        out[c] = [math.nan if v == "n/a" else float(v) for v in out[c]]
    out["nonlinear"] = [v == "true" for v in out["nonlinear"]]
    return out


def record_table(folder: Path, manifest: dict, candidates: Sequence[ModelEntry], runner: Callable | None = None,
                 jobs: int = 1) -> None:
    """Compute the table, write it atomically, then the manifest with its entry (the caller holds the lock)."""
    from .stimulus_set import write_manifest

    data, entry = compute_table(folder, manifest, candidates, runner, jobs)
    atomic_write_bytes(Path(folder) / SENSITIVITY_FILE, data)
    manifest["sensitivities"] = entry
    write_manifest(folder, manifest)


def table_problems(folder: str | Path, manifest: dict) -> list[str]:
    """Why the set's sensitivity table does not belong to its items (empty = it does, or there is none)."""
    entry = manifest.get("sensitivities")
    if entry is None:
        return []
    try:
        read_table(folder, manifest)
    except SensitivityError as exc:
        return [str(exc).removeprefix(f"{folder}/")]
    return []


def read_table(folder: str | Path, manifest: dict) -> dict[str, list]:
    """The set's sensitivity table as columns (floats for numbers, bools for ``nonlinear``), checked.

    Raises
    ------
    SensitivityError
        No table (and how to add one), or one that is not this set's: another ``set_id``, items changed
        since (naming the item), a changed file, a missing or extra row or column, a NaN or negative ``s``.
    """
    folder = Path(folder)
    entry = manifest.get("sensitivities")
    fix = f"run 'eigdist stimuli sensitivities {folder}'"
    if entry is None:
        raise SensitivityError(f"{folder}: the stimulus set has no sensitivity table (built before it existed); "
                               f"{fix} to add one (its set_id stays)")
    where = f"{folder}/{SENSITIVITY_FILE}"
    if entry.get("set_id") != manifest["set_id"]:
        raise SensitivityError(f"{where}: stale: computed for set {entry.get('set_id')!r}, not "
                               f"{manifest['set_id']!r}; {fix}")
    if entry.get("items_sha256") != items_digest(manifest):
        raise SensitivityError(f"{where}: stale: the set's items changed since it was computed; {fix}")
    path = folder / entry["file"]
    if not path.is_file():
        raise SensitivityError(f"{where}: missing, but manifest.json lists it; {fix}")
    if sha256_file(path) != entry["sha256"]:
        raise SensitivityError(f"{where}: sha256 differs from the manifest's: the table was changed after it was "
                               f"computed; {fix}")
    try:
        data = parse_table(path.read_text(encoding="utf-8"), len(entry["alpha"]))
    except ValueError as exc:
        raise SensitivityError(f"{where}: {exc}; {fix}") from None
    expected = {it["item_id"]: it["sha256"] for it in manifest["items"]}
    candidates = [(m["spec"].split(":", 1)[0], m["spec"].split(":", 1)[1], m["weights"]) for m in entry["models"]]
    seen = {}
    for i, item_id in enumerate(data["item_id"]):
        if item_id not in expected:
            raise SensitivityError(f"{where}: row {i + 2}: item {item_id!r} is not an item of this set; {fix}")
        if data["item_sha256"][i] != expected[item_id]:
            raise SensitivityError(f"{where}: row {i + 2}: item {item_id!r} has sha256 {expected[item_id][:12]}… in "
                                   f"the set but the table was computed for {data['item_sha256'][i][:12]}…; {fix}")
        seen.setdefault(item_id, set()).add((data["model"][i], data["layer"][i], data["weights"][i]))
    for item_id in expected:
        missing = [c for c in candidates if c not in seen.get(item_id, set())]
        if missing:
            raise SensitivityError(f"{where}: item {item_id!r} has no row for {':'.join(missing[0][:2])} "
                                   f"({missing[0][2]}); {fix}")
    out = data
    bad = [i for i, s in enumerate(out["s"]) if not (s >= 0)]
    if bad:
        i = bad[0]
        raise SensitivityError(f"{where}: row {i + 2}: s of item {out['item_id'][i]!r} under {out['model'][i]}:"
                               f"{out['layer'][i]} is {out['s'][i]!r}; s must be a number >= 0; {fix}")
    return out
