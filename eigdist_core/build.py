"""Build a stimulus set: config → groups of items → synthesis → files, resumably.

Work is split into groups (:mod:`eigdist_core.build_plan`), one per (image,
network): a network (model layer with its weights) is loaded once per group and
one synthesis gives the group's max and min items; the random item reuses the
same Fisher operator. A contrast's groups are computed by
:mod:`eigdist_core.build_contrasts`.

Determinism: a group's result depends only on the group. Its seed is derived
from the config seed and the group's names, and torch runs with a fixed number
of threads while it is computed, so ``--jobs 1`` and ``--jobs 4`` write the
same bytes.

Resumability: each item file is written atomically, then the manifest (the
record of what is done, with every sha256) is rewritten atomically after each
group. A rerun keeps the manifest's ``created`` and skips items whose files
still have their recorded sha256, so a build killed at any moment and rerun
ends with the same files and the same manifest as one that was never stopped.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .build_contrasts import compute_contrast_group
from .build_inputs import BuildError, check_inputs
from .build_plan import Group, derive_seed, directions_of, plan
from .config import Contrast, SetConfig, image_id_of, load_config
from .contract import SENSITIVITY_FILE
from .device import THREADS, device_kind, torch_threads
from .errors import EigdistError, in_context
from .executors import run_tasks
from .io import atomic_write_bytes, check_output_folder, load_json, load_npy, save_npy, sha256_file
from .locks import hold
from .sensitivities import record_table, response_curve
from .sensitivity_values import as_float64
from .models.provenance import provenance
from .provenance import versions
from .stimulus_set import (
    MANIFEST,
    SCHEMA_VERSION,
    alpha_displayable,
    compute_build_id,
    write_manifest,
)
from .validate import validate_number, validate_sensitivity

#: Files at the top of a set folder that a build writes besides images/ and items/.
BUILD_FILES = (MANIFEST, "config.toml", "build.log", SENSITIVITY_FILE)
PREVIEW_FILES = ("eigenvalues.png", "response_curves.png")


@dataclass(frozen=True)
class Task:
    """What a worker needs to compute one group (picklable)."""

    folder: str
    config: SetConfig
    group: Group
    device: str = "cpu"  # "auto": the job's GPU when it has one


def compute_task(task: Task) -> list[dict]:
    """One group's item entries: a layer's (:func:`compute_group`) or a contrast's (:mod:`eigdist_core.build_contrasts`)."""
    return compute_contrast_group(task) if isinstance(task.group.source, Contrast) else compute_group(task)


def compute_group(task: Task) -> list[dict]:
    """Synthesize one group's items, write each item file atomically, return their manifest entries."""
    try:
        with torch_threads(THREADS):
            inputs = _load_group(task)
            vectors, degenerate = _directions(task.config, task.group.seed, inputs)
            model64 = as_float64(inputs.model)  # one float64 copy serves every item's response curve
            return [_write_item(task, inputs, model64, item_id, key, *vectors[key], degenerate)
                    for item_id, key in zip(task.group.item_ids, directions_of(task.config))]
    except EigdistError as exc:  # the model refused this image (non-finite response, detached input, …); a bug keeps its traceback
        raise in_context(exc, f"image {task.group.image_id!r}, model {task.group.source.spec} "
                              f"({task.group.source.weights})") from exc


@dataclass(frozen=True)
class _GroupInputs:
    """A group's device, its image (as stored, and as a 1 × C × H × W tensor on the device) and its model there."""

    device: str
    image_np: np.ndarray
    image: Any
    model: Any


def _load_group(task: Task) -> _GroupInputs:
    """Load the group's image and model onto the task's device (``auto``: the GPU when there is one)."""
    import torch

    from . import models

    device = "cuda" if task.device == "auto" and torch.cuda.is_available() else "cpu"
    image_np = load_npy(Path(task.folder) / "images" / f"{task.group.image_id}.npy")
    net = task.group.source
    return _GroupInputs(device, image_np, torch.from_numpy(image_np)[None].to(device),
                        models.load(net.spec, net.weights).to(device))


def _directions(cfg: SetConfig, seed: int, inputs: _GroupInputs) -> tuple[dict[tuple[str, int], tuple], bool]:
    """(vector, record: its manifest fields) of every direction by (direction, index); whether the bottom is degenerate."""
    wanted = directions_of(cfg)
    if any(d != "random" for d, _ in wanted):
        vectors, op, degenerate = _eigendistortions(cfg, seed, inputs)
    else:
        from .fisher import FisherOperator

        vectors, op = {}, FisherOperator(inputs.model, inputs.image)
        degenerate = op.m < op.n
    if ("random", 0) in wanted:
        vectors[("random", 0)] = _random_direction(op, seed, inputs)
    return vectors, degenerate


def _eigendistortions(cfg: SetConfig, seed: int, inputs: _GroupInputs) -> tuple[dict, Any, bool]:
    """The k max and k min eigendistortions with their records, the Fisher operator, and the bottom's degeneracy."""
    from .eigendistortion import Eigendistortion

    with warnings.catch_warnings():  # recorded per item (converged, residual, degenerate), or refused below
        warnings.filterwarnings("ignore", category=RuntimeWarning,
                                message=r".* (did not reach tol=|possibly degenerate|the Fisher matrix is 0)")
        eig = Eigendistortion(inputs.image, inputs.model).synthesize(
            method=cfg.solver, k=cfg.k, tol=cfg.tol, max_iter=cfg.max_iter, seed=seed,
            diagonal_probes=cfg.diagonal_probes,
        )
    validate_sensitivity(float(eig.eigenvalues[0]))  # a zero Fisher matrix gives no stimulus
    dist = eig.eigendistortions.detach()
    vectors = {}
    for j, diag in enumerate(eig.diagnostics["vectors"]):
        key = ("max", j) if j < cfg.k else ("min", j - cfg.k)
        vectors[key] = (dist[j], {
            "eigenvalue": float(eig.eigenvalues[j]), "rayleigh": diag["rayleigh"], "residual": diag["residual"],
            "converged": bool(diag["converged"]), "iterations": int(diag["iterations"]), "seed": seed,
        })
    return vectors, eig.operator, bool(eig.diagnostics["degenerate"])


def _random_direction(op: Any, seed: int, inputs: _GroupInputs) -> tuple:
    """The group's random unit direction (drawn on the CPU: the same vector on any device) and its record."""
    import torch

    seed = derive_seed(seed, "random")
    v = torch.randn(op.n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v = (v / v.norm()).to(dtype=op.dtype, device=inputs.device)
    rayleigh = float(v @ (op @ v))
    validate_sensitivity(rayleigh)  # vᵀFv = 0 for a random v only where F = 0
    return v.view(inputs.image.shape[1:]), {"eigenvalue": None, "rayleigh": rayleigh, "residual": None,
                                            "converged": True, "iterations": 0, "seed": seed}


def _write_item(task: Task, inputs: _GroupInputs, model64: Any, item_id: str, key: tuple[str, int], vector: Any,
                record: dict, degenerate: bool) -> dict:
    """Write one item's file (float32, atomically); return its manifest entry (``model64``: for the response curve)."""
    import torch

    net, cfg = task.group.source, task.config
    vec = vector.detach().cpu().numpy().astype(np.float32)
    file = f"items/{item_id}.npy"
    return {
        "item_id": item_id, "image_id": task.group.image_id, "model": net.model, "layer": net.layer,
        "weights": net.weights, "direction": key[0], "index": key[1], **record,
        "degenerate": degenerate, "device": device_kind(inputs.device),
        "alpha_displayable_max": alpha_displayable(inputs.image_np, vec),
        "response_curve": response_curve(model64, inputs.image, torch.from_numpy(vec).to(inputs.device),
                                            cfg.alpha_max, cfg.response_points),
        "file": file, "sha256": save_npy(Path(task.folder) / file, vec),
    }


def build_set(
    config_path: str | Path,
    out: str | Path | None = None,
    jobs: int = 1,
    force: bool = False,
    runner: Callable | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """Build (or finish) the set of ``config_path`` into ``out``; return the set's folder.

    Every check (config, output folder, models on the set's colour and size, memory, images)
    comes before the first write, under an exclusive lock on the folder.

    Raises
    ------
    EigdistError
        For any input problem, naming the config key or file; ``LockedError`` when another
        process builds this folder; ``FileExistsError`` for a folder of another set without ``force``.

    Parameters
    ----------
    config_path
        TOML config (see ``docs/stimuli.md``).
    out
        The set's folder; default ``<config's folder>/<name>``.
    jobs
        Local worker processes.
    force
        Build into a folder that holds another set or other files: after every check passed,
        remove only the files an earlier build listed in its manifest (never an input of this
        config) and refuse to overwrite a file no build listed.
    runner
        ``runner(fn, tasks)`` yielding (task, result) pairs; default the local pool
        with ``jobs`` workers (the SLURM executor plugs in here).
    device
        ``cpu``, or ``auto`` for the worker's GPU when it has one (GPU bytes
        differ from CPU bytes: a set is reproducible on one kind of device,
        which each item records as ``device``; see :mod:`eigdist_core.device`).
    progress
        Show a progress bar (items done/total, current item, ETA).
    """
    config_path = Path(config_path)
    validate_number("jobs", jobs, integer=True, low=1)
    config, base = load_config(config_path)
    folder = Path(out) if out is not None else base / config.name
    check_output_folder(folder, "--out")
    meta = {"config": config.as_dict(), "versions": versions(),
            "models": [provenance(m.spec, m.weights) for m in config.models]}
    build_id = compute_build_id(meta["config"], meta["versions"], meta["models"])
    # One build per folder at a time; the lock sits next to the folder, which --force may empty.
    where = folder.resolve()
    with hold(where.parent / f".{where.name}.lock", f"stimulus set {folder}"):
        old, remove = _claim_folder(folder, build_id, force, config, base, config_path)
        images = check_inputs(config, base, jobs if runner is None else 1)
        for path in remove:  # only now, every check passed: what an earlier build of this folder listed
            path.unlink()
        for sub in ("images", "items", "previews"):
            if (folder / sub).is_dir() and not any((folder / sub).iterdir()):
                (folder / sub).rmdir()
        return _build(config, config_path, folder, meta, build_id, old, images, jobs, runner, device, progress)


def _build(config: SetConfig, config_path: Path, folder: Path, meta: dict, build_id: str, old: dict | None,
           images: dict[str, np.ndarray], jobs: int, runner: Callable | None, device: str, progress: bool) -> Path:
    """Write the set (the folder is claimed and locked, every input checked); return the folder."""
    _remove_temporaries(folder)  # left by a kill inside atomic_write_bytes (we hold the folder's lock)
    groups = plan(config)
    order = [i for g in groups for i in g.item_ids]
    done = {e["item_id"]: e for e in (old or {}).get("items", [])
            if e["item_id"] in order and _intact(folder / e["file"], e["sha256"])}
    manifest = {
        "schema_version": SCHEMA_VERSION, "build_id": build_id, "name": config.name,
        "created": (old or {}).get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **meta, "channels": config.channels, "size": config.size,
        "value_range": list(config.value_range), "alpha_max": config.alpha_max,
        "complete": False, "images": [], "items": [],
    }

    def record(complete: bool) -> None:
        manifest["items"] = [done[i] for i in order if i in done]
        manifest["complete"] = complete
        write_manifest(folder, manifest)

    if old is None:  # a new folder gets its manifest first: stopped at any later point, it says
        record(False)  # which build it belongs to, so the same command resumes it
    if (folder / "config.toml").resolve() != config_path.resolve():
        atomic_write_bytes(folder / "config.toml", config_path.read_bytes())
    for source in config.images:
        image_id = image_id_of(source)
        file = f"images/{image_id}.npy"
        manifest["images"].append({"image_id": image_id, "source": source, "file": file,
                                   "sha256": save_npy(folder / file, images[image_id])})
    record(False)
    pending = [Task(str(folder), config, g, device) for g in groups if not all(i in done for i in g.item_ids)]
    log = _Log(folder / "build.log")
    log.write(f"build {config.name} ({build_id}): {len(order)} items, {len(order) - len(done)} to do, "
              f"{len(pending)} groups, jobs={jobs}")
    local = runner is None
    runner = runner or (lambda fn, tasks: run_tasks(fn, tasks, jobs))
    from tqdm import tqdm

    with tqdm(total=len(order), initial=len(done), unit="item", disable=not progress,
              desc=config.name, file=sys.stderr) as bar:
        start = time.perf_counter()
        running = [t.group for t in pending]  # in plan order: the first is being computed (jobs=1)
        if running:
            bar.set_postfix_str(running[0].label)
        results = runner(compute_task, pending)
        try:
            for task, entries in results:
                for e in entries:
                    done[e["item_id"]] = e
                record(False)
                g = task.group
                running.remove(g)
                bar.set_postfix_str(running[0].label if running else "", refresh=False)
                bar.update(len(entries))
                log.write(f"done {g.label}: {len(entries)} items "
                          f"({time.perf_counter() - start:.1f} s since start)")
        except BaseException:
            if local:  # Ctrl-C or an error: stop the local workers, then remove what a stopped one was writing
                getattr(results, "close", lambda: None)()
                _remove_temporaries(folder)
            raise  # (SLURM jobs may still be writing: their temporaries go when the next build starts)
    record(True)
    log.write(f"complete: {len(order)} items in {folder} (set {manifest['set_id']})")
    start = time.perf_counter()
    record_table(folder, manifest, list(config.models), runner, jobs)
    log.write(f"sensitivities: {len(order)} items × {len(config.models) + 1} models in "
              f"{time.perf_counter() - start:.1f} s ({SENSITIVITY_FILE})")
    for note in build_notes(manifest):
        log.write(note)
    return folder


def build_notes(manifest: dict) -> list[str]:
    """One line each on what a user must know of a finished set: items short of ``tol``, mixed device kinds."""
    items, notes = manifest["items"], []
    bad = [item for item in items if not item["converged"]]
    if bad:
        worst = max(item["residual"] for item in bad)
        max_iter = manifest["config"].get("max_iter")
        early = [item for item in bad if max_iter is not None and item.get("iterations", max_iter) < max_iter]
        advice = []
        if len(early) < len(bad):
            advice.append("raise max_iter to go further")
        if early:
            advice.append(f"{len(early)} stopped before max_iter, where more iterations would not help: "
                          f"a looser tol, or the exact solver for small images")
        notes.append(f"{len(bad)} of {len(items)} items did not reach tol={manifest['config']['tol']:g} "
                     f"(largest residual {worst:.2e}; each item's converged and residual are in manifest.json); "
                     + "; ".join(advice))
    kinds = Counter(item.get("device", "unrecorded") for item in items)
    if len(kinds) > 1:
        notes.append(f"items were computed on {len(kinds)} kinds of device ("
                     f"{', '.join(f'{kind}: {count}' for kind, count in sorted(kinds.items()))}): each kind rounds "
                     f"differently, so a rebuild on one kind will not give these bytes (item device in manifest.json)")
    return notes


def _stale_temps(folder: Path) -> list[Path]:
    """Temporary files of :func:`atomic_write_bytes` (``.<name>.<random>.tmp``) that a kill left in the set."""
    patterns = ((".", f".{MANIFEST}.*.tmp"), (".", ".config.toml.*.tmp"), (".", f".{SENSITIVITY_FILE}.*.tmp"),
                ("images", ".*.npy.*.tmp"), ("items", ".*.npy.*.tmp"), ("previews", ".*.png.*.tmp"))
    return [p for sub, pattern in patterns for p in (folder / sub).glob(pattern) if p.is_file()]


def _remove_temporaries(folder: Path) -> None:
    """Remove the temporaries of :func:`_stale_temps`; only while holding the folder's lock (none is live)."""
    for stale in _stale_temps(folder):
        stale.unlink(missing_ok=True)


def _claim_folder(folder: Path, build_id: str, force: bool, config: SetConfig, base: Path,
                  config_path: Path) -> tuple[dict | None, list[Path]]:
    """Check that ``folder`` may hold this build; return (the manifest of an earlier try of it, files to remove).

    Removes nothing itself. With ``force``, the files to remove are those an
    earlier eigdist build of the folder listed in its manifest (and its
    ``config.toml``, ``build.log`` and previews), never a file the new config
    reads; a file this build would write that no build listed is refused.
    """
    old = _earlier_manifest(folder)
    reads = _inputs(config, base, config_path)
    for path in sorted(reads):
        for sub in ("images", "items"):
            if (folder / sub).resolve() in path.parents:
                raise BuildError(
                    f"{path} is an input of this config but lies in {folder / sub}, which the build writes; "
                    f"move the inputs out of it or build with another --out"
                )
    if old is not None and old.get("build_id") == build_id:
        return old, []
    if old is not None:
        reason = (f"holds set {old.get('set_id')!r} ({old.get('name')!r}), built from another config "
                  "or other package versions")
    elif folder.is_dir() and set(folder.iterdir()) - set(_stale_temps(folder)):
        reason = "is not empty and holds no stimulus set"
    else:
        return None, []
    if not force:
        raise FileExistsError(
            f"{folder} {reason}: refusing to build set {build_id} into it; "
            "use --out for a new folder, or --force to replace the set's files"
        )
    ours = _listed_files(folder, old) if old is not None else set()
    for path in _outputs(folder, config):
        if path.exists() and path.resolve() not in ours:
            raise FileExistsError(
                f"{path} exists and no eigdist build of {folder} listed it: --force replaces only a set's own "
                "files; move it or use --out for a new folder"
            )
    return None, sorted(p for p in ours if p not in reads and p.is_file())


def _earlier_manifest(folder: Path) -> dict | None:
    """The manifest of an eigdist build in ``folder`` (any schema version), or None."""
    try:
        old = load_json(folder / MANIFEST)
    except (OSError, ValueError):
        return None
    return old if isinstance(old, dict) and "schema_version" in old else None


def _listed_files(folder: Path, manifest: dict) -> set[Path]:
    """The files of ``folder`` that the build of ``manifest`` wrote (resolved; only names a build can write)."""
    names = list(BUILD_FILES) + [f"previews/{name}" for name in PREVIEW_FILES]
    for key, sub in (("images", "images/"), ("items", "items/")):
        for entry in manifest.get(key) or []:
            file = entry.get("file") if isinstance(entry, dict) else None
            if isinstance(file, str) and file.startswith(sub) and "/" not in file[len(sub):] and file.endswith(".npy"):
                names.append(file)
                if key == "images":
                    names.append(f"previews/{Path(file).stem}.png")
    return {(folder / name).resolve() for name in names}


def _outputs(folder: Path, config: SetConfig) -> list[Path]:
    """Every file this build writes."""
    files = [folder / name for name in BUILD_FILES]
    files += [folder / "images" / f"{image_id_of(s)}.npy" for s in config.images]
    files += [folder / "items" / f"{i}.npy" for g in plan(config) for i in g.item_ids]
    return files


def _inputs(config: SetConfig, base: Path, config_path: Path) -> set[Path]:
    """Every file the config reads (resolved): itself, its image files and weight files."""
    from .images import BUILTIN_IMAGES

    paths = {config_path.resolve()}
    paths |= {(base / s).resolve() for s in config.images if s not in BUILTIN_IMAGES}
    for net in config.models:
        for candidate in (base / net.weights, Path(net.weights)):
            if candidate.is_file():
                paths.add(candidate.resolve())
    return paths


def _intact(file: Path, sha256: str) -> bool:
    return file.is_file() and sha256_file(file) == sha256


class _Log:
    """``build.log``: one timestamped line per event, appended (a log, not a result: no atomic rewrite)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, line: str) -> None:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {line}\n")
