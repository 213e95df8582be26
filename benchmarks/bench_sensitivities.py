"""The sensitivity table against the synthesis it follows (issue 35: ≤ 10 % of a build of ``stimuli/study256.toml``).

A sample of the study set (``--sample-images`` at ``--size``, the rest of ``stimuli/study256.toml`` as it
is) is built once with this tree (``--jobs 1``; or ``--set DIR`` reuses a built one). Its synthesis
seconds are read from its ``build.log`` (the last group's "since start"). Then ``add_sensitivities``
recomputes the table on copies of the set, in fresh processes, with the ``--baseline`` tree (a folder,
or a commit checked out with ``git archive``) and with this one, in the order baseline, ours, ours,
baseline (``--repeats 1``: baseline, ours); each side's faster run is kept, and each run prints its
CPU seconds and its seconds per network. Both tables are compared:
the largest relative difference of s and of ρ, and the items whose ``nonlinear`` flag differs.

Run from the repository root (timings of a loaded machine: compare the ratios of one run)::

    python benchmarks/bench_sensitivities.py [--sample-images camera] [--size 256] [--set DIR]
        [--baseline REV_OR_FOLDER] [--repeats 1|2]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "stimuli" / "study256.toml"
#: The sensitivity table before issue 35 (one float64 pass per layer, item and amplitude).
BASELINE = "9a95676"
CHILD = """
import sys, time, json
import torch, torchvision  # imported before the clock starts, as in a build
from eigdist_core.sensitivities import add_sensitivities
networks = {}

def runner(fn, tasks):  # one network after the other, as a --jobs 1 build, each timed
    for task in tasks:
        t, c = time.perf_counter(), time.process_time()
        result = fn(task)
        networks[" ".join(c.spec for c in task.candidates)] = [time.perf_counter() - t, time.process_time() - c]
        yield task, result

t0, c0 = time.perf_counter(), time.process_time()
add_sensitivities(sys.argv[1], runner=runner)
print(json.dumps({"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "networks": networks}))
"""


def build_sample(args, tmp: Path) -> Path:
    """The sample of the study set, built with this tree (``--jobs 1``)."""
    text = re.sub(r"^images = .*$", f"images = {json.dumps(args.sample_images)}", STUDY.read_text(), flags=re.M)
    text = re.sub(r"^size = .*$", f"size = {args.size}", text, flags=re.M)
    (tmp / "sample.toml").write_text(text)
    subprocess.run([sys.executable, "-m", "eigdist", "stimuli", "build", str(tmp / "sample.toml"), "--out",
                    str(tmp / "set"), "--quiet", "--jobs", "1"], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return tmp / "set"


def synthesis_seconds(folder: Path) -> float:
    """Seconds from the build's start to its last group, from ``build.log``."""
    done = re.findall(r"\(([0-9.]+) s since start\)", (folder / "build.log").read_text())
    return float(done[-1])


def tree(rev: str) -> Path:
    """A folder as it is, or the files of commit ``rev`` (bench_study's cached ``git archive``)."""
    if Path(rev).is_dir():
        return Path(rev).resolve()
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_study import tree_at

    return tree_at(rev)


def timed_table(code: Path, folder: Path, out: Path) -> dict:
    """Seconds (wall, ``seconds``; CPU, ``cpu``; wall and CPU per network, ``networks``) of ``add_sensitivities`` by
    the eigdist of ``code`` on a copy of ``folder`` (kept as ``out``)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(folder, out)
    done = subprocess.run([sys.executable, "-c", CHILD, str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(code)}, cwd=out.parent)
    if done.returncode:
        raise RuntimeError(f"sensitivities with {code} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def differences(a: Path, b: Path) -> tuple[float, float, int]:
    """Largest relative difference of s, of the ρ columns, and the count of rows whose flag differs."""
    def rows(path):
        return {(r["item_id"], r["model"], r["layer"], r["weights"]): r for r in csv.DictReader(path.open())}

    ra, rb = rows(a), rows(b)
    worst_s = worst_rho = 0.0
    flags = 0
    for key, row in ra.items():
        other = rb[key]
        flags += row["nonlinear"] != other["nonlinear"]
        for col, x in row.items():
            if col != "s" and not col.startswith("rho") or x == "n/a" or other[col] == "n/a":
                continue
            x, y = float(x), float(other[col])
            diff = 0.0 if x == y else abs(x - y) / abs(x) if math.isfinite(x) and x else math.inf
            if col == "s":
                worst_s = max(worst_s, diff)
            else:
                worst_rho = max(worst_rho, diff)
    return worst_s, worst_rho, flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-images", nargs="+", default=["camera"], help="images of the study set built")
    parser.add_argument("--size", type=int, default=256, help="image size (64: a quick run)")
    parser.add_argument("--set", type=Path, help="a built sample to reuse instead of building one")
    parser.add_argument("--baseline", default=BASELINE, help=f"a folder or commit to compare with (default {BASELINE})")
    parser.add_argument("--repeats", type=int, default=2, choices=[1, 2], help="2 = baseline, ours, ours, baseline")
    args = parser.parse_args()
    trees = {"baseline": tree(args.baseline), "ours": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = args.set or build_sample(args, tmp)
        synthesis = synthesis_seconds(folder)
        manifest = json.loads((folder / "manifest.json").read_text())
        print(f"set {folder}: {len(manifest['images'])} image(s), {len(manifest['items'])} items, "
              f"{manifest['size']} px, synthesis {synthesis:.1f} s", flush=True)
        best: dict[str, float] = {}
        for side in ["baseline", "ours", "ours", "baseline"][: 2 * args.repeats]:
            times = timed_table(trees[side], folder, tmp / side)
            per_network = ", ".join(f"{name} {wall:.1f} (CPU {cpu:.1f})" for name, (wall, cpu) in times["networks"].items())
            print(f"  {side}: {times['seconds']:.1f} s (CPU {times['cpu']:.1f} s; per network, s: {per_network}; "
                  f"load {' '.join(f'{a:.1f}' for a in os.getloadavg())})", flush=True)
            best[side] = min(times["seconds"], best.get(side, math.inf))
        ds, drho, flags = differences(tmp / "baseline" / "sensitivities.csv", tmp / "ours" / "sensitivities.csv")
    base, ours = best["baseline"], best["ours"]
    print("| sample | synthesis s | sensitivities s, baseline | / synthesis | ours | / synthesis | speed-up | "
          "max rel. Δs | max rel. Δρ | flags changed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {' '.join(args.sample_images) if not args.set else args.set.name} {manifest['size']} px | "
          f"{synthesis:.1f} | {base:.1f} | {base / synthesis:.2f} | {ours:.1f} | {ours / synthesis:.2f} | "
          f"{base / ours:.2f} | {ds:.1e} | {drho:.1e} | {flags} |")
    print(f"issue 35 (sensitivities ≤ 0.10 of the synthesis): {'met' if ours / synthesis <= 0.10 else 'NOT met'}")


if __name__ == "__main__":
    main()
