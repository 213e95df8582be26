"""Principal distortions: eigdist's subspace solver against the authors' plain gradient loop.

    python benchmarks/bench_principal.py [--sizes 64 128] [--steps 100] [--threads 2] [--budget S] [--max-iter N]

The reference (Feather, Lipshutz, Harvey, Williams & Simoncelli, ICLR 2025;
github.com/LabForComputationalVision/principal-distortions, MIT) is
re-implemented here from its ``utils.optimal_perturbations`` at the defaults of
its early-vision script: 100 steps, learning rate log-spaced 1e-1 → 1e-3,
``tensor_norm`` 0.1, ``perturb_clamp_scale`` 0.001, a random start. Each step
takes the update from 2M Fisher products (``torch.autograd.functional`` jvp
then vjp, a double-backward graph built per product) and re-evaluates the
objective after the step with 2M more. eigdist's :class:`PrincipalDistortion`
(iterative, its own stopping rule or ``--budget`` seconds) runs first, so that
the reference's progress lines can bound the time ratio while it runs. Before either is timed, one small
untimed solve by each path takes torch's once-per-process set-up out of both.
Both pairs are scored by one function: the variance across layers of
log aᵀF_m a − log bᵀF_m b with the plain (unregularised) F_m, through
eigdist's operators. Models: plenoptic's LN, LG, LGG and OnOff with published
parameters (eigdist's ``frontend:`` models); a grey crop of ``camera``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from eigdist_core import models
from eigdist_core.layer_contrasts import PrincipalDistortion
from eigdist_core.images import load_image
from eigdist_core.principal import objective

SPECS = ("frontend:ln", "frontend:lg", "frontend:lgg", "frontend:onoff")


class Counted:
    """The reference's Fisher product, F·v = Jᵀ(J v) by torch.autograd.functional, counted."""

    def __init__(self) -> None:
        self.products = 0

    def __call__(self, model, stimulus: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        self.products += 1
        jv = torch.autograd.functional.jvp(model, stimulus, vector)[1]
        return torch.autograd.functional.vjp(model, stimulus, jv)[1]


def reference(layers, image: torch.Tensor, steps: int, seed: int, ours: tuple[float, float]
              ) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """The authors' loop (update from 2M products, clamp, renormalise, objective from 2M more): a, b, products, s.

    Every 10 steps it prints its objective and seconds so far beside eigdist's
    (objective, seconds) ``ours``: the time ratio printed is an upper bound of
    the final one, so an interrupted run still says something.
    """
    fisher = Counted()
    lr = torch.logspace(-1, -3, steps)
    norm, clamp = 0.1, 0.001
    gen = torch.Generator().manual_seed(seed)
    a, b = (torch.randn(image.shape, generator=gen) for _ in range(2))
    a, b = norm * a / a.norm(), norm * b / b.norm()
    low, high = clamp * (0 - image), clamp * (1 - image)

    def terms(a, b):
        Fa = torch.stack([fisher(m, image, a) for m in layers])
        Fb = torch.stack([fisher(m, image, b) for m in layers])
        sa, sb = (Fa * a).flatten(1).sum(1), (Fb * b).flatten(1).sum(1)
        r = sa.log() - sb.log()
        return Fa / sa.view(-1, 1, 1, 1, 1), Fb / sb.view(-1, 1, 1, 1, 1), r - r.mean()

    t0 = time.perf_counter()
    for step in range(steps):
        ua, ub, c = terms(a, b)
        update_a = (c.view(-1, 1, 1, 1, 1) * (ua - ua.mean(0))).sum(0)
        update_b = -(c.view(-1, 1, 1, 1, 1) * (ub - ub.mean(0))).sum(0)
        size_a, size_b = update_a.norm(), update_b.norm()
        update_a, update_b = update_a.clamp(-1, 1), update_b.clamp(-1, 1)
        if (size_a + size_b) / 2 > norm:
            update_a, update_b = norm * update_a / size_a, norm * update_b / size_b
        a, b = a + lr[step] * update_a, b + lr[step] * update_b
        a, b = norm * a / a.norm(), norm * b / b.norm()
        a, b = a.clamp(low, high), b.clamp(low, high)
        c = terms(a, b)[2]  # the reference re-evaluates the objective after every step
        if (step + 1) % 10 == 0:
            elapsed = time.perf_counter() - t0
            print(f"  reference step {step + 1}: objective {float((c**2).mean()):.4g} (eigdist {ours[0]:.4g}), "
                  f"{elapsed:.0f} s (eigdist/reference ≤ {ours[1] / elapsed:.3f})", flush=True)
    return a.flatten(), b.flatten(), fisher.products, time.perf_counter() - t0


def score(pd: PrincipalDistortion, a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """V(a, b) with the plain F_m, as the reference scores, and with eigdist's regularised F_m + ε·λ_max·I.

    Through eigdist's operators (products not counted). The plain score of a
    pair that one layer cannot see at all is the logarithm of float32
    rounding; the regularised one is what eigdist maximises.
    """
    X = torch.stack([a / a.norm(), b / b.norm()]).to(torch.float32)
    s = np.array([[float(v @ (op @ v)) for v in X] for op in pd.operators])
    reg = pd.result.regularization
    shifts = np.array([reg["epsilon"] * lam for lam in reg["lambda_max"]])[:, None]
    return objective(s[:, 0], s[:, 1]), objective(*(s + shifts).T)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--steps", type=int, default=100, help="the reference's steps (its default 100)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, help="eigdist's time budget in seconds (default: none)")
    parser.add_argument("--max-iter", type=int, default=300, help="eigdist's iterations at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows and eigdist's objective traces to this file")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    torch.set_num_threads(args.threads)
    layers = [models.load(spec) for spec in SPECS]
    # Untimed: one small solve by each path, so that neither side's time holds torch's once-per-process set-up
    # (forward-mode autograd, thread pools; ≈ 0.2 s, paid once per build, not per image).
    small = load_image("camera", size=16, channels=1)[None]
    PrincipalDistortion(small, layers).synthesize(method="iterative", seed=args.seed, max_iter=1)
    reference(layers, small, 1, args.seed, (0.0, 0.0))
    rows, traces = [], {}
    for size in args.sizes:
        image = load_image("camera", size=size, channels=1)[None]
        t0, cpu = time.perf_counter(), time.process_time()
        ours = PrincipalDistortion(image, layers).synthesize(method="iterative", seed=args.seed,
                                                             max_iter=args.max_iter, time_budget=args.budget)
        our_seconds, cpu_ours = time.perf_counter() - t0, time.process_time() - cpu
        r = ours.result
        value, regularised = score(ours, *r.vectors)
        traces[size] = r.history
        print(f"{size} px: eigdist {value:.4g} (regularised {regularised:.4g}) in {our_seconds:.1f} s, {r.products} "
              f"products ({r.iterations} iterations, converged {r.converged}, residuals {r.residuals[0]:.2g} "
              f"{r.residuals[1]:.2g}); load {os.getloadavg()}", flush=True)
        cpu = time.process_time()
        a, b, products, seconds = reference(layers, image, args.steps, args.seed, (value, our_seconds))
        cpu_ref = time.process_time() - cpu
        ref_value, ref_regularised = score(ours, a, b)
        print(f"{size} px: reference {ref_value:.4g} (regularised {ref_regularised:.4g}) in {seconds:.1f} s; CPU "
              f"seconds (both threads) eigdist {cpu_ours:.0f}, reference {cpu_ref:.0f}; load {os.getloadavg()}",
              flush=True)
        rows.append((size, "reference", ref_value, ref_regularised, products, seconds))
        rows.append((size, "eigdist", value, regularised, r.products, our_seconds))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "traces": traces, "args": vars(args)}, f, indent=1)
    print("\n| image | solver | objective (plain F) | objective (regularised) | Fisher products | seconds "
          "| eigdist/reference: products, time |")
    print("|---|---|---|---|---|---|---|")
    for i, (size, name, value, regularised, products, seconds) in enumerate(rows):
        ref = rows[i - i % 2]
        ratio = "" if name == "reference" else f"{products / max(ref[4], 1):.2f}, {seconds / ref[5]:.3f}"
        print(f"| camera {size}×{size} grey | {name} | {value:.4g} | {regularised:.4g} | {products} "
              f"| {seconds:.1f} | {ratio} |")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
