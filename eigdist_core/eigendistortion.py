"""The user-facing :class:`Eigendistortion`, with plenoptic's names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import __version__
from .fisher import FisherOperator
from .errors import EigdistError
from .io import load_json, load_npy, save_json, save_npy, sha256_file
from .solvers import (
    AUTO_PAIR,
    EigenResult,
    IterativeSettings,
    VectorDiagnostics,
    solve_exact,
    solve_iterative,
    warn_about,
)
from .preconditioner import PROBES
from .synthesis import Eigenpairs
from .validate import (
    validate_bottom_start, validate_diagonal_probes, validate_image, validate_k, validate_method, validate_positive,
)

#: Above this many Jacobian entries (m·n) ``auto`` switches from exact to iterative.
EXACT_LIMIT = 4_000_000


class Eigendistortion(Eigenpairs[EigenResult]):
    """Max and min eigendistortions of a model at one image.

    Parameters
    ----------
    image
        1-D vector, (H, W), (C, H, W) or (1, C, H, W) float tensor.
    model
        Maps ``image`` to a response tensor of the same dtype and device. An
        ``nn.Module`` is run in eval mode and never changed (mode, parameters'
        ``requires_grad``, buffers); a model whose ``forward`` writes to its own
        tensors, or that ``torch.func`` cannot trace, is differentiated by plain
        autograd (``diagnostics["fisher"]``).
    dtype
        Computation dtype (``torch.float32`` default, ``torch.float64`` for
        accuracy checks).

    Attributes
    ----------
    eigendistortions : torch.Tensor
        (2k, *shape) unit-norm distortions, where ``shape`` is the image's
        shape without its batch dimension; the first k are the max, the last k
        the min (the very last is the least noticeable).
    eigenvalues, eigenindex : torch.Tensor
        As in plenoptic: eigenvalues descending, positions ``[0..k-1, n-k..n-1]``.
    jacobian : torch.Tensor or None
        m × n Jacobian, ``exact`` only.
    diagnostics : dict
        ``{"vectors": [per-vector dicts], "degenerate": bool, "possibly_degenerate": bool, "method": str,
        "fisher": {"path": "torch.func" | "autograd", "reason": str}}``.
    """

    computes = "eigendistortions"

    def __init__(
        self,
        image: torch.Tensor,
        model: Callable[[torch.Tensor], torch.Tensor],
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.image = validate_image(image).detach()
        self.model = model
        self.operator = FisherOperator(model, self.image, dtype=dtype)

    def __repr__(self) -> str:
        """plenoptic's layout: the image's shape and dtype, then the model."""
        model = repr(self.model).replace("\n", "\n  ")
        return f"Eigendistortion(\n  image = {self.image.shape} ({self.image.dtype}),\n  model = {model},\n)"

    def synthesize(
        self,
        method: str = "auto",
        k: int = 1,
        tol: float = 1e-4,
        max_iter: int = 1000,
        seed: int = 0,
        time_budget: float | None = None,
        stop_criterion: float | None = None,
        bottom_start: torch.Tensor | None = None,
        diagonal_probes: int = PROBES,
    ) -> "Eigendistortion":
        """Compute the top k and bottom k eigendistortions.

        Parameters
        ----------
        method
            ``auto`` (exact when m·n ≤ :data:`EXACT_LIMIT`, else Lanczos for the
            top and LOBPCG for the bottom), ``exact``, ``lanczos``, ``lobpcg`` or
            ``power`` (plenoptic's algorithm). See ``docs/solvers.md``.
        k
            Eigendistortions per end of the spectrum.
        tol
            Target relative residual ‖Fv − λv‖ / λ_max (iterative methods).
        max_iter
            Iteration cap per end of the spectrum (iterative methods; one
            iteration is one block of Fisher products).
        seed
            Seeds the starting block and the choice within a null space.
        time_budget
            Seconds; an iterative solver stops when it is spent, and says so.
        stop_criterion
            plenoptic's name for ``tol``; overrides it when given.
        bottom_start
            Vectors (image-shaped, or c × n) that start the bottom's search,
            added to the top's subspace: the min eigendistortions of a
            shallower layer of the same network at the same image start it
            close, often in a sixth of the products and at a lower Rayleigh
            quotient (docs/solvers.md). Iterative methods other than ``power``;
            ``exact`` needs none and ignores it, and so does a bottom that is a
            null space (its vectors are the seeded rule's choice).
        diagonal_probes
            Products Jᵀz (each about half a Fisher product) that estimate F's
            diagonal for the Jacobi preconditioner of a LOBPCG bottom, which
            then needs a half to a fifth of the products (docs/solvers.md);
            0 turns it off, otherwise at least 2.

        Returns
        -------
        Eigendistortion
            ``self``, with results set.
        """
        validate_method(method)
        op = self.operator
        validate_k(k, op.n)
        tol = validate_positive("tol", stop_criterion if stop_criterion is not None else tol)
        validate_positive("max_iter", max_iter, integer=True)
        validate_positive("time_budget", time_budget, allow_none=True)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        start = validate_bottom_start(bottom_start, op.n)
        validate_diagonal_probes(diagonal_probes)
        if method == "exact" or (method == "auto" and op.m * op.n <= EXACT_LIMIT):
            result = solve_exact(op, k, seed)
        else:
            top, bottom = AUTO_PAIR if method == "auto" else (method, method)
            settings = IterativeSettings(top, bottom, tol, max_iter, seed, time_budget, diagonal_probes=diagonal_probes)
            result = solve_iterative(op, k, settings, bottom_start=start)
        warn_about(result, tol)
        self._result = result
        return self

    @property
    def eigenindex(self) -> torch.Tensor:
        return self.result.eigenindex

    @property
    def jacobian(self) -> torch.Tensor | None:
        return self.result.jacobian

    @property
    def diagnostics(self) -> dict[str, Any]:
        r, op = self.result, self.operator
        return {
            "vectors": r.diagnostics_dicts(), "degenerate": r.degenerate,
            "possibly_degenerate": r.possibly_degenerate, "method": r.method,
            "fisher": {"path": op.path, "reason": op.reason},
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the results to the folder ``path``: ``.npy`` arrays, then ``eigendistortion.json`` listing them.

        The metadata lists every array with its sha256 (``sha256``: name → hex).
        A result already in the folder is replaced whole: its metadata goes
        first, then every array of :data:`ARRAYS` this result does not write,
        and the new metadata comes last, so a save stopped at any moment leaves
        a folder :meth:`load` refuses, never a mix of two results. Other files
        (``eigdist synth``'s figure) are left alone.
        """
        r = self.result
        path = Path(path)
        arrays = {
            "image": self.image.cpu().numpy(),
            "eigendistortions": self.eigendistortions.detach().cpu().numpy(),
            "response": self.operator.response.cpu().numpy(),
        }
        if r.jacobian is not None:
            arrays["jacobian"] = r.jacobian.detach().cpu().numpy()
        path.mkdir(parents=True, exist_ok=True)
        (path / META).unlink(missing_ok=True)
        for name in ARRAYS:
            if name not in arrays:
                (path / f"{name}.npy").unlink(missing_ok=True)
        files = {name: save_npy(path / f"{name}.npy", array) for name, array in arrays.items()}
        save_json(
            path / META,
            {
                "eigdist_version": __version__,
                "method": r.method,
                "degenerate": r.degenerate,
                "possibly_degenerate": r.possibly_degenerate,
                "eigenvalues": [float(v) for v in r.eigenvalues],
                "eigenindex": [int(i) for i in r.eigenindex],
                "diagnostics": r.diagnostics_dicts(),
                "fisher": self.diagnostics["fisher"],
                "image_shape": list(self.image.shape),
                "dtype": str(self.operator.dtype).removeprefix("torch."),
                "sha256": files,
            },
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        model: Callable[[torch.Tensor], torch.Tensor],
        dtype: torch.dtype | None = None,
    ) -> "Eigendistortion":
        """Read results written by :meth:`save` for ``model``.

        Only the arrays ``eigendistortion.json`` lists are read, each after its
        sha256 is checked; a folder that also holds an array of :data:`ARRAYS`
        the metadata does not list (another result's) is refused. The dtype is
        one of :data:`DTYPES`. The model's response at the saved image must
        match the saved response (to 1e-5 relative), so results are never
        attached to the wrong model.

        Raises
        ------
        ResultError
            Naming the folder and the missing, unlisted, changed or unknown file or field.
        """
        path = Path(path)
        meta, files = _read_meta(path)
        dtype = dtype or DTYPES[meta["dtype"]]
        image = torch.from_numpy(files["image"])
        obj = cls(image, model, dtype=dtype)
        saved = torch.from_numpy(files["response"]).to(obj.operator.response)
        if saved.shape != obj.operator.response.shape or not torch.allclose(
            saved, obj.operator.response, rtol=1e-5, atol=1e-6 * float(saved.abs().max())
        ):
            raise ResultError(
                f"the model given to load() does not reproduce the response saved in {path}: "
                "pass the model the eigendistortions were computed for"
            )
        vecs = torch.from_numpy(files["eigendistortions"]).to(dtype)
        obj._result = EigenResult(
            eigenvalues=torch.tensor(meta["eigenvalues"], dtype=dtype),
            eigenvectors=vecs.reshape(vecs.shape[0], -1),
            eigenindex=torch.tensor(meta["eigenindex"]),
            diagnostics=[VectorDiagnostics(**d) for d in meta["diagnostics"]],
            degenerate=meta["degenerate"],
            method=meta["method"],
            jacobian=torch.from_numpy(files["jacobian"]) if "jacobian" in files else None,
            possibly_degenerate=meta.get("possibly_degenerate", False),
        )
        return obj


class ResultError(EigdistError):
    """A folder :meth:`Eigendistortion.load` cannot read as one saved result; the message names the file."""


#: Metadata of a saved result, and the arrays a result can hold (``<name>.npy``; the first three always).
META = "eigendistortion.json"
ARRAYS = ("image", "eigendistortions", "response", "jacobian")
#: The dtypes a saved result may name.
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _read_meta(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata of the result in ``path`` and the arrays it lists, each checked against its sha256."""
    where = path / META
    if not where.is_file():
        raise ResultError(f"{path} holds no {META}: not a saved Eigendistortion, or its save was interrupted; "
                          "save it again")
    try:
        meta = load_json(where)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResultError(f"{where} is not valid JSON ({exc}); save the result again") from None
    listed = meta.get("sha256") if isinstance(meta, dict) else None
    if not isinstance(listed, dict) or not {"image", "eigendistortions", "response"} <= set(listed):
        raise ResultError(f"{where} does not list the arrays image, eigendistortions and response with their "
                          "sha256 ('sha256'); save the result again")
    unknown = sorted(set(listed) - set(ARRAYS))
    if unknown:
        raise ResultError(f"{where} lists unknown arrays {unknown}; a result has {', '.join(ARRAYS)}")
    if meta.get("dtype") not in DTYPES:
        raise ResultError(f"{where}: dtype {meta.get('dtype')!r} is not one of {', '.join(DTYPES)}")
    stray = [f"{name}.npy" for name in ARRAYS if name not in listed and (path / f"{name}.npy").exists()]
    if stray:
        raise ResultError(f"{path} holds {', '.join(stray)}, which {META} does not list: a file of another result; "
                          "remove it, or save into an empty folder")
    files = {}
    for name, sha in listed.items():
        file = path / f"{name}.npy"
        if not file.is_file():
            raise ResultError(f"{file} is missing ({META} lists it); save the result again")
        if sha256_file(file) != sha:
            raise ResultError(f"{file} does not match its sha256 in {META}: changed since the save, or a file of "
                              "another result; save the result again")
        files[name] = load_npy(file)
    return meta, files
