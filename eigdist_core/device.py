"""The compute device: the kind recorded with each result, and the settings that make float32 products reproducible.

On a CPU nothing needs setting. On CUDA two defaults would make products
differ from run to run or lose accuracy:

- TF32: cuDNN convolutions (and, if enabled, matmuls) on Ampere and later GPUs
  round their inputs to 10 mantissa bits, so a float32 Fisher product is only
  good to about 1e-3, coarser than the solvers' tolerance and fatal to a min
  eigendistortion whose Rayleigh quotient is 1e-6 of λ_max.
- cuDNN's autotuner (``benchmark``) and non-deterministic kernels pick
  algorithms by timing, so the same set would get different bytes.

:func:`reproducible` turns both off while eigdist computes and restores the
caller's settings after. Results are then reproducible for one kind of device
(the GPU model), which :func:`device_kind` names in the manifest; another kind
may round differently.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch


def device_kind(device: torch.device | str) -> str:
    """``cpu``, or ``cuda: <GPU model>`` for a CUDA device."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return device.type


#: (object, attribute, value while eigdist computes on CUDA).
_CUDA_SETTINGS = (
    (torch.backends.cudnn, "allow_tf32", False),
    (torch.backends.cuda.matmul, "allow_tf32", False),
    (torch.backends.cudnn, "benchmark", False),
    (torch.backends.cudnn, "deterministic", True),
)


@contextlib.contextmanager
def reproducible(device: torch.device | str) -> Iterator[None]:
    """Full float32 and deterministic kernels on CUDA while inside; the caller's settings restored after.

    Also sets ``CUBLAS_WORKSPACE_CONFIG`` (if unset), which deterministic cuBLAS
    needs; it takes effect if cuBLAS was not used yet in this process.
    """
    if torch.device(device).type != "cuda":
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    saved = [getattr(owner, name) for owner, name, _ in _CUDA_SETTINGS]
    for owner, name, value in _CUDA_SETTINGS:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for (owner, name, _), value in zip(_CUDA_SETTINGS, saved):
            setattr(owner, name, value)
