"""The user-facing stimuli that tell layers apart: :class:`GeneralizedEigendistortion` and :class:`PrincipalDistortion`.

Beside :class:`~eigdist_core.eigendistortion.Eigendistortion`, with the same
conventions (an image, models, ``synthesize()`` returning ``self``, unit
distortions shaped like the image, ``diagnostics``, ``save``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from . import __version__
from .eigendistortion import EXACT_LIMIT
from .errors import EigdistError, in_context
from .fisher import FisherOperator
from .generalized import GeneralizedResult, solve_generalized
from .io import save_json, save_npy
from .principal import PrincipalResult, solve_principal
from .subspace import REGULARIZATION, SolveSettings
from .synthesis import Eigenpairs, Result, Synthesis
from .validate import validate_image, validate_k, validate_number, validate_positive

Model = Callable[[torch.Tensor], torch.Tensor]

#: Methods of both classes: ``exact`` forms every F_m (n × n), the iterative one never does.
COMPARISON_METHODS = ("auto", "exact", "iterative")


def layer_operators(
    image: torch.Tensor, models: Sequence[Model], dtype: torch.dtype, least: int,
) -> list[FisherOperator]:
    """One Fisher operator per model at ``image``, after the checks every comparison needs.

    Raises
    ------
    EigdistError
        Fewer than ``least`` models, one model given twice (a layer compared
        with itself), or a model that cannot take the image (comparisons need
        layers with the same input: size and channels), naming the model.
    """
    if len(models) < least:
        raise EigdistError(f"a comparison needs at least {least} layers; got {len(models)}")
    for i, model in enumerate(models):
        for j in range(i):
            if models[j] is model:
                raise EigdistError(f"layers {j} and {i} are the same model: a layer cannot be compared with itself")
    image = validate_image(image).detach()
    ops = []
    for i, model in enumerate(models):
        try:
            ops.append(FisherOperator(model, image, dtype=dtype))
        except (ValueError, TypeError, RuntimeError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise in_context(EigdistError(message), f"layer {i} cannot take the image of shape "
                             f"{tuple(image.shape)} (all layers of a comparison see the same image)") from exc
    return ops


def _settings(method: str, tol: float, max_iter: int, time_budget: float | None, regularization: float) -> None:
    if method not in COMPARISON_METHODS:
        raise EigdistError(f"method must be one of {', '.join(COMPARISON_METHODS)}; got {method!r}")
    validate_positive("tol", tol)
    validate_positive("max_iter", max_iter, integer=True)
    validate_positive("time_budget", time_budget, allow_none=True)
    validate_number("regularization", regularization, low=0, high=1)


def _exact(method: str, ops: list[FisherOperator]) -> bool:
    return method == "exact" or (method == "auto" and sum(op.m for op in ops) * ops[0].n <= EXACT_LIMIT)


class _Comparison(Synthesis[Result]):
    """What both classes share: the image, the layers' operators and the files."""

    kind = ""

    def __init__(self, image: torch.Tensor, models: Sequence[Model], dtype: torch.dtype, least: int) -> None:
        super().__init__()
        self.operators = layer_operators(image, list(models), dtype, least)
        self.image = image.detach()
        self.models = list(models)

    @property
    def fisher(self) -> list[dict[str, str]]:
        """Which path each layer's Fisher products take, and why (as ``Eigendistortion.diagnostics["fisher"]``)."""
        return [{"path": op.path, "reason": op.reason} for op in self.operators]

    def _solve(self, solve: Callable[..., Result], method: str, *operands: Any, tol: float, max_iter: int,
               seed: int, time_budget: float | None, regularization: float) -> Any:
        """Check the settings, run ``solve(*operands)`` exact or iterative by ``method``, keep its result; ``self``."""
        _settings(method, tol, max_iter, time_budget, regularization)
        self._result = solve(*operands, SolveSettings(_exact(method, self.operators), tol, max_iter, seed, time_budget,
                                                      regularization))
        return self

    def _save(self, path: str | os.PathLike, vectors: torch.Tensor, meta: dict[str, Any]) -> None:
        """``image.npy``, ``eigendistortions.npy`` (the vectors, image-shaped) and ``eigendistortion.json``."""
        path = Path(path)
        files = {
            "image": save_npy(path / "image.npy", self.image.cpu().numpy()),
            "eigendistortions": save_npy(path / "eigendistortions.npy", self._shaped(vectors).detach().cpu().numpy()),
        }
        save_json(path / "eigendistortion.json", {
            "eigdist_version": __version__, "kind": self.kind, **meta,
            "fisher": self.fisher,
            "image_shape": list(self.image.shape),
            "dtype": str(self.operators[0].dtype).removeprefix("torch."),
            "sha256": files,
        })


class GeneralizedEigendistortion(_Comparison[GeneralizedResult], Eigenpairs[GeneralizedResult]):
    """Generalized eigendistortions of layer A relative to layer B at one image.

    The top k maximise vᵀF_A v / vᵀF_B v (changes A sees best relative to B),
    the bottom k minimise it (changes B sees best relative to A); F_A and F_B
    are regularised by ε·λ_max (:mod:`eigdist_core.generalized`).

    Parameters
    ----------
    image
        As for :class:`~eigdist_core.eigendistortion.Eigendistortion`.
    model_a, model_b
        Two different layers taking the same image.
    dtype
        ``torch.float32`` (default) or ``torch.float64``.

    Attributes
    ----------
    eigendistortions : torch.Tensor
        (2k, *shape) unit distortions: top k, then bottom k.
    eigenvalues : torch.Tensor
        (2k,) ratios, descending.
    diagnostics : dict
        ``{"vectors": [...], "converged": bool, "method": str, "regularization": {...}, "fisher": [...]}``.
    """

    kind = "generalized"
    computes = "generalized eigendistortions"

    def __init__(self, image: torch.Tensor, model_a: Model, model_b: Model, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(image, [model_a, model_b], dtype, least=2)

    def synthesize(
        self, method: str = "auto", k: int = 1, tol: float = 1e-4, max_iter: int = 500, seed: int = 0,
        time_budget: float | None = None, regularization: float = REGULARIZATION,
    ) -> "GeneralizedEigendistortion":
        """Compute the top k and bottom k generalized eigendistortions.

        Parameters
        ----------
        method
            ``auto`` (``exact`` when the Jacobians have at most 4·10⁶ entries),
            ``exact`` or ``iterative`` (Davidson on a shared subspace).
        k
            Distortions per end.
        tol
            Relative residual ‖A v − λ B v‖ / (‖A v‖ + λ‖B v‖) to reach.
        max_iter, seed, time_budget
            Iteration cap, seed of the starting block, seconds for the solve.
        regularization
            ε of F + ε·λ_max(F)·I (default 1e-6); 0 for the plain pair.
        """
        validate_k(k, self.operators[0].n)
        return self._solve(solve_generalized, method, *self.operators, k, tol=tol, max_iter=max_iter, seed=seed,
                           time_budget=time_budget, regularization=regularization)

    @property
    def diagnostics(self) -> dict[str, Any]:
        r = self.result
        return {"vectors": r.diagnostics_dicts(), "converged": r.converged, "method": r.method,
                "regularization": r.regularization,
                "fisher": self.fisher}

    def save(self, path: str | os.PathLike, models: Sequence[str] = ()) -> None:
        """Write the results to the folder ``path``; ``models`` names the layers in the JSON."""
        r = self.result
        self._save(path, r.eigenvectors, {
            "models": list(models), "method": r.method, "eigenvalues": [float(v) for v in r.eigenvalues],
            "diagnostics": r.diagnostics_dicts(), "converged": r.converged, "regularization": r.regularization,
        })


class PrincipalDistortion(_Comparison[PrincipalResult]):
    """Principal distortions of M ≥ 2 layers at one image (Feather et al., ICLR 2025).

    The unit pair (a, b) maximising the variance across layers of
    log aᵀF_m a − log bᵀF_m b (:mod:`eigdist_core.principal`).

    Attributes
    ----------
    principal_distortions : torch.Tensor
        (2, *shape): a (the change the first layer sees best relative to the others), then b.
    objective : float
        The variance reached.
    diagnostics : dict
        Objective, log sensitivities per layer, residuals, ``converged``, iterations, products,
        seconds, method, regularization, fisher.
    """

    kind = "principal"
    computes = "principal distortions"

    def __init__(self, image: torch.Tensor, models: Sequence[Model], dtype: torch.dtype = torch.float32) -> None:
        super().__init__(image, models, dtype, least=2)

    def synthesize(
        self, method: str = "auto", tol: float = 1e-4, max_iter: int = 300, seed: int = 0,
        time_budget: float | None = None, regularization: float = REGULARIZATION,
    ) -> "PrincipalDistortion":
        """Compute the principal distortions (parameters as :meth:`GeneralizedEigendistortion.synthesize`).

        ``auto`` is ``exact`` only for two layers: there the exact optimum is the
        generalized eigenpair, a closed form. Three or more layers have none, and
        ``exact`` optimises over all n dimensions by BFGS (camera 16 × 16, ln,
        lgg, onoff: V 52.29 in 31.5 s CPU; the iterative solver converges to
        V 50.78 in 5.7 s; docs/solvers.md), so ``auto`` iterates for them.
        """
        if method == "auto" and len(self.operators) > 2:
            method = "iterative"
        return self._solve(solve_principal, method, self.operators, tol=tol, max_iter=max_iter, seed=seed,
                           time_budget=time_budget, regularization=regularization)

    @property
    def principal_distortions(self) -> torch.Tensor:
        return self._shaped(self.result.vectors)

    @property
    def objective(self) -> float:
        return self.result.objective

    @property
    def diagnostics(self) -> dict[str, Any]:
        return {**self.result.diagnostics(),
                "fisher": self.fisher}

    def save(self, path: str | os.PathLike, models: Sequence[str] = ()) -> None:
        """Write the results to the folder ``path``; ``models`` names the layers in the JSON."""
        self._save(path, self.result.vectors, {"models": list(models), **self.result.diagnostics()})
