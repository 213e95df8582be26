"""``eigdist demo``: the whole pipeline on built-in defaults, offline.

Stages (each skips work already done, so an interrupted demo resumes where it stopped):

1. build the demo stimulus set (the built-in config ``demo``, or ``demo_quick`` with ``--quick``:
   package data in ``eigdist/configs/``) into ``<out>/stimuli/``;
2. write a SIMULATED monitor profile (exact gamma-2.2 readings, no photometer) into
   ``<out>/monitors/``;
3. run N model observers, all seeing through ``frontend:ln`` (published parameters), each through
   the real PsychoPy session (``eigdist run --simulate``) on a window that does not wait for frame
   sync, on a private Xvfb screen of the simulated monitor's size; finished sessions are skipped,
   interrupted ones resumed;
4. analyze the trial files into ``<out>/analysis/`` (ranking, figures, ``report.html``) and print
   the ranking: ``frontend:ln`` should come first (its min eigendistortion is a null
   direction of ln, invisible to these observers, while the other layers' min directions are not);
   then the model comparison (every layer scored on every trial, docs/analysis.md), beside it.

``--compare`` runs the quick demo on the built-in config ``demo_compare``: the same layers and observers,
plus contrast items (generalized eigendistortions of a layer pair, principal distortions), which the
previews, the sessions and the report show beside the layers' own items.

``--color`` runs the colour demo instead (the built-in configs ``demo_color`` and ``demo_color_quick``
with ``--quick``, in ``eigdist/configs/``): RGB photographs, observers seeing through ``efficientnet_lite0:_blocks.1``
(bundled weights), the same simulated monitor with per-gun curves (gammas 1.9, 2.2, 2.5).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from eigdist_core.errors import EigdistError

#: The model every demo observer sees through (one of the demo sets' models).
OBSERVER_MODEL, OBSERVER_WEIGHTS = "frontend:ln", "published"
#: The same for the colour demo (front-end models are grey-only), and its internal noise: its
#: representation distances are ~10⁴ times those of frontend:ln (≈ 3.7 per unit α along its max direction).
COLOR_OBSERVER_MODEL, COLOR_OBSERVER_WEIGHTS, COLOR_NOISE = "efficientnet_lite0:_blocks.1", "bundled", 0.1
#: Per-gun gammas and peak luminances (cd/m²) of the simulated monitor.
GUN_GAMMAS = {"r": (1.9, 30.0), "g": (2.2, 80.0), "b": (2.5, 10.0)}
MONITOR = "simulated"
SCREEN = (800, 600)
#: The session window: smaller than the screen (allowed), so software GL under Xvfb draws fewer pixels.
WINDOW = (256, 256)
#: Observer sessions run side by side (each a PsychoPy process on the same Xvfb screen).
SESSIONS_AT_ONCE = 2


@dataclass(frozen=True)
class DemoPlan:
    """What one demo run does: which set, how many observers and trials, how precise the analysis."""

    set_config: str  # a built-in config name (eigdist.configs)
    observers: int
    per_condition: int
    noise: float
    n_boot: int
    jobs: int = 2
    observer_model: str = OBSERVER_MODEL
    observer_weights: str = OBSERVER_WEIGHTS


def demo_plan(quick: bool, observers: int | None, color: bool = False, compare: bool = False) -> DemoPlan:
    """The full demo, or the ``--quick`` one (smaller set, fewer trials and observers); ``color``: the colour demo;
    ``compare``: the quick demo's settings on the set with contrast items."""
    from dataclasses import replace

    if observers is not None and observers < 1:
        raise EigdistError(f"--observers must be >= 1, got {observers}")
    if color and compare:
        raise EigdistError("--compare and --color are two demos: choose one")
    name = "demo_color" if color else "demo"
    if quick or compare:
        plan = DemoPlan("demo_compare" if compare else f"{name}_quick", observers or 2, per_condition=16, noise=0.0003,
                        n_boot=200, jobs=1)
    else:
        plan = DemoPlan(name, observers or 4, per_condition=24, noise=0.0003,
                        n_boot=1000)
    if color:
        plan = replace(plan, observer_model=COLOR_OBSERVER_MODEL, observer_weights=COLOR_OBSERVER_WEIGHTS,
                       noise=COLOR_NOISE)
    return plan


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="build, run simulated observers, analyze: the whole pipeline")
    p.add_argument("--out", help="the demo's folder (default out/demo, out/demo_color); rerun to resume")
    p.add_argument("--observers", type=int, help="simulated observers (default 4; 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="a smaller run (under 2 minutes)")
    p.add_argument("--compare", action="store_true",
                   help="the quick demo with stimuli made to tell layers apart (generalized eigendistortions, "
                        "principal distortions; default --out out/demo_compare)")
    p.add_argument("--color", action="store_true",
                   help="the colour demo: RGB photographs, EfficientNet-Lite0 observers, a per-gun simulated monitor "
                        "(default --out out/demo_color)")
    p.set_defaults(func=run)


def stage(text: str) -> None:
    """A progress line, flushed at once (the demo's stages take minutes)."""
    print(f"[demo {time.strftime('%H:%M:%S')}] {text}", flush=True)


def build_stimuli(plan: DemoPlan, out: Path) -> Path:
    """Build (or finish building) the demo set into ``<out>/stimuli/<name>``; return its folder."""
    from eigdist.configs import built_in_config
    from eigdist_core.build import build_notes, build_set
    from eigdist_core.io import load_json

    with built_in_config(plan.set_config) as path:
        folder = Path(build_set(path, out=out / "stimuli" / plan.set_config, jobs=plan.jobs, progress=True))
    for note in build_notes(load_json(folder / "manifest.json")):
        stage(f"    note: {note}")
    return folder


def simulated_monitor(folder: Path) -> str:
    """Write (once, or again when its calibration expired) the demo's simulated monitor profile.

    Grey readings from a gamma-2.2 curve and per-gun readings from gammas 1.9, 2.2, 2.5 (so the
    colour demo can use it too); nothing is measured.
    """
    import numpy as np

    from experiments.calibration import calibrated, fit_calibration
    from experiments.monitor import (
        ProfileError, check_calibrated, gamma_curve, load_profile, new_profile, save_profile,
    )

    try:
        if check_calibrated(load_profile(MONITOR, folder)).guns is not None:
            return MONITOR
    except (FileNotFoundError, ProfileError):
        pass
    levels = np.rint(np.linspace(0, 255, 17))
    readings = gamma_curve(levels / 255, 0.5, 120.0, 2.2)  # exact gamma 2.2, 0.5-120 cd/m²: no photometer
    guns = {g: (levels, gamma_curve(levels / 255, 0.2, peak, gamma)) for g, (gamma, peak) in GUN_GAMMAS.items()}
    note = ("SIMULATED display for `eigdist demo`: readings computed from gamma curves (grey 2.2; r, g, b 1.9, 2.2, "
            "2.5), not measured. Never use it for people.")
    base = new_profile(MONITOR, width_cm=30.0, distance_cm=57.0, resolution=SCREEN, refresh_hz=60.0, bits=8,
                       notes=note)
    save_profile(calibrated(base, fit_calibration(levels, readings, 8, curve="gamma", source=note, guns=guns)), folder)
    return MONITOR


def experiment_config(path: Path, per_condition: int, n_images: int) -> Path:
    """The demo's experiment: every image in one session, one frame per interval, no feedback."""
    path.write_text(
        "# eigdist demo: the default experiment (experiments/noticeability.toml) made short for simulated\n"
        "# observers: one frame per interval, every image in one session. Keys: docs/experiment.md.\n"
        "seed = 0\n[task]\nfeedback = false\n"
        "[timing]\nfixation_ms = 16\nreference_ms = 16\nisi_ms = 16\ntest_ms = 16\nfeedback_ms = 16\n"
        f"[trials]\nper_condition = {per_condition}\npractice = 2\nbreak_every = 1000\n"
        f"[schedule]\nimages_per_session = {n_images}\n", encoding="utf-8")
    return path


def observer_spec(i: int, noise: float, model: str = OBSERVER_MODEL, weights: str = OBSERVER_WEIGHTS) -> str:
    """The ``--simulate`` spec of demo observer ``i`` (its own seed)."""
    return f"model={model};weights={weights};noise={noise:g};seed={i}"


def run_observers(plan: DemoPlan, folder: Path, monitors: Path, config: Path, data: Path) -> None:
    """Run every observer's session (``SESSIONS_AT_ONCE`` at a time), skipping finished ones, resuming broken ones."""
    from tqdm import tqdm

    from eigdist_core.io import load_json
    from experiments.config import load_config
    from experiments.datafile import session_paths
    from experiments.design import plan_session

    manifest, exp = load_json(folder / "manifest.json"), load_config(config)
    todo = []
    for i in range(1, plan.observers + 1):
        participant = f"sim{i:02d}"
        trials = session_paths(data, participant, 1).trials
        total = len(plan_session(manifest, exp, participant, 1).trials)
        todo.append((participant, trials, total, observer_spec(i, plan.noise, plan.observer_model, plan.observer_weights)))
    remaining = [t for t in todo if _rows(t[1]) < t[2]]
    if not remaining:
        stage(f"sessions: all {len(todo)} finished already")
        return
    from experiments.psychopy_home import import_psychopy
    from experiments.xvfb import start_xvfb

    import_psychopy()  # PsychoPy's per-user files, once, before the sessions start at once

    # Always a private screen of the profile's size: the window checks (screen size = profile) pass, and
    # the demo never opens windows on a desktop. Without Xvfb, start_xvfb says how to install it.
    logs = data.parent / "logs"  # beside the BIDS dataset, not inside it
    logs.mkdir(exist_ok=True)
    with start_xvfb(*SCREEN) as display, tqdm(total=sum(t[2] for t in todo), unit="trial", desc="sessions") as bar:
        env = {**os.environ, "DISPLAY": display}
        running: list[tuple[subprocess.Popen, str]] = []
        queue = list(remaining)
        try:
            while queue or running:
                while queue and len(running) < SESSIONS_AT_ONCE:
                    participant, trials, _, spec = queue.pop(0)
                    args = [sys.executable, "-P", "-m", "eigdist", "run", "--stimuli", str(folder), "--monitor", MONITOR,
                            "--monitors", str(monitors), "--config", str(config), "--data", str(data),
                            "--participant", participant, "--simulate", spec, "--window", "x".join(map(str, WINDOW))]
                    log = (logs / f"{participant}.log").open("w")
                    running.append((subprocess.Popen(args + (["--resume"] if trials.exists() else []), env=env,
                                                     stdout=log, stderr=subprocess.STDOUT), participant))
                    log.close()
                time.sleep(0.5)
                bar.n = sum(min(_rows(t[1]), t[2]) for t in todo)
                bar.refresh()
                for proc, participant in list(running):
                    if proc.poll() is not None:
                        running.remove((proc, participant))
                        if proc.returncode != 0:
                            tail = (logs / f"{participant}.log").read_text(errors="replace")[-1500:]
                            raise EigdistError(f"session of {participant} failed (exit {proc.returncode}); rerun "
                                               f"the demo to resume. Its log ends:\n{tail}")
        finally:
            for proc, _ in running:  # on Ctrl-C or a failure: stop the others (their trials are saved)
                proc.terminate()
                proc.wait()


def _rows(path: Path) -> int:
    """Complete rows in a trial file (a torn last line does not count)."""
    return max(0, path.read_bytes().count(b"\n") - 1) if path.exists() else 0


def analyze_sessions(plan: DemoPlan, folder: Path, data: Path, out: Path) -> Path:
    """Fit, rank and write the report (cheap: always redone); return the report's path."""
    from analysis.exclusions import ExclusionRules
    from analysis.pipeline import AnalysisSettings, analyze

    # The easy-catch rule checks a person's attention; a model observer has none to lose, and a demo
    # session scores only a few easy catches, so the rule is off here.
    rules = ExclusionRules(observers="simulated", min_catch_accuracy=0.0)
    return analyze([data], out, AnalysisSettings(n_boot=plan.n_boot, stimuli=str(folder), exclusions=rules))


def print_ranking(analysis: Path, observer_model: str = OBSERVER_MODEL) -> None:
    """The ranking table, best first, with the observers' own model marked."""
    import pandas as pd

    ranking = pd.read_csv(analysis / "ranking.csv").sort_values("rank")
    print("\nranking (D = log10 T_min - log10 T_max; larger = the layer predicts the observers better):")
    for row in ranking.itertuples():
        own = "  <- the observers' own model" if f"{row.model}:{row.layer}" == observer_model else ""
        print(f"  {row.rank:>2}. {row.model}:{row.layer} ({row.weights})  D = {row.D:.2f} "
              f"[{row.ci_low:.2f}, {row.ci_high:.2f}]  P(best) = {row.p_best:.2f}{own}")


def print_comparison(analysis: Path, observer_model: str = OBSERVER_MODEL) -> None:
    """The model comparison (every layer on every trial), best first, beside the D ranking; the ceiling last."""
    import pandas as pd

    from analysis.comparison_tables import ceiling_note
    from eigdist_core.contract import MIXTURE, NOISE_CEILING

    if not (analysis / "comparison.csv").exists():
        print("\n(no model comparison: the stimulus set has no sensitivity table)")
        return
    table = pd.read_csv(analysis / "comparison.csv", keep_default_na=False, na_values=[""])
    print(f"\nmodel comparison (every layer judges every trial; bits per trial vs the L2 baseline, "
          f"cross-validated: {table['cv'].iloc[0]}):")
    for row in table.itertuples():
        if row.model in (NOISE_CEILING, MIXTURE[0]):  # scored, not ranked
            print(f"      {row.model}  {row.bits:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}]")
            continue
        own = "  <- the observers' own model" if f"{row.model}:{row.layer}" == observer_model else ""
        rank = f"{int(row.rank):>2}." if pd.notna(row.rank) else "  -"
        explainable = f"{row.explainable:.2f}" if pd.notna(row.explainable) else "n/a"
        print(f"  {rank} {row.model}:{row.layer} ({row.weights})  {row.bits:+.3f} [{row.ci_low:+.3f}, "
              f"{row.ci_high:+.3f}]  explainable {explainable}  P(best) = {row.p_best:.2f}{own}")
    note = ceiling_note(table)
    if note:
        print(f"  note: {note}")


def run(args: argparse.Namespace) -> int:
    from eigdist_core.io import check_output_folder, load_json

    start = time.perf_counter()
    plan = demo_plan(args.quick, args.observers, args.color, args.compare)
    out = Path(args.out or ("out/demo_color" if args.color else "out/demo_compare" if args.compare else "out/demo"))
    check_output_folder(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    stage(f"1/4 stimulus set {plan.set_config!r} (built-in config) -> {out / 'stimuli'}")
    folder = build_stimuli(plan, out)
    stage(f"2/4 SIMULATED monitor profile {MONITOR!r} (computed gammas: grey 2.2, r/g/b 1.9/2.2/2.5; not measured) "
          f"-> {out / 'monitors'}")
    monitors = out / "monitors"
    simulated_monitor(monitors)
    data = out / "data"
    data.mkdir(exist_ok=True)
    n_images = len(load_json(folder / "manifest.json")["images"])
    config = experiment_config(out / "experiment.toml", plan.per_condition, n_images)
    stage(f"3/4 {plan.observers} simulated observers, all seeing through {plan.observer_model} ({plan.observer_weights}), "
          f"noise {plan.noise:g}, through the PsychoPy session -> {data}")
    run_observers(plan, folder, monitors, config, data)
    stage(f"4/4 analysis -> {out / 'analysis'}")
    report = analyze_sessions(plan, folder, data, out / "analysis")
    print_ranking(report.parent, plan.observer_model)
    print_comparison(report.parent, plan.observer_model)
    print(f"\nreport: {report.resolve()}")
    stage(f"done in {time.perf_counter() - start:.0f} s")
    return 0
