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

Like every process-wide setting eigdist changes (:func:`torch_threads` too), these
are scoped: a library call leaves the process as it found it, also when it
raises; only the ``eigdist`` command (:mod:`eigdist.cli.main`) sets defaults for
its whole process (:func:`process_defaults`). torch is imported where it is used,
so that the command's entry point can import this module and stay instant.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import torch


def device_kind(device: torch.device | str) -> str:
    """``cpu``, or ``cuda: <GPU model>`` for a CUDA device."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return device.type


#: Deterministic cuBLAS needs this workspace setting (read when cuBLAS is first used in a process).
CUBLAS_WORKSPACE = ("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _cuda_settings() -> tuple:
    """(object, attribute, value while eigdist computes on CUDA)."""
    import torch

    return (
        (torch.backends.cudnn, "allow_tf32", False),
        (torch.backends.cuda.matmul, "allow_tf32", False),
        (torch.backends.cudnn, "benchmark", False),
        (torch.backends.cudnn, "deterministic", True),
    )


@contextlib.contextmanager
def reproducible(device: torch.device | str) -> Iterator[None]:
    """Full float32 and deterministic kernels on CUDA while inside; the caller's settings restored after.

    Also sets ``CUBLAS_WORKSPACE_CONFIG`` (if unset) while inside, which deterministic
    cuBLAS needs; it takes effect if cuBLAS was not used yet in this process (the
    ``eigdist`` command sets it for its whole process, see :func:`process_defaults`).
    """
    import torch

    if torch.device(device).type != "cuda":
        yield
        return
    settings = _cuda_settings()
    saved = [getattr(owner, attr) for owner, attr, _ in settings]
    with _environ_default(*CUBLAS_WORKSPACE):
        for owner, attr, wanted in settings:
            setattr(owner, attr, wanted)
        try:
            yield
        finally:
            for (owner, attr, _), was in zip(settings, saved):
                setattr(owner, attr, was)


#: torch threads while a build's group or a sensitivity task is computed (results must not depend on the
#: machine's core count).
THREADS = 1


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch computes with ``count`` threads while inside (results must not depend on the machine's cores);
    the caller's count is restored after."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


@contextlib.contextmanager
def _environ_default(name: str, value: str) -> Iterator[None]:
    """``os.environ[name]`` is ``value`` while inside unless the caller set it; removed after if it was unset."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def process_defaults() -> None:
    """Set the process-wide defaults of the ``eigdist`` command: ``CUBLAS_WORKSPACE_CONFIG`` (unless set), before
    any CUDA work, so that even a model check that runs before the first Fisher product leaves cuBLAS deterministic.

    For the command's entry point only: a library call never changes its caller's process.
    """
    os.environ.setdefault(*CUBLAS_WORKSPACE)
