"""The bottom's Jacobi preconditioner: Fisher products and min Rayleigh quotient with and without it.

    python benchmarks/bench_preconditioner.py [--images camera coffee ...] [--models SPEC:WEIGHTS ...]
                                              [--size 128] [--probes 0 32] [--threads 1]

For every image × model: the top once (Lanczos), then the LOBPCG bottom from the same warm start with
each count of diagonal probes (0: unpreconditioned), tol 1e-4, k = 1. Products are deterministic, so
the table holds on a loaded machine; seconds do not. Prints one markdown row per item and a summary
per model (docs/solvers.md, "Measured").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

IMAGES = ["camera", "astronaut", "coffee", "chelsea", "rocket", "brick"]
MODELS = ["frontend:ln:published", "frontend:lg:published", "frontend:lgg:published", "frontend:onoff:published",
          "resnet18:maxpool:random:0", "resnet18:layer1:random:0", "resnet18:layer2:random:0",
          "resnet18:layer3:random:0"]


def bottoms(spec: str, weights: str, image, probes: list[int]) -> dict[int, tuple[int, float, float, bool]]:
    """(bottom products, min RQ, seconds, converged) for each probe count, all from one operator."""
    from eigdist_core import models
    from eigdist_core.fisher import FisherOperator
    from eigdist_core.solvers import IterativeSettings, solve_iterative

    op = FisherOperator(models.load(spec, weights), image)
    found = {}
    for p in probes:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an unconverged bottom is reported in the table
            settings = IterativeSettings("lanczos", "lobpcg", 1e-4, 5000, 0, diagonal_probes=p)
            d = solve_iterative(op, 1, settings).diagnostics[1]
        found[p] = (d.products, d.rayleigh, time.perf_counter() - t0, d.converged)
    return found


def main() -> None:
    import torch

    from bench_study import grey_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=IMAGES)
    parser.add_argument("--models", nargs="+", default=MODELS, help="spec:weights, e.g. resnet18:layer1:random:0")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--probes", nargs="+", type=int, default=[0, 32])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base, rest = args.probes[0], args.probes[1:]
    print(f"| model | image | bottom products, probes {' / '.join(map(str, args.probes))} | "
          f"min RQ | RQ / probes {base}'s | seconds (one run each) |")
    print("|---|---|---|---|---|---|")
    summary = defaultdict(list)
    for name in args.images:
        image = grey_image(name, args.size)
        for entry in args.models:
            family, layer, weights = entry.split(":", 2)
            found = bottoms(f"{family}:{layer}", weights, image, args.probes)
            ratios = [found[p][1] / found[base][1] for p in rest]
            flags = "" if all(f[3] for f in found.values()) else " (unconverged)"
            print(f"| {family}:{layer} | {name} | {' / '.join(str(found[p][0]) for p in args.probes)}{flags} | "
                  f"{' / '.join(f'{found[p][1]:.3g}' for p in args.probes)} | "
                  f"{' / '.join(f'{r:.2f}' for r in ratios)} | "
                  f"{' / '.join(f'{found[p][2]:.1f}' for p in args.probes)} |", flush=True)
            summary[f"{family}:{layer}"].append((found, ratios))
    print(f"\n| model | bottom products, probes {' / '.join(map(str, args.probes))} (all images) | "
          "median / largest RQ ratio |")
    print("|---|---|---|")
    for model, rows in summary.items():
        totals = [sum(found[p][0] for found, _ in rows) for p in args.probes]
        ratios = [r for _, rs in rows for r in rs]
        print(f"| {model} | {' / '.join(map(str, totals))} | {statistics.median(ratios):.2f} / {max(ratios):.2f} |")


if __name__ == "__main__":
    main()
