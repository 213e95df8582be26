"""The models track inside a session (issue 36): time per choice, as the session records it.

A headless session (:func:`experiments.engine.run_headless`, no window) with ``track.kind = "models"`` on a
synthetic in-memory set of ``--images`` images × ``--layers`` layers × max/min/random items (seeded
log-normal sensitivities, σ = 1.5; 64 × 64 grey arrays), 30 α × 40 k × 3 lapses, ``--per-condition``
main trials per condition (a quarter on the common design), two images per session, ``stop_at = 1``
(no early stop: every planned trial runs). The observer sees through layer 1 (Weibull, slope 3.5, lapse
0.02). The choice time is the ``choice_ms`` column the engine writes on every chosen row (wall clock
around :meth:`ModelSession.choose`, before the trial's first frame); the script prints its median and
99th percentile per session, with the thread CPU time of the same calls (which leaves out preemption by
other processes on a loaded machine), and the most probable layer at the end. Run:
``python benchmarks/bench_model_session.py [--images 6] [--layers 8] [--per-condition 20] [--sessions 2]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

import numpy as np

from eigdist_core.psychometric_function import weibull
from eigdist_core.stimulus_set import SCHEMA_VERSION, seal
from experiments.config import load_config, parse_config
from experiments.datafile import read_trials, session_paths
from experiments.design import conditions
from experiments.engine import open_engine, run_headless
from experiments.model_session import choice_times
from experiments.model_track import make_grid
from experiments.observers import Response

SIZE = 64


class SyntheticSet:
    """``images`` × ``layers`` × 3 directions items, arrays made on demand (seeded by their id)."""

    def __init__(self, n_images: int, n_layers: int) -> None:
        images = [f"img{i}" for i in range(n_images)]
        self.layers = [f"l{m}" for m in range(n_layers)]
        items = [{"item_id": f"{im}__net__{la}__w__{d}0", "image_id": im, "model": "net", "layer": la,
                  "weights": "w", "direction": d, "eigenvalue": 1.0, "alpha_displayable_max": 0.8}
                 for im in images for la in self.layers for d in ("max", "min", "random")]
        self.manifest = seal({"schema_version": SCHEMA_VERSION, "alpha_max": 1.0,
                              "images": [{"image_id": im} for im in images], "items": items})
        self.set_id = self.manifest["set_id"]

    def image(self, image_id: str) -> np.ndarray:
        return np.full((1, SIZE, SIZE), 0.5, dtype=np.float32)

    def item(self, item_id: str) -> np.ndarray:
        v = np.random.default_rng(sum(map(ord, item_id))).standard_normal((1, SIZE, SIZE)).astype(np.float32)
        return v / np.linalg.norm(v)


class LayerObserver:
    """Answers through one layer of the grid: P(correct) = weibull(α √s(item), k, 3.5, ½, 0.02)."""

    observer = "layer-observer"

    def __init__(self, grid, layer: int) -> None:
        self.grid, self.layer = grid, layer
        self.k = 0.1 * np.exp(0.5 * np.mean(np.log(grid.s[:, layer])))  # its typical item at α = 0.1

    def respond(self, trial, stimuli, session):
        rng = np.random.default_rng([session, trial.trial])
        s = self.grid.s[self.grid.items.index(trial.condition.item_id), self.layer] if stimuli.alpha > 0 else 0.0
        p = float(weibull(stimuli.alpha * np.sqrt(s), self.k, 3.5, 0.5, 0.02))
        return Response(trial.target_interval if rng.random() < p else 3 - trial.target_interval)


def timed_cpu(models) -> list[float]:
    """Wrap ``models.choose`` to collect the thread CPU milliseconds of each call (the list it fills)."""
    cpu, choose = [], models.choose

    def timed(image_id: str):
        start = time.thread_time()
        out = choose(image_id)
        cpu.append((time.thread_time() - start) * 1e3)
        return out
    models.choose = timed
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--per-condition", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=2)
    args = parser.parse_args()
    source = SyntheticSet(args.images, args.layers)
    options = parse_config({"track": {"kind": "models", "models": {"stop_at": 1.0}}}).track_options
    config = replace(load_config(), track_kind="models", track_options=options, per_condition=args.per_condition,
                     images_per_session=2, practice=4)
    conds = conditions(source.manifest)
    s = np.exp(1.5 * np.random.default_rng(0).standard_normal((len(conds), args.layers)))
    grid = make_grid(s, [f"net:{la} (w)" for la in source.layers], [c.item_id for c in conds],
                     [c.alpha_ceiling for c in conds], n_alpha=options["n_alpha"], n_k=options["n_k"])
    print(f"{len(conds)} items × {args.layers} layers, {grid.cand_item.size} candidates × "
          f"{grid.table.shape[2]} (k, λ); observer through net:l1 (w)\n")
    print("| session | chosen trials | wall median ms | wall 99th percentile ms | CPU median ms | "
          "CPU 99th percentile ms | most probable layer (posterior) |")
    print("|---|---|---|---|---|---|---|")
    observer = LayerObserver(grid, 1)
    with tempfile.TemporaryDirectory() as data:
        for session in range(1, args.sessions + 1):
            engine = open_engine(source, config, data, "P01", session, observer=observer.observer,
                                 calibrated=False, grid=grid)
            cpu = timed_cpu(engine.models)
            with engine.writer:
                run_headless(engine, observer)
            rows = read_trials(session_paths(data, "P01", session).trials)
            times = choice_times(rows)
            print(f"| {session} | {len(times)} | {np.median(times):.2f} | {np.percentile(times, 99):.2f} | "
                  f"{np.median(cpu):.2f} | {np.percentile(cpu, 99):.2f} | "
                  f"{rows[-1]['map_layer']} ({rows[-1]['p_map']:.3f}) |")


if __name__ == "__main__":
    main()
