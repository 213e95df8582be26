"""Build a stimulus set: config → groups of items → synthesis → files, resumably.

Work is split into groups, one per (image, network): a network (model layer
with its weights) is loaded once per group and one synthesis gives the group's
max and min items; the random item reuses the same Fisher operator.

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

import hashlib
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .config import ModelEntry, SetConfig, image_id_of, load_config
from .executors import run_tasks
from .errors import in_context
from .io import atomic_write_bytes, load_json, load_npy, save_npy, sha256_file
from .models.provenance import provenance
from .stimulus_set import (
    MANIFEST,
    SCHEMA_VERSION,
    alpha_displayable,
    compute_set_id,
    item_id_for,
    write_manifest,
)
from .validate import freeze

#: torch threads while a group is computed (results must not depend on the machine's core count).
THREADS = 1


@dataclass(frozen=True)
class Group:
    """One (image, network) pair of a set: its items come from one model load and one synthesis."""

    image_id: str
    network: ModelEntry
    item_ids: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class Task:
    """What a worker needs to compute one group (picklable)."""

    folder: str
    config: SetConfig
    group: Group
    device: str = "cpu"  # "auto": the job's GPU when it has one


def derive_seed(seed: int, *names: str) -> int:
    """A seed in [0, 2³¹) from the config seed and names (stable across machines and runs)."""
    text = "\x1f".join([str(seed), *names]).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "big") >> 1


def directions_of(config: SetConfig) -> list[tuple[str, int]]:
    """(direction, index) of each item of a group: k max, k min, one random."""
    out = []
    for direction in config.directions:
        count = 1 if direction == "random" else config.k
        out += [(direction, i) for i in range(count)]
    return out


def plan(config: SetConfig) -> list[Group]:
    """Every group of the set in a fixed order (images, then networks, as in the config)."""
    groups = []
    for source in config.images:
        image_id = image_id_of(source)
        for net in config.models:
            ids = tuple(item_id_for(image_id, net.model, net.layer, net.weights, d, i) for d, i in directions_of(config))
            groups.append(Group(image_id, net, ids, derive_seed(config.seed, image_id, net.spec, net.weights)))
    return groups


def versions() -> dict[str, str]:
    """The package versions a set's bytes depend on."""
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "eigdist": __version__}


def prepare_image(source: str, base: Path, config: SetConfig) -> np.ndarray:
    """Load, crop, resize, convert and compress one image into the set's value_range (float32 C×H×W)."""
    from .images import BUILTIN_IMAGES, load_image

    path = source if source in BUILTIN_IMAGES else base / source
    image = load_image(path, size=config.size, channels=config.channels).numpy().astype(np.float64)
    lo, hi = config.value_range
    return (lo + (hi - lo) * image).astype(np.float32)


def check_inputs(config: SetConfig, base: Path) -> dict[str, np.ndarray]:
    """Load every image and every network once, so a bad one fails before any work; return the images.

    Errors name the config key (``images[2]``, ``models[0].spec``).
    """
    from . import models

    images = {}
    for i, source in enumerate(config.images):
        try:
            images[image_id_of(source)] = prepare_image(source, base, config)
        except (ValueError, OSError) as exc:
            raise in_context(exc, f"images[{i}] ({source!r})") from exc
    for i, net in enumerate(config.models):
        try:
            models.load(net.spec, net.weights)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"models[{i}].weights ({net.weights!r}): {exc}") from None
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise ValueError(f"models[{i}] ({net.spec}, weights {net.weights}): {exc}") from None
    return images


def compute_group(task: Task) -> list[dict]:
    """Synthesize one group's items, write each item file atomically, return their manifest entries."""
    import torch

    from . import models
    from .eigendistortion import Eigendistortion
    from .fisher import FisherOperator

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        cfg, group, folder = task.config, task.group, Path(task.folder)
        net = group.network
        device = "cuda" if task.device == "auto" and torch.cuda.is_available() else "cpu"
        image_np = load_npy(folder / "images" / f"{group.image_id}.npy")
        image = torch.from_numpy(image_np)[None].to(device)
        model = models.load(net.spec, net.weights).to(device)
        wanted = directions_of(cfg)
        vectors: dict[tuple[str, int], dict] = {}
        if any(d != "random" for d, _ in wanted):
            eig = Eigendistortion(image, model).synthesize(
                method=cfg.solver, k=cfg.k, tol=cfg.tol, max_iter=cfg.max_iter, seed=group.seed
            )
            op, degenerate = eig.operator, bool(eig.diagnostics["degenerate"])
            dist = eig.eigendistortions.detach()
            for j, diag in enumerate(eig.diagnostics["vectors"]):
                key = ("max", j) if j < cfg.k else ("min", j - cfg.k)
                vectors[key] = {
                    "vector": dist[j], "eigenvalue": float(eig.eigenvalues[j]), "rayleigh": diag["rayleigh"],
                    "residual": diag["residual"], "converged": bool(diag["converged"]),
                    "iterations": int(diag["iterations"]), "seed": group.seed,
                }
        else:
            op = FisherOperator(model, image)
            degenerate = op.m < op.n
        if ("random", 0) in wanted:
            seed = derive_seed(group.seed, "random")
            gen = torch.Generator().manual_seed(seed)  # on the CPU: the same vector on any device
            v = torch.randn(op.n, generator=gen, dtype=torch.float64)
            v = (v / v.norm()).to(dtype=op.dtype, device=device)
            vectors[("random", 0)] = {
                "vector": v.view(image.shape[1:]), "eigenvalue": None, "rayleigh": float(v @ (op @ v)),
                "residual": None, "converged": True, "iterations": 0, "seed": seed,
            }
        entries = []
        for item_id, key in zip(group.item_ids, wanted):
            found = vectors[key]
            vec = found.pop("vector").detach().cpu().numpy().astype(np.float32)
            file = f"items/{item_id}.npy"
            entries.append({
                "item_id": item_id, "image_id": group.image_id, "model": net.model, "layer": net.layer,
                "weights": net.weights, "direction": key[0], "index": key[1], **found,
                "degenerate": degenerate, "alpha_displayable_max": alpha_displayable(image_np, vec),
                "response_curve": response_curve(model, image, torch.from_numpy(vec).to(device), cfg.alpha_max, cfg.response_points),
                "file": file, "sha256": save_npy(folder / file, vec),
            })
        return entries
    finally:
        torch.set_num_threads(threads)


def response_curve(model, image, direction, alpha_max: float, points: int) -> dict[str, list[float]]:
    """‖f(x + αe) − f(x)‖ at α = 0 and ``points − 1`` amplitudes spaced geometrically from alpha_max/1000 to alpha_max.

    Near α = 0 it grows as √λ·α (λ = eᵀFe); where it bends away, the Fisher
    (local) approximation stops describing the model. Computed in float64 on a
    copy of the model, so a direction with a tiny λ is not lost in float32 rounding.
    """
    import copy

    import torch

    alphas = [0.0] + [float(a) for a in np.geomspace(alpha_max * 1e-3, alpha_max, points - 1)]
    model64 = freeze(copy.deepcopy(model).double())  # a deep-copied GraphModule comes back in training mode
    x, e = image.double(), direction.double()[None]
    with torch.no_grad():
        base = model64(x)
        dist = [float((model64(x + a * e) - base).norm()) for a in alphas]
    return {"alpha": alphas, "distance": dist}


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

    Parameters
    ----------
    config_path
        TOML config (see ``docs/stimuli.md``).
    out
        The set's folder; default ``<config's folder>/<name>``.
    jobs
        Local worker processes.
    force
        Replace a set built from another config (or unknown files) in ``out``.
    runner
        ``runner(fn, tasks)`` yielding (task, result) pairs; default the local pool
        with ``jobs`` workers (the SLURM executor plugs in here).
    device
        ``cpu``, or ``auto`` for the worker's GPU when it has one (GPU bytes
        differ from CPU bytes: a set is reproducible on one kind of device).
    progress
        Show a progress bar (items done/total, current item, ETA).
    """
    config_path = Path(config_path)
    config, base = load_config(config_path)
    folder = Path(out) if out is not None else base / config.name
    meta = {"config": config.as_dict(), "versions": versions(),
            "models": [provenance(m.spec, m.weights) for m in config.models]}
    set_id = compute_set_id(meta["config"], meta["versions"], meta["models"])
    old = _claim_folder(folder, set_id, force)
    images = check_inputs(config, base)
    for stale in folder.glob("*/.*.tmp"):  # left by a kill inside atomic_write_bytes
        stale.unlink()
    atomic_write_bytes(folder / "config.toml", config_path.read_bytes())
    image_entries = []
    for source in config.images:
        image_id = image_id_of(source)
        file = f"images/{image_id}.npy"
        image_entries.append({"image_id": image_id, "source": source, "file": file,
                              "sha256": save_npy(folder / file, images[image_id])})
    groups = plan(config)
    order = [i for g in groups for i in g.item_ids]
    done = {e["item_id"]: e for e in (old or {}).get("items", [])
            if e["item_id"] in order and _intact(folder / e["file"], e["sha256"])}
    manifest = {
        "schema_version": SCHEMA_VERSION, "set_id": set_id, "name": config.name,
        "created": (old or {}).get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **meta, "channels": config.channels, "size": config.size,
        "value_range": list(config.value_range), "alpha_max": config.alpha_max,
        "complete": False, "images": image_entries, "items": [],
    }

    def record(complete: bool) -> None:
        manifest["items"] = [done[i] for i in order if i in done]
        manifest["complete"] = complete
        write_manifest(folder, manifest)

    record(False)
    pending = [Task(str(folder), config, g, device) for g in groups if not all(i in done for i in g.item_ids)]
    log = _Log(folder / "build.log")
    log.write(f"build {config.name} ({set_id}): {len(order)} items, {len(order) - len(done)} to do, "
              f"{len(pending)} groups, jobs={jobs}")
    runner = runner or (lambda fn, tasks: run_tasks(fn, tasks, jobs))
    from tqdm import tqdm

    with tqdm(total=len(order), initial=len(done), unit="item", disable=not progress,
              desc=config.name, file=sys.stderr) as bar:
        start = time.perf_counter()
        running = [t.group for t in pending]  # in plan order: the first is being computed (jobs=1)
        if running:
            bar.set_postfix_str(_label(running[0]))
        for task, entries in runner(compute_group, pending):
            for e in entries:
                done[e["item_id"]] = e
            record(False)
            g = task.group
            running.remove(g)
            bar.set_postfix_str(_label(running[0]) if running else "", refresh=False)
            bar.update(len(entries))
            log.write(f"done {g.image_id} {g.network.spec} {g.network.weights}: {len(entries)} items "
                      f"({time.perf_counter() - start:.1f} s since start)")
    record(True)
    log.write(f"complete: {len(order)} items in {folder}")
    return folder


def _label(group: Group) -> str:
    return f"{group.image_id} {group.network.spec}"


def _claim_folder(folder: Path, set_id: str, force: bool) -> dict | None:
    """Check that ``folder`` may hold this set; return the manifest of an earlier try of it, if any."""
    manifest = folder / MANIFEST
    old = None
    if manifest.is_file():
        try:
            old = load_json(manifest)
        except ValueError:
            old = {}
        if old.get("set_id") == set_id:
            return old
        reason = f"holds set {old.get('set_id')!r} ({old.get('name')!r}), built from another config or other package versions"
    elif folder.exists() and any(folder.iterdir()):
        reason = "is not empty and holds no stimulus set"
    else:
        return None
    if not force:
        raise FileExistsError(
            f"{folder} {reason}: refusing to build set {set_id} into it; "
            "use --out for a new folder, or --force to replace its contents"
        )
    for name in ("images", "items", "previews"):
        shutil.rmtree(folder / name, ignore_errors=True)
    for name in (MANIFEST, "config.toml", "build.log"):
        (folder / name).unlink(missing_ok=True)
    return None


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
