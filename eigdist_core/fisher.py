"""The Fisher operator F = JᵀJ of a model at one image, applied without forming F.

J = ∂f/∂x is never built for iterative solvers: ``F @ V`` is a forward-mode
Jacobian-vector product (``torch.func.jvp``) followed by a vector-Jacobian
product whose linearisation (``torch.func.vjp``) is computed once per image and
reused for every product. Blocks of vectors go through ``torch.func.vmap`` so b
vectors cost one batched pass rather than b separate ones.
"""

from __future__ import annotations

import copy
import functools
import warnings
from typing import Callable

import torch
from torch import nn

from .validate import freeze, validate_dtype, validate_image, validate_model


class FisherOperator:
    """F = JᵀJ of ``model`` at ``image``, as an operator on blocks of vectors.

    Parameters
    ----------
    model
        Maps the image (in its given shape) to a response tensor. An
        ``nn.Module`` is put in eval mode with its parameters frozen.
    image
        The image or vector x at which J = ∂f/∂x is taken (see
        :func:`~eigdist_core.validate.validate_image`).
    dtype
        Computation dtype, ``torch.float32`` (default) or ``torch.float64``.
        When it differs from the model's, a converted copy of the model is used
        so the caller's model is not changed.
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
        freeze(model)
        if isinstance(model, nn.Module) and _module_dtype(model) not in (None, dtype):
            model = freeze(copy.deepcopy(model).to(dtype))
        self.image_shape = tuple(image.shape)
        x = image.detach().to(dtype).reshape(-1)
        validate_model(model, x.view(self.image_shape))
        shape = self.image_shape

        def f(v: torch.Tensor) -> torch.Tensor:
            return model(v.view(shape)).reshape(-1)

        self._f = f
        self._x = x
        response, self._vjp_fn = torch.func.vjp(f, x)
        self.response = response.detach()
        self.n = x.numel()
        self.m = self.response.numel()
        self.chunk_size = chunk_size
        self.products = 0

    @property
    def device(self) -> torch.device:
        return self._x.device

    def jvp(self, V: torch.Tensor) -> torch.Tensor:
        """J·v for each row v of ``V`` (b × n) → b × m, forward mode."""
        _load_forward_ad_quietly()
        x, f = self._x, self._f

        def one(v: torch.Tensor) -> torch.Tensor:
            return torch.func.jvp(f, (x,), (v,))[1]

        return torch.func.vmap(one, chunk_size=self.chunk_size)(V)

    def vjp(self, U: torch.Tensor) -> torch.Tensor:
        """Jᵀ·u for each row u of ``U`` (b × m) → b × n, reusing the linearisation."""
        return torch.func.vmap(lambda u: self._vjp_fn(u)[0], chunk_size=self.chunk_size)(U)

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
