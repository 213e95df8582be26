"""Every input check of the synthesis core, in one place.

torch is imported inside the checks that need it, so the number checks cost
nothing to the modules that read sets without torch.

Each check raises :class:`EigdistError` (a bad value) or ``TypeError`` (a wrong type); the model
checks raise :class:`ModelError`, both an ``EigdistError`` and a ``TypeError``. The message names the
bad value and says what is allowed, so a lab sees at once what to fix.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

from .errors import EigdistError

if TYPE_CHECKING:
    import torch
    from torch import nn

#: Methods accepted by :meth:`Eigendistortion.synthesize`.
METHODS = ("auto", "exact", "lanczos", "lobpcg", "power")


def validate_image(image: Any) -> torch.Tensor:
    """Check an input image or vector and return it unchanged.

    Parameters
    ----------
    image
        A float tensor: a 1-D vector, a 2-D (H, W) or 3-D (C, H, W) image, or a
        4-D (1, C, H, W) image with batch size 1. Values must be finite.

    Returns
    -------
    torch.Tensor
        The same tensor.

    Raises
    ------
    TypeError
        If ``image`` is not a floating-point tensor.
    ValueError
        If it has the wrong number of dimensions, a batch size other than 1,
        no elements, or non-finite values.
    """
    import torch

    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if not image.is_floating_point():
        raise TypeError(
            f"image must be a floating-point tensor (float32 or float64), got dtype {image.dtype}"
        )
    if image.ndim not in (1, 2, 3, 4):
        raise EigdistError(
            f"image must be 1-D (vector), 2-D (H, W), 3-D (C, H, W) or 4-D (1, C, H, W); "
            f"got {image.ndim}-D with shape {tuple(image.shape)}"
        )
    if image.ndim == 4 and image.shape[0] != 1:
        raise EigdistError(
            f"image batch size must be 1 (one image per Eigendistortion), got shape {tuple(image.shape)}"
        )
    _require_finite_values(image, "image", EigdistError)
    return image


def _require_finite_values(values: torch.Tensor, what: str, error: type[EigdistError]) -> None:
    """Refuse an empty tensor, or one with NaN or infinite values (counted), naming ``what``."""
    import torch

    if values.numel() == 0:
        raise error(f"{what} must not be empty, got shape {tuple(values.shape)}")
    bad = int((~torch.isfinite(values)).sum())
    if bad:
        raise error(f"{what} must be finite; it has NaN or infinite values ({bad} of {values.numel()})")


def validate_value_range(value_range: Sequence[float]) -> tuple[float, float]:
    """Check a ``(low, high)`` pair with ``0 <= low < high <= 1`` and return it as floats."""
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise EigdistError(
            f"value_range must be two numbers [low, high], got {value_range!r}"
        ) from None
    if not (0.0 <= lo < hi <= 1.0):
        raise EigdistError(
            f"value_range must satisfy 0 <= low < high <= 1, got [{lo}, {hi}]"
        )
    return lo, hi


class ModelError(EigdistError, TypeError):
    """A model eigdist cannot use: its response at an image is not one finite tensor of fixed size that
    depends on the image alone and differentiably. Also a ``TypeError`` for callers of the synthesis API.
    Callers add which model and image (``in_context``)."""


#: Two calls of a model on one image must agree to this fraction of the response's largest magnitude.
REPEAT_RTOL = 1e-5


def validate_model(model: Any, image: torch.Tensor) -> torch.Tensor:
    """Check that ``model`` is a function of the image: one finite tensor, the same at every call.

    The model runs twice on ``image`` (without gradients; its buffers and the
    global random generator are restored after each call): both responses must
    be tensors of the image's dtype and device, non-empty, finite, and equal in
    shape and (to :data:`REPEAT_RTOL` of the largest magnitude) in value, so a
    model with dropout or noise active in ``forward``, or an output size that
    changes between calls, is refused before any work.

    Parameters
    ----------
    model
        A callable (usually an ``nn.Module``) taking the image.
    image
        A tensor already checked by :func:`validate_image`.

    Returns
    -------
    torch.Tensor
        The model's response to ``image`` (the first call's).

    Raises
    ------
    ModelError
        Naming what is wrong: not callable, not a tensor (a ``create_feature_extractor``
        dict, for instance), another dtype or device, empty, not finite, another size
        or other values at the second call.
    """
    import torch

    from .model_state import keeping_buffers

    if not callable(model):
        raise ModelError(f"model must be callable (an nn.Module), got {type(model).__name__}")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        responses = []
        for _ in range(2):
            with keeping_buffers(model):
                responses.append(validate_response(model(image), image))
    first, second = responses
    if second.shape != first.shape:
        raise ModelError(f"model output size changes between calls on the same image ({tuple(first.shape)}, then "
                         f"{tuple(second.shape)}): eigdist needs a fixed-size response; fix the model's forward")
    scale = float(first.abs().max())
    diff = float((second - first).abs().max())
    if diff > REPEAT_RTOL * scale:
        raise ModelError(f"model is not deterministic: two calls on the same image differ by up to {diff:.3g} "
                         f"(largest response {scale:.3g}); turn off dropout or noise in its forward (training=False)")
    return first


def validate_response(response: Any, image: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """Check one response of a model to ``image``: a non-empty finite tensor of the image's dtype and device,
    of the shape of ``like`` (the response at another image) when given."""
    import torch

    if not isinstance(response, torch.Tensor):
        hint = ""
        if isinstance(response, dict):
            hint = f" (a dict with keys {sorted(response)}: wrap the model so it returns one tensor)"
        raise ModelError(f"model must return a torch.Tensor, got {type(response).__name__}{hint}")
    if response.dtype != image.dtype:
        raise ModelError(
            f"model must keep the image dtype: image is {image.dtype}, response is {response.dtype}"
        )
    if response.device != image.device:
        raise ModelError(
            f"model must keep the image device: image is on {image.device}, response is on {response.device}"
        )
    _require_finite_values(response, "model response", ModelError)
    if like is not None and response.shape != like.shape:
        raise ModelError(f"model output size changes with the image ({tuple(like.shape)}, then "
                         f"{tuple(response.shape)}): eigdist needs a fixed-size response; fix the model's forward")
    return response


def validate_gradient(probe: torch.Tensor) -> None:
    """Check Jᵀu for a dense u (any non-finite entry of J makes entries of it non-finite)."""
    import torch

    if not torch.isfinite(probe).all():
        bad = int((~torch.isfinite(probe)).sum())
        raise ModelError(f"model gradient at the image is not finite (NaN or inf at {bad} of {probe.numel()} "
                         "pixels): a sqrt, log or division at 0 in its forward? Fix the model or use another image")


def validate_sensitivity(scale: float) -> None:
    """Refuse a Fisher matrix that is zero: ``scale`` is its largest eigenvalue (0 when the solvers found F = 0)."""
    if not scale > 0:
        raise ModelError("model response does not change with the image here (Fisher matrix 0, e.g. a dead ReLU "
                         "layer): no direction is more or less noticeable than another; use another layer or image")


def freeze(model: nn.Module | Any) -> Any:
    """Put an ``nn.Module`` in eval mode with every parameter frozen, in place.

    The caller's model is changed so that Fisher products never accumulate
    parameter gradients; this is plenoptic's ``remove_grad`` contract.
    """
    from torch import nn

    if isinstance(model, nn.Module):
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return model


def validate_method(method: Any) -> str:
    """Check a solver name against :data:`METHODS`."""
    if method not in METHODS:
        raise EigdistError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    return method


def validate_k(k: Any, n: int) -> int:
    """Check the number of eigenvectors per end: an int with ``1 <= k`` and ``2k <= n``."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {k!r}")
    if k < 1 or 2 * k > n:
        raise EigdistError(
            f"k must satisfy 1 <= k <= n/2 = {n // 2} (n = {n} input values), got k={k}"
        )
    return k


def validate_diagonal_probes(probes: Any) -> int:
    """Check the preconditioner's probe count: 0 (none) or an int ≥ 2 (two probes measure the estimate's noise)."""
    if validate_number("diagonal_probes", probes, integer=True, low=0) == 1:
        raise EigdistError("diagonal_probes must be 0 (no preconditioner) or >= 2 (the spread between the "
                         "probes measures the estimate's noise); got 1")
    return probes


def validate_bottom_start(start: Any, n: int) -> torch.Tensor | None:
    """Check a warm start for the bottom: a finite float tensor of c·n values (c vectors of n), or ``None``.

    Returns
    -------
    torch.Tensor or None
        The c × n rows.
    """
    import torch

    if start is None:
        return None
    if not isinstance(start, torch.Tensor) or not start.is_floating_point():
        raise TypeError(f"bottom_start must be a float tensor of vectors of {n} values, got {type(start).__name__}")
    if start.numel() == 0 or start.numel() % n:
        raise EigdistError(f"bottom_start must hold whole vectors of n = {n} values (the image's size); "
                         f"got shape {tuple(start.shape)}")
    if not torch.isfinite(start).all():
        raise EigdistError("bottom_start must be finite (it holds NaN or inf)")
    return start.detach().reshape(-1, n)


class NumberError(EigdistError, TypeError):
    """A value that is not the number asked for; also a ``TypeError`` for callers of the synthesis API."""


def validate_number(
    name: str,
    value: Any,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    allow_none: bool = False,
) -> Any:
    """Check that ``value`` is a finite number (an int if ``integer``) inside ``[low, high]``; return it.

    The one number check of eigdist: bools are not numbers, NaN and ±inf are
    refused, ``low_open`` makes the lower bound exclusive (``low=0, low_open=True``
    means > 0). ``None`` passes when ``allow_none``.

    Raises
    ------
    NumberError
        Naming ``name``, the value and what is allowed.
    """
    if value is None and allow_none:
        return None
    kind = "an int" if integer else "a number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"<= {high:g}")
    allowed = f"{kind}{' ' + ' and '.join(bounds) if bounds else ''}"
    types = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, types) or not math.isfinite(value):
        raise NumberError(f"{name} must be {allowed}, got {value!r}")
    if low is not None and (value <= low if low_open else value < low) or high is not None and value > high:
        raise NumberError(f"{name} must be {allowed}, got {value!r}")
    return value


def validate_positive(name: str, value: Any, *, integer: bool = False, allow_none: bool = False) -> Any:
    """Check that ``value`` is a finite number > 0 (an int if ``integer``); ``None`` if allowed."""
    return validate_number(name, value, integer=integer, low=0, low_open=True, allow_none=allow_none)


def validate_dtype(dtype: Any) -> torch.dtype:
    """Check a computation dtype: ``torch.float32`` or ``torch.float64``."""
    import torch

    if dtype not in (torch.float32, torch.float64):
        raise EigdistError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype
