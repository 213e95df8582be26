"""``eigdist synth``: eigendistortions of one model layer at one image, or the distortions that tell layers apart.

``--kind eigen`` (default): max and min eigendistortions of one ``--model``.
``--kind generalized``: generalized eigendistortions of exactly two models, A then B.
``--kind principal``: principal distortions of two or more models.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

DEFAULT_ALPHA = 3.0
KINDS = ("eigen", "generalized", "principal")
#: Largest --size: one synthesis holds several image-sized float64 arrays and, for the exact
#: solver, a Jacobian of (outputs × size²) values; beyond this a laptop runs out of memory.
MAX_SIZE = 1024


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="max and min eigendistortions of one layer at one image (or of layers compared)")
    p.add_argument("--kind", default="eigen", choices=KINDS,
                   help="eigen (one --model, default) | generalized (two: A then B) | principal (two or more)")
    p.add_argument("--model", required=True, action="append",
                   help="model spec <model>:<layer>, e.g. frontend:onoff, resnet18:layer2; repeat for "
                   "--kind generalized and principal")
    p.add_argument(
        "--weights", default=None,
        help="imagenet | random:<seed> | published | bundled | FILE (default: published for frontend, "
        "bundled for efficientnet_lite0, imagenet for torchvision models)",
    )
    p.add_argument("--image", required=True, help="image file or built-in name (e.g. camera)")
    p.add_argument("--size", type=int, default=64, help="central square crop resized to N×N (default 64)")
    p.add_argument("--grey", action="store_true", help="convert the image to one grey channel (needed by frontend)")
    p.add_argument("--method", default="auto",
                   help="auto | exact | lanczos | lobpcg | power (eigen); auto | exact | iterative (the others)")
    p.add_argument("--k", type=int, default=1, help="eigendistortions per end (default 1; eigen and generalized)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="amplitude shown in the figure")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from eigdist_core import models
    from eigdist_core.errors import EigdistError, in_context
    from eigdist_core.images import load_image
    from eigdist_core.io import check_output_folder
    from eigdist_core.validate import ModelError, validate_number, validate_sensitivity

    validate_number("--alpha", args.alpha, low=0)
    validate_number("--size", args.size, integer=True, low=2, high=MAX_SIZE)
    validate_number("--k", args.k, integer=True, low=1)
    specs = args.model
    count = {"eigen": "exactly one", "generalized": "exactly two (A then B)", "principal": "two or more"}[args.kind]
    if len(specs) != {"eigen": 1, "generalized": 2}.get(args.kind, max(len(specs), 2)):
        raise EigdistError(f"--kind {args.kind} takes {count} --model; got {len(specs)}")
    if len(set(specs)) < len(specs):
        twice = next(spec for spec in specs if specs.count(spec) > 1)
        raise EigdistError(f"--model {twice} is given twice: a layer cannot be compared with itself")
    check_output_folder(args.out, "--out")
    weights = [args.weights or models.default_weights(spec) for spec in specs]
    image = load_image(args.image, size=args.size, channels=1 if args.grey else None)
    loaded = [models.load(spec, weights=w) for spec, w in zip(specs, weights)]
    out = Path(args.out)
    names = [f"{spec} ({w})" for spec, w in zip(specs, weights)]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            synth, dist, lam, labels = _synthesize(args.kind, image[None], loaded, specs, args.method, args.k)
        if args.kind == "eigen":
            validate_sensitivity(float(lam[0]))  # F = 0: refused, with the model and the image
    except ModelError as exc:
        raise in_context(exc, f"--model {', '.join(names)} at --image {args.image} ({args.size} px)") from exc
    for w in caught:  # the solver's notes (short of tol, possibly degenerate) as one line each
        if issubclass(w.category, RuntimeWarning):
            print(f"eigdist synth: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if args.kind == "eigen":
        synth.save(out)
    else:
        synth.save(out, specs)
    title = f"{', '.join(names)}, {args.image} {args.size}×{args.size}"
    _figure(image.numpy(), dist, lam, labels, args.alpha, title, out)
    print(json.dumps(synth.diagnostics, indent=2))
    print(f"wrote {out}/eigendistortions.png and the arrays in {out}")
    return 0


def _synthesize(kind: str, image, loaded: list, specs: list[str], method: str, k: int):
    """(result, distortions as numpy, eigenvalues or None, the figure's two labels) of one ``--kind``."""
    if kind == "eigen":
        from eigdist_core.eigendistortion import Eigendistortion

        synth = Eigendistortion(image, loaded[0]).synthesize(method=method, k=k)
        return synth, synth.eigendistortions.detach().numpy(), synth.eigenvalues, ("max eigendistortion",
                                                                                   "min eigendistortion")
    if kind == "generalized":
        from eigdist_core.layer_contrasts import GeneralizedEigendistortion

        synth = GeneralizedEigendistortion(image, *loaded).synthesize(method=method, k=k)
        ratio = f"{specs[0]} / {specs[1]}"
        return synth, synth.eigendistortions.detach().numpy(), synth.eigenvalues, (f"top: {ratio}",
                                                                                   f"bottom: {ratio}")
    from eigdist_core.layer_contrasts import PrincipalDistortion

    synth = PrincipalDistortion(image, loaded).synthesize(method=method)
    return synth, synth.principal_distortions.detach().numpy(), None, (f"a: {specs[0]} sees best", "b")


def _figure(image, dist, lam, labels: tuple[str, str], alpha: float, title: str, out: Path) -> None:
    """The first and the last distortion under the image (eigendistortion_figure's layout)."""
    from eigdist_core.plots import eigendistortion_figure, save_figure

    values = None if lam is None else (float(lam[0]), float(lam[-1]))
    fig = eigendistortion_figure(image, dist[0], dist[-1], alpha, title=title, eigenvalues=values, labels=labels)
    save_figure(fig, out / "eigendistortions.png")
