"""The Fisher operator F = JᵀJ of a model at one image, applied without forming F.

J = ∂f/∂x is never built for iterative solvers. Two ways to apply it, with the
same results:

- The recorded graph (every block the solvers use, up to :data:`GRAPH_BLOCK`
  vectors): one autograd graph of f at x, recorded once per image, and the graph
  of g(u) = Jᵀu, also recorded once. Jᵀu is a backward pass of the first, J·v
  the "double-vjp" trick on the second (plenoptic's, which records it for every
  product): two passes per vector and no per-product set-up. Convolutions run
  with an input-only backward (:mod:`eigdist_core.input_only_conv`), so J·v
  costs one convolution per layer where torch's own double backward runs two.
- ``torch.func`` for larger blocks (the exact Jacobian): a forward-mode
  Jacobian-vector product (``torch.func.jvp``) vmapped over the block, then a
  vector-Jacobian product whose linearisation (``torch.func.vjp``) is computed
  once per image; it also serves every block of a model whose backward cannot
  itself be differentiated (``once_differentiable``).

Models that change their own tensors in ``forward`` (detected from a plain
call, before any transform runs) and models ``torch.func`` cannot trace (tried
once, then abandoned) take every block through the recorded graph: path
``autograd``, and ``diagnostics["fisher"]`` says why.

Every forward pass runs with eval-mode batch norm as its affine map
(:mod:`eigdist_core.frozen_batchnorm`), and every computation with the device
settings of :mod:`eigdist_core.device` (full float32, deterministic kernels on
CUDA). The caller's model is never changed (:mod:`eigdist_core.model_state`).
"""

from __future__ import annotations

import copy
import functools
import warnings
from typing import Callable

import numpy as np
import torch
from torch import nn

from .device import reproducible
from .errors import caused_by_interrupt
from .frozen_batchnorm import AffineBatchNorm
from .input_only_conv import InputOnlyConvolution
from .model_state import Snapshot, changed_tensors, in_eval_mode, keeping_buffers, snapshot
from .validate import ModelError, validate_dtype, validate_gradient, validate_image, validate_model


#: Blocks of at most this many vectors go through the recorded graph one vector at a time; larger ones
#: (the exact Jacobian) through one vmapped pass. At 128 px and above the graph is cheaper per vector
#: at every block size; on small images a vmapped pass amortises per-call overheads over blocks of 32
#: and more (docs/solvers.md).
GRAPH_BLOCK = 8


class FisherOperator:
    """F = JᵀJ of ``model`` at ``image``, as an operator on blocks of vectors.

    Parameters
    ----------
    model
        Maps the image (in its given shape) to a response tensor. An
        ``nn.Module`` is run in eval mode during each call and left exactly as
        it was given (mode, ``requires_grad``, dtype).
    image
        The image or vector x at which J = ∂f/∂x is taken (see
        :func:`~eigdist_core.validate.validate_image`).
    dtype
        Computation dtype, ``torch.float32`` (default) or ``torch.float64``.
        When it differs from the model's, a converted copy of the model is used.
    chunk_size
        At most this many vectors go through one vmapped pass (bounds memory);
        ``None`` means the whole block at once.

    Attributes
    ----------
    n, m : int
        Input and output sizes (numbers of values).
    products : int
        Fisher products F·v computed so far (a block of b vectors counts b).
    response : torch.Tensor
        f(x), flattened.
    path, reason : str
        ``torch.func`` or ``autograd``, and why autograd was used (else ``""``).

    Raises
    ------
    ModelError
        If the model is not a function of the image (:func:`~eigdist_core.validate.validate_model`),
        its gradient at the image is not finite (one product Jᵀu with a
        seeded ±1 vector u, :func:`~eigdist_core.validate.validate_gradient`),
        or its response does not depend on the image through autograd (the
        model detaches its input or computes outside torch).
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        image: torch.Tensor,
        dtype: torch.dtype = torch.float32,
        chunk_size: int | None = None,
    ) -> None:
        validate_image(image)
        self.dtype = validate_dtype(dtype)
        if isinstance(model, nn.Module) and _module_dtype(model) not in (None, dtype):
            model = copy.deepcopy(model).to(dtype)
        self.image_shape = shape = tuple(image.shape)
        x = image.detach().to(dtype).reshape(-1)
        call = in_eval_mode(model)

        def f(v: torch.Tensor) -> torch.Tensor:
            with AffineBatchNorm():
                return call(v.view(shape)).reshape(-1)

        def f_graph(v: torch.Tensor) -> torch.Tensor:
            with InputOnlyConvolution():
                return f(v)

        self._f, self._f_graph, self._x = f, f_graph, x
        self.n, self.chunk_size, self.products = x.numel(), chunk_size, 0
        with keeping_buffers(model):  # eigdist's own calls leave the model's buffers as they were
            before = snapshot(model)
            validate_model(call if callable(model) else model, x.view(shape))
            with reproducible(x.device):
                self._linearize(model, before)
        validate_gradient(self.vjp(_probe(self.m, dtype, x.device)))

    def _linearize(self, model: Callable[[torch.Tensor], torch.Tensor], before: Snapshot) -> None:
        """Record the graph at x and, unless the model needs plain autograd, the torch.func linearisation."""
        f, x, dtype = self._f, self._x, self.dtype
        self._graph = _Graph(self._f_graph, x)  # a plain call: also the autograd path's graph
        self.response = self._graph.y.detach()
        self.m = self.response.numel()
        changed = changed_tensors(model, before)
        self.path, self.reason = "torch.func", ""
        if changed:
            self._use_autograd(f"forward changes the model's own tensors ({', '.join(changed[:5])})")
            return
        try:
            _, self._vjp_fn = torch.func.vjp(f, x)
            self._vmapped_jvp(torch.zeros(2, self.n, dtype=dtype, device=x.device))  # traces the forward mode once
        except Exception as err:  # any failure of the transforms: the plain path still works
            if caused_by_interrupt(err):  # Ctrl-C inside the transforms, not a model they cannot trace
                raise KeyboardInterrupt from err
            self._use_autograd(f"torch.func cannot trace the model: {type(err).__name__}: {str(err).splitlines()[0]}")
            return
        try:
            self._graph.prepare_jvp()
        except (ValueError, RuntimeError):  # no double backward: single vectors go through vmap too
            self._graph = None

    def _use_autograd(self, reason: str) -> None:
        self.path, self.reason = "autograd", reason
        self._vjp_fn = None
        try:
            self._graph.prepare_jvp()
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"{reason}; and plain autograd cannot take J·v either: {err}") from None

    @property
    def device(self) -> torch.device:
        return self._x.device

    def _through_graph(self, block: torch.Tensor) -> bool:
        return self._vjp_fn is None or (block.shape[0] <= GRAPH_BLOCK and self._graph is not None)

    def jvp(self, V: torch.Tensor) -> torch.Tensor:
        """J·v for each row v of ``V`` (b × n) → b × m."""
        with reproducible(self.device):
            return self._graph.jvp(V) if self._through_graph(V) else self._vmapped_jvp(V)

    def _vmapped_jvp(self, V: torch.Tensor) -> torch.Tensor:
        _load_forward_ad_quietly()
        x, f = self._x, self._f

        def one(v: torch.Tensor) -> torch.Tensor:
            return torch.func.jvp(f, (x,), (v,))[1]

        return torch.func.vmap(one, chunk_size=self.chunk_size)(V).detach()

    def vjp(self, U: torch.Tensor) -> torch.Tensor:
        """Jᵀ·u for each row u of ``U`` (b × m) → b × n, reusing the linearisation."""
        with reproducible(self.device):
            if self._through_graph(U):
                return self._graph.vjp(U)
            return torch.func.vmap(lambda u: self._vjp_fn(u)[0], chunk_size=self.chunk_size)(U).detach()

    def __matmul__(self, V: torch.Tensor) -> torch.Tensor:
        """F·v for each row v of ``V`` (b × n, or a single n-vector) → same shape."""
        single = V.ndim == 1
        block = V.unsqueeze(0) if single else V
        out = self.vjp(self.jvp(block.to(self.dtype)))
        self.products += block.shape[0]
        return out[0] if single else out

    def jacobian(self) -> torch.Tensor:
        """The full m × n Jacobian, by whichever of n jvps or m vjps is fewer."""
        if self.m <= self.n:
            eye = torch.eye(self.m, dtype=self.dtype, device=self.device)
            return self.vjp(eye)
        eye = torch.eye(self.n, dtype=self.dtype, device=self.device)
        return self.jvp(eye).T


class _Graph:
    """One recorded autograd graph of f at x: Jᵀu by a backward pass, J·v by the double-vjp trick.

    g(u) = Jᵀu is computed once with ``create_graph``; it is linear in u, so
    the gradient of v·g(u) with respect to u is J·v.
    """

    def __init__(self, f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> None:
        self.x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            self.y = f(self.x)
        connected = self.y.requires_grad and torch.autograd.grad(
            self.y, self.x, torch.ones_like(self.y), retain_graph=True, allow_unused=True
        )[0] is not None
        if not connected:
            raise ModelError(
                "model response does not depend on the image through autograd: the model detaches its input "
                "or computes outside torch (numpy), so its Jacobian cannot be taken"
            )
        self.u = self.g = None

    def prepare_jvp(self) -> None:
        """Record g(u) = Jᵀu once for the double-vjp trick.

        Raises
        ------
        ModelError
            If g does not depend on u although J ≠ 0: the model's backward is not
            differentiable (an ``autograd.Function`` marked ``once_differentiable``),
            so J·v cannot come from it (using it would return J·v = 0).
        """
        with torch.enable_grad():
            self.u = torch.zeros_like(self.y, requires_grad=True)
            self.g = torch.autograd.grad(self.y, self.x, self.u, create_graph=True)[0]
        if self.g.requires_grad and torch.autograd.grad(
            self.g, self.u, torch.ones_like(self.g), retain_graph=True, allow_unused=True
        )[0] is not None:
            return
        self.g = None
        probe = torch.randn(self.y.shape, generator=torch.Generator(self.y.device).manual_seed(0),
                            dtype=self.y.dtype, device=self.y.device)
        if self.vjp(probe[None]).any():
            raise ModelError(
                "the model's backward is not differentiable (an autograd.Function marked once_differentiable?), "
                "so its Jacobian-vector products cannot be taken by the double-vjp trick"
            )

    def vjp(self, U: torch.Tensor) -> torch.Tensor:
        return torch.stack([
            torch.autograd.grad(self.y, self.x, u, retain_graph=True)[0] for u in U
        ]) if len(U) else U.new_zeros(0, self.x.numel())

    def jvp(self, V: torch.Tensor) -> torch.Tensor:
        if self.g is None or not len(V):  # g(u) is constant in u only where J = 0
            return V.new_zeros(len(V), self.y.numel())
        return torch.stack([torch.autograd.grad(self.g, self.u, v, retain_graph=True)[0] for v in V])


def _probe(m: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A seeded 1 × m row of ±1, drawn by numpy on the CPU: the same on any device, and no torch
    random call (which ``torch.func`` refuses inside a transform). The probe only checks that the
    gradient is finite.
    """
    signs = np.random.default_rng(0).integers(0, 2, size=(1, m), dtype=np.int8) * 2 - 1
    return torch.from_numpy(signs).to(dtype=dtype, device=device)


def _module_dtype(model: nn.Module) -> torch.dtype | None:
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


@functools.cache
def _load_forward_ad_quietly() -> None:
    """Use forward-mode AD once with torch's ``torch.jit.script`` deprecation warning silenced.

    The first forward-mode product makes torch script its own jvp decompositions
    (``torch._decomp.decompositions_for_jvp``), which emits that FutureWarning: torch's
    internals, nothing a user can act on, so it must not reach the terminal.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        torch.func.jvp(torch.neg, (torch.zeros(1),), (torch.ones(1),))
