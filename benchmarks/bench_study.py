"""Study-scale synthesis: the three goals (benchmarks/README.md) in one run, with ratios against a baseline commit.

1. Goal 1: resnet18 ``random:0`` layer2 and ``frontend:onoff`` on the 256×256 grey
   camera image (value range [0.2, 0.8], ``auto``, tol 1e-4, k = 1), this tree
   against ``--baseline`` (a commit, checked out with ``git archive``), each
   item in fresh processes in the order baseline, ours, ours, baseline; each
   side's faster run is kept. Met when ours takes ≤ 1/3 of the baseline's
   time, its max has |cos| ≥ 0.999 with the baseline's and its min Rayleigh
   quotient is at most 1.1 × the baseline's.
2. Goal 2: ``stimuli/study256.toml`` (6 images × 8 networks, max + min +
   random) by ``--jobs 2`` in ≤ 45 minutes, every item converged, peak memory
   ≤ 2 GB per worker. Estimated from a build of the set restricted to
   ``--sample-images`` (through the build's own code, one group at a time at
   the build's one thread, seconds and peak RSS of each group) scaled to all
   images and divided over the two workers; plenoptic's cost for the same set
   is extrapolated from its measured seconds per power iteration (a short run
   per network) to max_iter 400 at both ends. ``--build`` times the real build.
   ``--contrasts`` adds to the sample set a generalized pair (ln, lgg) and
   principal distortions of three layers (ln, lgg, onoff): their groups are
   timed like a network's, their objective and Fisher products printed.
3. Goal 3: resnet18 ``random:0`` at 128×128 grey, maxpool…layer3, on
   ``--goal3-images``: ours ≤ 1/5 of plenoptic's 400-iteration run for every
   layer, both unwrapped (:func:`bench_synthesis.alternate`: a warm-up run each,
   then plenoptic, ours, ours, plenoptic); products come from the warm-up runs
   (ours from its diagnostics, plenoptic from the instrumented counting run).

``--products`` adds the cost of one Fisher product by each path (resnet18 at 128 px: plenoptic's,
the recorded graph with torch's own derivative rules, with the input-only convolutions, with the
sub-pixel stem, and a vmapped block). ``--levers`` adds
the bottom-solver comparison behind the defaults (benchmarks/README.md, "History"): one top phase, then each bottom method and block size from the same warm start, products
to converge and the min Rayleigh quotient reached (deterministic, independent of the machine's load).

Run from the repository root (on a quiet machine: timings of a loaded one are
pessimistic and noisy; product counts do not depend on the load)::

    python benchmarks/bench_study.py [--goals 1 2 3] [--threads 2] [--baseline REV] [--build]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The solvers before the study-scale work (LOBPCG bottom with blocks of 4, direct 31×31 convolutions).
BASELINE = "f38d069"
GOAL1_ITEMS = [("resnet18:layer2", "random:0"), ("frontend:onoff", "published")]
GOAL3_LAYERS = ["maxpool", "layer1", "layer2", "layer3"]
STUDY = ROOT / "stimuli" / "study256.toml"
#: ``--contrasts``: what goal 2's sample set adds, the compare demo's kinds on the study's front-end layers.
CONTRASTS = """
[[contrasts]]
kind = "generalized"
models = ["frontend:ln", "frontend:lgg"]

[[contrasts]]
kind = "principal"
models = ["frontend:ln", "frontend:lgg", "frontend:onoff"]
"""


def grey_image(name: str, size: int):
    """A built-in image, grey, central crop resized to size × size, in the sets' value range [0.2, 0.8]."""
    from eigdist_core.images import load_image

    return 0.2 + 0.6 * load_image(name, size=size, channels=1)[None]


def task_name(task) -> tuple[str, str]:
    """(image, source) of a build task: a network's spec or a contrast's ``<kind>:<name>``; a task of the
    sensitivity table (the layers of one network, every image) is ``("all", "sensitivities <spec>+…")``."""
    if not hasattr(task, "group"):
        return "all", "sensitivities " + "+".join(c.spec for c in task.candidates)
    source = task.group.source
    return task.group.image_id, getattr(source, "spec", None) or f"{source.kind}:{source.name}"


def reset_peak() -> None:
    """Reset this process's RSS high-water mark (Linux ``clear_refs``)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


# ----- goal 1: one item in a fresh process of a given tree ------------------------------------

def tree_at(rev: str) -> Path:
    """The files of commit ``rev`` in a temporary folder (cached per commit)."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev], capture_output=True, text=True,
                            check=True).stdout.strip()
    folder = Path(tempfile.gettempdir()) / f"eigdist-bench-{commit[:12]}"
    if not (folder / "eigdist_core").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def run_item(tree: Path, spec: str, weights: str, size: int, threads: int, out: Path) -> dict:
    """Synthesize one item with the eigdist of ``tree`` in a fresh process; its figures (vectors in ``out``)."""
    cmd = [sys.executable, __file__, "--item-child", str(tree), spec, weights, str(size), str(threads), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    if done.returncode:
        raise RuntimeError(f"item child failed ({spec}, {tree}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def item_child(spec: str, weights: str, size: int, threads: int, out: str) -> None:
    """In the child: warm up (model load, one forward), then time one ``auto`` synthesis; print JSON."""
    import warnings

    import numpy as np
    import torch

    from eigdist_core import models
    from eigdist_core.eigendistortion import Eigendistortion

    torch.set_num_threads(threads)
    image, model = grey_image("camera", size), models.load(spec, weights)
    model(image)
    reset_peak()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # converged flags are reported
        eig = Eigendistortion(image, model).synthesize(method="auto", k=1, tol=1e-4)
    seconds = time.perf_counter() - t0
    d = eig.result.diagnostics
    np.save(out, eig.result.eigenvectors.double().numpy())
    print(json.dumps({
        "seconds": seconds, "products": [d[0].products, d[1].products], "top": d[0].rayleigh,
        "bottom": d[1].rayleigh, "converged": [d[0].converged, d[1].converged], "peak_mb": peak_mb(),
        "method": eig.result.method,
    }))


def goal1(args) -> list[str]:
    import numpy as np

    trees = {"baseline": tree_at(args.baseline), "ours": ROOT}
    order = ["baseline", "ours", "ours", "baseline"][: 2 * args.repeats]
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec, weights in GOAL1_ITEMS:
            runs: dict[str, dict] = {}
            for side in order:
                got = run_item(trees[side], spec, weights, args.size, args.threads, Path(tmp) / f"{side}.npy")
                print(f"  {spec} {side}: {got['seconds']:.1f} s", flush=True)
                if side not in runs or got["seconds"] < runs[side]["seconds"]:
                    runs[side] = got
            vec = {side: np.load(Path(tmp) / f"{side}.npy") for side in runs}
            base, ours = runs["baseline"], runs["ours"]
            cos = abs(float(vec["ours"][0] @ vec["baseline"][0]))
            ratio, rq = ours["seconds"] / base["seconds"], ours["bottom"] / base["bottom"]
            for side, r in runs.items():
                lines.append(f"| {spec} {args.size} | {side} ({r['method']}) | {r['seconds']:.1f} | {r['products'][0]} / "
                             f"{r['products'][1]} | {r['top']:.4g} | {r['bottom']:.4g} | {r['converged']} | {r['peak_mb']:.0f} |")
            lines.append(f"goal 1 {spec}: time {ratio:.2f} of baseline (≤ 0.33), top |cos| {cos:.4f} (≥ 0.999), "
                         f"min RQ {rq:.3f} of baseline (≤ 1.1): {'met' if ratio <= 1 / 3 and cos >= 0.999 and rq <= 1.1 else 'NOT met'}")
    return ["| item | tree | seconds | products top / bottom | max RQ | min RQ | converged | peak MB |",
            "|---|---|---|---|---|---|---|---|", *lines]


# ----- goal 2: the study set -----------------------------------------------------------------

def goal2(args) -> list[str]:
    import torch

    from bench_synthesis import plenoptic_power
    from eigdist_core import models
    from eigdist_core.build import build_set
    from eigdist_core.config import load_config

    config, _ = load_config(STUDY)
    per_group: list[tuple[str, str, float, float]] = []

    def timed(fn, tasks):
        for task in tasks:
            reset_peak()
            t0 = time.perf_counter()
            result = fn(task)
            per_group.append((*task_name(task), time.perf_counter() - t0, peak_mb()))
            print(f"  {per_group[-1][0]} {per_group[-1][1]}: {per_group[-1][2]:.1f} s, "
                  f"{per_group[-1][3]:.0f} MB", flush=True)
            yield task, result

    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.toml"
        text = re.sub(r"^images = .*$", f"images = {json.dumps(args.sample_images)}", STUDY.read_text(), flags=re.M)
        text = re.sub(r"^size = .*$", f"size = {args.size}", text, flags=re.M)
        sample.write_text(text + (CONTRASTS if args.contrasts else ""))
        folder = build_set(sample, out=Path(tmp) / "set", runner=timed, progress=False)
        manifest = json.loads((folder / "manifest.json").read_text())
    unconverged = [i["item_id"] for i in manifest["items"] if not i["converged"]]
    contrasts = [c for i in manifest["items"] if "contrast" in i and i["direction"] == "principal_a"
                 for c in [i["contrast"]]]
    scale = len(config.images) / len(args.sample_images)
    total = sum(s for _, _, s, _ in per_group) * scale
    peak = max(m for _, _, _, m in per_group)
    lines = [f"| {spec} | {img} | {s:.1f} | {m:.0f} |" for img, spec, s, m in per_group]
    torch.set_num_threads(1)
    plenoptic = 0.0
    for net in config.models:
        model, image = models.load(net.spec, net.weights), grey_image(args.sample_images[0], args.size)
        t0 = time.perf_counter()
        plenoptic_power(model, image, args.plenoptic_iters)  # top and bottom: 2 × iters iterations
        per_iteration = (time.perf_counter() - t0) / (2 * args.plenoptic_iters)
        plenoptic += per_iteration * 2 * args.plenoptic_max_iter * len(config.images)
        print(f"  plenoptic {net.spec}: {per_iteration:.2f} s per power iteration", flush=True)
    estimate = total / 2 / 60
    with_contrasts = " + the contrasts of --contrasts" if args.contrasts else ""
    return [
        "| network | image | seconds (1 thread) | peak MB |", "|---|---|---|---|", *lines,
        *(f"principal distortions ({', '.join(m['spec'] for m in c['models'])}): objective {c['objective']:.4g}, "
          f"{c['products']} Fisher products" for c in contrasts),
        f"goal 2: {len(per_group)} groups measured, estimated build of {len(config.images)} images × "
        f"{len(config.models)} networks{with_contrasts} with --jobs 2: {estimate:.1f} min (≤ 45), peak {peak:.0f} MB per worker "
        f"(≤ 2048), unconverged items in the sample: {unconverged or 'none'}: "
        f"{'met' if estimate <= 45 and peak <= 2048 and not unconverged else 'NOT met'} (estimate)",
        f"goal 2: plenoptic power, max_iter {args.plenoptic_max_iter} at both ends, same set, --jobs 2: ≈ {plenoptic / 2 / 60:.0f} min "
        f"(extrapolated from {args.plenoptic_iters} iterations per end per network; its min does not converge)",
    ]


def build_time(args) -> str:
    """The real ``--jobs 2`` build of the study set: minutes, unconverged items, peak RSS of any one process.

    The peak is this process's children's high-water mark: run ``--goals --build`` alone for the build's own.
    """
    import resource

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "eigdist", "stimuli", "build", str(STUDY), "--jobs", "2",
                        "--out", str(Path(tmp) / "set"), "--quiet"], check=True, cwd=ROOT)
        minutes = (time.perf_counter() - t0) / 60
        manifest = json.loads((Path(tmp) / "set" / "manifest.json").read_text())
    # Linux: the largest RSS of any waited-for descendant (the build's workers are reaped by the build)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    unconverged = [i["item_id"] for i in manifest["items"] if not i["converged"]]
    met = minutes <= 45 and peak <= 2048 and not unconverged
    return (f"goal 2 (real build): {minutes:.1f} min with --jobs 2 (≤ 45), peak {peak:.0f} MB in one process "
            f"(≤ 2048), unconverged: {unconverged or 'none'}: {'met' if met else 'NOT met'}")


# ----- goal 3: fair timing against plenoptic -----------------------------------------------------

def goal3(args) -> list[str]:
    import warnings

    import torch

    from bench_synthesis import alternate, plenoptic_power, run_ours, run_plenoptic
    from eigdist_core import models

    torch.set_num_threads(args.threads)
    lines, met = [], True
    for name in args.goal3_images:
        image = grey_image(name, 128)
        for layer in GOAL3_LAYERS:
            model = models.load(f"resnet18:{layer}", "random:0")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                counted = run_plenoptic(model, image, args.plenoptic_max_iter)  # the warm-up; counts its products
                ours = run_ours(model, image)
                theirs_s, ours_s = alternate(
                    lambda: plenoptic_power(model, image, args.plenoptic_max_iter), lambda: run_ours(model, image))
            d = ours["eig"].result.diagnostics
            ratio = ours_s / theirs_s
            met &= ratio <= 0.2
            lines.append(f"| resnet18:{layer} | {name} | {theirs_s:.1f} | {counted['products']} | {ours_s:.1f} | "
                         f"{d[0].products + d[1].products} | {ratio:.2f} |")
            print(lines[-1], flush=True)
    return ["| layer | image | plenoptic s | plenoptic products | ours s | ours products | ours/plenoptic |",
            "|---|---|---|---|---|---|---|", *lines,
            f"goal 3: ours ≤ 0.2 of plenoptic for every layer and image: {'met' if met else 'NOT met'}"]


# ----- the product: cost per Fisher product of each path ------------------------------------------

def product_costs(args) -> list[str]:
    """Milliseconds per Fisher product on resnet18 ``random:0`` at 128 px, each path, medians of A/B rounds."""
    import statistics

    import plenoptic._synthesize.eigendistortion as plenoptic_module
    import torch

    from eigdist_core import fisher, input_only_conv, models

    torch.set_num_threads(args.threads)
    image, lines = grey_image("camera", 128), []

    def ms(fn, reps: int = 10) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps * 1000

    def stem_rule(channels: int):  # the sub-pixel stem on (4) or off (0) while a product runs
        def product(op, V):
            input_only_conv.STEM_CHANNELS = channels
            try:
                return op @ V
            finally:
                input_only_conv.STEM_CHANNELS = stem
        return product

    stem = input_only_conv.STEM_CHANNELS
    for layer in GOAL3_LAYERS:
        model = models.load(f"resnet18:{layer}", "random:0")
        op = fisher.FisherOperator(model, image)
        torch_rules = fisher.FisherOperator(model, image)
        torch_rules._graph = fisher._Graph(op._f, op._x)  # the graph recorded without the input-only convolutions
        torch_rules._graph.prepare_jvp()
        gen = torch.Generator().manual_seed(0)
        one, four = torch.randn(1, op.n, generator=gen), torch.randn(4, op.n, generator=gen)
        x = image.detach().clone().reshape(-1, 1).requires_grad_(True)  # plenoptic's column layout
        y = model(x.view(image.shape)).reshape(-1, 1)
        dummy = torch.ones_like(y, requires_grad=True)
        paths = {
            "plenoptic (double-vjp per product)": lambda: plenoptic_module._fisher_info_matrix_vector_product(
                y, x, one.T, dummy),
            "recorded graph, torch's derivative rules": lambda: torch_rules @ one,
            "+ input-only convolutions": lambda: stem_rule(0)(op, one),
            "+ sub-pixel stem (now)": lambda: stem_rule(stem)(op, one),
            "vmapped block of 4, per vector (larger blocks)": lambda: op.vjp(op._vmapped_jvp(four)),
        }
        times = {label: [] for label in paths}
        for _ in range(3):  # rounds: each path once per round, the median kept
            for label, fn in paths.items():
                times[label].append(ms(fn) / (4 if "block of 4" in label else 1))
        medians = {label: statistics.median(t) for label, t in times.items()}
        base = medians["plenoptic (double-vjp per product)"]
        for label, value in medians.items():
            lines.append(f"| resnet18:{layer} | {label} | {value:.2f} | {value / base:.2f} |")
            print(lines[-1], flush=True)
    return ["| layer (128 px) | product path | ms per vector | / plenoptic |", "|---|---|---|---|", *lines]


def prefix_starts(args) -> list[str]:
    """resnet18 maxpool…layer3 at 128 px, each item alone and each started from the previous layer's min."""
    import torch

    from bench_synthesis import run_ours
    from eigdist_core import models

    torch.set_num_threads(args.threads)
    lines = []
    for name in args.goal3_images:
        image, previous, chain = grey_image(name, 128), None, 0.0
        for layer in GOAL3_LAYERS:
            model = models.load(f"resnet18:{layer}", "random:0")
            run_ours(model, image)  # warm-up
            alone = run_ours(model, image)
            started = run_ours(model, image, bottom_start=previous) if previous is not None else alone
            chain += started["seconds"]
            previous = started["eig"].eigendistortions[-1]
            cells = []
            for run in (alone, started):
                d = run["eig"].result.diagnostics
                cells.append(f"{run['seconds']:.1f} | {d[0].products} + {d[1].products} | {d[1].rayleigh:.4g}")
            lines.append(f"| resnet18:{layer} | {name} | {' | '.join(cells)} | {chain:.1f} |")
            print(lines[-1], flush=True)
    return ["| layer (128 px) | image | alone: s | products top + bottom | min RQ | started from the previous layer's "
            "min: s | products | min RQ | the chain so far, s |", "|---|---|---|---|---|---|---|---|---|", *lines]


# ----- levers: bottom methods from one top phase ----------------------------------------------

#: (label, method, block) of the bottom solvers compared by ``--levers``.
BOTTOMS = [("LOBPCG b=4 (before)", "lobpcg", 4), ("LOBPCG b=1 (default)", "lobpcg", 1), ("LOBPCG b=8", "lobpcg", 8),
           ("Lanczos b=1", "lanczos", 1), ("Chebyshev deg 8, b=1", "chebyshev", 1),
           ("Chebyshev deg 8, b=4", "chebyshev", 4)]


def levers(args) -> list[str]:
    import torch

    from eigdist_core import models
    from eigdist_core.block_iteration import F64, Trace, iterate
    from eigdist_core.chebyshev import filtered_bottom
    from eigdist_core.fisher import FisherOperator
    from eigdist_core.nullspace import seeded_block

    torch.set_num_threads(args.threads)
    lines = []
    for spec, weights in GOAL1_ITEMS:
        op = FisherOperator(models.load(spec, weights), grey_image("camera", args.levers_size))
        common = dict(tol=1e-4, max_iter=100_000, deadline=float("inf"), trace=Trace(op, time.perf_counter()))
        top = iterate(op, start=(seeded_block(op.n, 4, 0, F64, op.device), None), k=1, block=4, largest=True,
                      mode="lanczos", lam_max=None, max_basis=72, desc="top", **common)
        lam_max = float(top.rayleigh()[0])
        for label, method, block in BOTTOMS:
            p0, t0 = op.products, time.perf_counter()
            if method == "chebyshev":
                lo = filtered_bottom(op, start=top.subspace, k=1, block=block, lam_max=lam_max, **common)
            else:
                lo = iterate(op, start=top.subspace, k=1, block=block, largest=False, mode=method, lam_max=lam_max,
                             max_basis=12 * block + 24, desc=label, **common)
            lines.append(f"| {spec} {args.levers_size} | {label} | {op.products - p0} | {float(lo.rayleigh()[0]):.4g} | "
                         f"{time.perf_counter() - t0:.1f} |")
            print(lines[-1], flush=True)
    return ["| item | bottom | products to tol 1e-4 | min RQ | seconds |", "|---|---|---|---|---|", *lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", nargs="*", type=int, default=[1, 2, 3], choices=[1, 2, 3],
                        help="goals to measure (none: only the tables asked for by --levers / --products)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for goals 1 and 3 (the build uses 1 per worker)")
    parser.add_argument("--baseline", default=BASELINE, help=f"commit to compare with in goal 1 (default {BASELINE})")
    parser.add_argument("--repeats", type=int, default=2, choices=[1, 2], help="goal 1: 2 = baseline, ours, ours, baseline")
    parser.add_argument("--sample-images", nargs="+", default=["camera"], help="goal 2: images actually built")
    parser.add_argument("--plenoptic-iters", type=int, default=5, help="goal 2: plenoptic iterations per end measured")
    parser.add_argument("--goal3-images", nargs="+", default=["camera", "coffee"])
    parser.add_argument("--size", type=int, default=256, help="goals 1 and 2: image size (smaller for a smoke run)")
    parser.add_argument("--plenoptic-max-iter", type=int, default=400, help="plenoptic's max_iter (goals 2 and 3)")
    parser.add_argument("--contrasts", action="store_true",
                        help="goal 2: the sample set also has a generalized (ln, lgg) and a principal (ln, lgg, onoff) "
                             "contrast")
    parser.add_argument("--build", action="store_true", help="goal 2: also time the real build (about 45 minutes)")
    parser.add_argument("--levers", action="store_true", help="also compare bottom solvers (products to converge)")
    parser.add_argument("--levers-size", type=int, default=128, help="image size of the lever comparison")
    parser.add_argument("--products", action="store_true", help="also time one Fisher product by each path")
    parser.add_argument("--prefix-starts", action="store_true",
                        help="also run resnet18 maxpool…layer3 each started from the previous layer's min (--goal3-images)")
    parser.add_argument("--item-child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.item_child:
        tree, spec, weights, size, threads, out = args.item_child
        sys.path.insert(0, tree)
        item_child(spec, weights, int(size), int(threads), out)
        return
    sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]
    import torch

    print(f"torch {torch.__version__}, threads {args.threads}, baseline {args.baseline}", flush=True)
    report = []
    for goal, fn in ((1, goal1), (2, goal2), (3, goal3)):
        if goal in args.goals:
            report += [""] + fn(args)
    if args.levers:
        report += [""] + levers(args)
    if args.products:
        report += [""] + product_costs(args)
    if args.prefix_starts:
        report += [""] + prefix_starts(args)
    if args.build:
        report.append(build_time(args))
    print("\n".join(report))


if __name__ == "__main__":
    main()
