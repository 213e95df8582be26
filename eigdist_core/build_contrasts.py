"""The build's items that tell layers apart: one group per (image, ``[[contrasts]]`` entry).

A contrast group loads each of its layers once and makes, at one image, the k top and k bottom
generalized eigendistortions of a pair (``gen_top``, ``gen_bottom``) or the two principal
distortions of M layers (``principal_a``, ``principal_b``), through
:class:`~eigdist_core.layer_contrasts.GeneralizedEigendistortion` and
:class:`~eigdist_core.layer_contrasts.PrincipalDistortion`. Its items are written like a layer's
(:func:`eigdist_core.build.compute_group`): atomically, with the same α ceiling and a response
curve, under the same determinism (a seed from the config seed and the group's names, one torch
thread), so a build killed at any moment resumes to the same bytes.

An item's condition names its contrast: ``model`` = the kind, ``layer`` = the contrast's name,
``weights`` = :data:`~eigdist_core.contract.CONTRAST_WEIGHTS`; its ``contrast`` entry records the
layers (in order: A, then B) and the solver's provenance (docs/formats.md, "Contrast items").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .build_plan import contrast_directions
from .config import Contrast, SetConfig
from .contract import CONTRAST_WEIGHTS
from .errors import EigdistError, in_context
from .io import load_npy, save_npy
from .stimulus_set import alpha_displayable


def compute_contrast_group(task) -> list[dict]:
    """Synthesize one contrast group's items (``task``: :class:`eigdist_core.build.Task`), write each file, return their entries."""
    import torch

    from . import models
    from .device import THREADS, device_kind, torch_threads
    from .sensitivities import response_curve
    from .sensitivity_values import as_float64

    cfg, group, folder = task.config, task.group, Path(task.folder)
    contrast = group.source
    try:
        with torch_threads(THREADS):
            device = "cuda" if task.device == "auto" and torch.cuda.is_available() else "cpu"
            image_np = load_npy(folder / "images" / f"{group.image_id}.npy")
            image = torch.from_numpy(image_np)[None].to(device)
            nets = [models.load(m.spec, m.weights).to(device) for m in contrast.models]
            vectors, record = synthesize(contrast, image, nets, cfg, group.seed)
            degenerate = record.pop("degenerate")
            model64 = as_float64(nets[0])  # one float64 copy serves every item's response curve
            entries = []
            for item_id, (direction, index), found in zip(group.item_ids, contrast_directions(contrast), vectors):
                vec = found.pop("vector").detach().cpu().numpy().astype(np.float32)
                file = f"items/{item_id}.npy"
                entries.append({
                    "item_id": item_id, "image_id": group.image_id, "model": contrast.kind, "layer": contrast.name,
                    "weights": CONTRAST_WEIGHTS, "direction": direction, "index": index, **found,
                    "degenerate": degenerate, "seed": group.seed, "device": device_kind(device),
                    "alpha_displayable_max": alpha_displayable(image_np, vec),
                    "response_curve": response_curve(model64, image, torch.from_numpy(vec).to(device),
                                                        cfg.alpha_max, cfg.response_points),
                    "file": file, "sha256": save_npy(folder / file, vec), "contrast": record,
                })
            return entries
    except EigdistError as exc:
        raise in_context(exc, f"image {group.image_id!r}, contrasts entry {contrast.name!r} ({contrast.kind})") from exc


def synthesize(contrast: Contrast, image, nets: list, cfg: SetConfig, seed: int) -> tuple[list[dict], dict]:
    """The contrast's vectors in item order, each with its manifest fields, and the contrast's record.

    ``eigenvalue`` is the generalized ratio vᵀF_A v / vᵀF_B v (None for principal distortions),
    ``rayleigh`` the first layer's vᵀF_A v, as a layer's own item records its vᵀFv.
    """
    import warnings

    from .layer_contrasts import GeneralizedEigendistortion, PrincipalDistortion

    settings = {"method": contrast.solver, "tol": cfg.tol, "max_iter": cfg.max_iter, "seed": seed}
    with warnings.catch_warnings():  # convergence is recorded per item (converged, residual)
        warnings.simplefilter("ignore", RuntimeWarning)
        if contrast.kind == "generalized":
            comp = GeneralizedEigendistortion(image, *nets).synthesize(k=contrast.k, **settings)
            vectors, values = comp.eigendistortions, [float(v) for v in comp.eigenvalues]
            rows = [{"eigenvalue": value, "residual": d["residual"], "converged": bool(d["converged"]),
                     "iterations": int(d["iterations"])} for value, d in zip(values, comp.diagnostics["vectors"])]
            solver = {"method": comp.result.method}
        else:
            comp = PrincipalDistortion(image, nets).synthesize(**settings)
            r = comp.result
            vectors = comp.principal_distortions
            rows = [{"eigenvalue": None, "residual": res, "converged": r.converged, "iterations": r.iterations}
                    for res in r.residuals]
            solver = {"method": r.method, "objective": r.objective, "products": r.products}
    op_a = comp.operators[0]
    out = [{"vector": v, "rayleigh": float(v.reshape(-1) @ (op_a @ v.reshape(-1))), **row}
           for v, row in zip(vectors.detach(), rows)]
    record = {
        "kind": contrast.kind, "name": contrast.name,
        "models": [{"spec": m.spec, "weights": m.weights} for m in contrast.models],
        **solver, "regularization": comp.result.regularization,
        "degenerate": any(op.m < op.n for op in comp.operators),
    }
    return out, record
