"""``eigdist synth``: eigendistortions of one model layer at one image."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

DEFAULT_ALPHA = 3.0
#: Largest --size: one synthesis holds several image-sized float64 arrays and, for the exact
#: solver, a Jacobian of (outputs × size²) values; beyond this a laptop runs out of memory.
MAX_SIZE = 1024


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="max and min eigendistortions of one layer at one image")
    p.add_argument("--model", required=True, help="model spec <model>:<layer>, e.g. frontend:onoff, resnet18:layer2")
    p.add_argument(
        "--weights", default=None,
        help="imagenet | random:<seed> | published | bundled | FILE (default: published for frontend, "
        "bundled for efficientnet_lite0, imagenet for torchvision models)",
    )
    p.add_argument("--image", required=True, help="image file or built-in name (e.g. camera)")
    p.add_argument("--size", type=int, default=64, help="central square crop resized to N×N (default 64)")
    p.add_argument("--grey", action="store_true", help="convert the image to one grey channel (needed by frontend)")
    p.add_argument("--method", default="auto", help="auto | exact | lanczos | lobpcg | power")
    p.add_argument("--k", type=int, default=1, help="eigendistortions per end (default 1)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="amplitude shown in the figure")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from eigdist_core import models
    from eigdist_core.eigendistortion import Eigendistortion
    from eigdist_core.errors import in_context
    from eigdist_core.images import load_image
    from eigdist_core.io import check_output_folder
    from eigdist_core.plots import eigendistortion_figure, save_figure
    from eigdist_core.validate import ModelError, validate_number, validate_sensitivity

    validate_number("--alpha", args.alpha, low=0)
    validate_number("--size", args.size, integer=True, low=2, high=MAX_SIZE)
    validate_number("--k", args.k, integer=True, low=1)
    check_output_folder(args.out, "--out")
    weights = args.weights or models.default_weights(args.model)
    image = load_image(args.image, size=args.size, channels=1 if args.grey else None)
    model = models.load(args.model, weights=weights)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            eig = Eigendistortion(image[None], model).synthesize(method=args.method, k=args.k)
        validate_sensitivity(float(eig.eigenvalues[0]))  # F = 0: refused, with the model and the image
    except ModelError as exc:
        raise in_context(exc, f"--model {args.model} ({weights}) at --image {args.image} ({args.size} px)") from exc
    for w in caught:  # the solver's notes (short of tol, possibly degenerate) as one line each
        if issubclass(w.category, RuntimeWarning):
            print(f"eigdist synth: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    out = Path(args.out)
    eig.save(out)
    dist = eig.eigendistortions.detach().numpy()
    lam = eig.eigenvalues
    fig = eigendistortion_figure(
        image.numpy(), dist[0], dist[-1], args.alpha,
        title=f"{args.model} ({weights}), {args.image} {args.size}×{args.size}",
        eigenvalues=(float(lam[0]), float(lam[-1])),
    )
    save_figure(fig, out / "eigendistortions.png")
    print(json.dumps(eig.diagnostics, indent=2))
    print(f"wrote {out}/eigendistortions.png and the arrays in {out}")
    return 0
