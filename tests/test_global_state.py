"""Library calls leave the process as they found it (issue 33): torch's flags and threads, the environment,
the umask, the random streams, warning filters, signal handlers, logging levels and PsychoPy's monitor globals.

One process runs a build, a synthesis, the settings every Fisher product on a GPU runs under, and a
session (a window's PsychoPy monitor and a headless session), each after a caller that set every one
of those to something other than its default; after each, the state must be the caller's again. Only
the CLI (``eigdist/cli``) may set process-wide defaults.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import signal
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch
import torchvision.models  # noqa: F401 (the model zoo's import sets TORCHINDUCTOR_CACHE_DIR and a sympy warning
# filter: once per process, torch's import and not a call of eigdist's, so it comes before the first snapshot)

from tests.nets import SmallConvNet
from tests.trial_fixtures import run_session, set_config_toml

#: (object, attribute, the test's caller's value) of torch's process-wide backend flags: each the opposite of
#: what eigdist's GPU settings (:mod:`eigdist_core.device`) want, so a scope that did not restore shows.
TORCH_FLAGS = (
    (torch.backends.cudnn, "enabled", True), (torch.backends.cudnn, "benchmark", True),
    (torch.backends.cudnn, "deterministic", False), (torch.backends.cudnn, "allow_tf32", True),
    (torch.backends.cuda.matmul, "allow_tf32", True), (torch.backends.mkldnn, "enabled", True),
)
#: How the snapshot names each flag's owner.
OWNERS = {id(torch.backends.cudnn): "cudnn", id(torch.backends.cuda.matmul): "cuda.matmul",
          id(torch.backends.mkldnn): "mkldnn"}


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def _loggers() -> dict[str, tuple]:
    """(level, disabled, propagate, handlers) of every logger set to anything but a new logger's defaults."""
    loggers = {"": logging.root} | {n: lg for n, lg in logging.root.manager.loggerDict.items()
                                     if isinstance(lg, logging.Logger)}
    state = {n: (lg.level, lg.disabled, lg.propagate, len(lg.handlers)) for n, lg in loggers.items()}
    return {n: s for n, s in state.items() if n == "" or s != (logging.NOTSET, False, True, 0)}


def _psychopy() -> dict[str, object]:
    """PsychoPy's console level and the plain module globals of its monitors (``monitorFolder``, …)."""
    from psychopy import logging as psychopy_logging
    from psychopy.monitors import calibTools

    plain = (str, int, float, bool, type(None))
    return {"console level": psychopy_logging.console.level,
            **{f"calibTools.{k}": v for k, v in vars(calibTools).items()
               if not k.startswith("_") and isinstance(v, plain)}}


def snapshot() -> dict[str, object]:
    """Every piece of process-wide state a library call could leave changed, by name."""
    umask = os.umask(0o022)
    os.umask(umask)
    state: dict[str, object] = {f"torch.backends.{OWNERS[id(owner)]}.{name}": getattr(owner, name) for owner, name, _ in TORCH_FLAGS}
    state |= {
        "torch deterministic algorithms": (torch.are_deterministic_algorithms_enabled(),
                                           torch.is_deterministic_algorithms_warn_only_enabled()),
        "torch threads": torch.get_num_threads(), "torch float32 matmul precision": torch.get_float32_matmul_precision(),
        "torch default dtype": torch.get_default_dtype(), "torch grad enabled": torch.is_grad_enabled(),
        "torch random state": _digest(torch.random.get_rng_state().numpy()),
        "numpy random state": _digest(np.random.get_state()[1]), "python random state": hash(random.getstate()),
        "umask": oct(umask), "cwd": os.getcwd(), "sys.path": list(sys.path), "warning filters": list(warnings.filters),
        "signal handlers": {s.name: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)},
    }
    state |= {f"os.environ[{k!r}]": v for k, v in os.environ.items()}
    state |= {f"logger {n!r}": s for n, s in _loggers().items()}
    state |= {f"psychopy {k}": v for k, v in _psychopy().items()}
    return state


def changes(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """``name: before → after`` for each entry that differs (``<unset>`` where one side lacks it)."""
    return [f"{key}: {before.get(key, '<unset>')!r} → {after.get(key, '<unset>')!r}"
            for key in sorted(before.keys() | after.keys()) if before.get(key, "<unset>") != after.get(key, "<unset>")]


@pytest.fixture
def unusual_caller(tmp_path, monkeypatch) -> Iterator[None]:
    """A caller whose settings are nobody's defaults (so "restore" cannot pass as "reset"), put back after."""
    from experiments.psychopy_home import import_psychopy

    import_psychopy()
    from psychopy import logging as psychopy_logging
    from psychopy.monitors import calibTools

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "recorded")  # so that undo also removes a value a leak leaves
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    monkeypatch.setenv("EIGDIST_CALLER_VARIABLE", "kept")
    monkeypatch.setattr(calibTools, "monitorFolder", str(tmp_path / "caller-monitors"))
    console, threads, umask = psychopy_logging.console.level, torch.get_num_threads(), os.umask(0o027)
    flags = [getattr(owner, name) for owner, name, _ in TORCH_FLAGS]
    psychopy_logging.console.setLevel(psychopy_logging.DEBUG)
    torch.set_num_threads(threads + 1)
    for owner, name, value in TORCH_FLAGS:
        setattr(owner, name, value)
    np.random.seed(20261207)
    try:
        yield
    finally:
        psychopy_logging.console.setLevel(console)
        torch.set_num_threads(threads)
        os.umask(umask)
        for (owner, name, _), value in zip(TORCH_FLAGS, flags):
            setattr(owner, name, value)


def _build(tmp_path: Path) -> None:
    from eigdist_core.build import build_set

    (tmp_path / "set.toml").write_text(set_config_toml("state", "camera", "grey"))
    build_set(tmp_path / "set.toml", tmp_path / "set", progress=False)


def _synthesis(model: torch.nn.Module, image: torch.Tensor) -> None:
    from eigdist_core.eigendistortion import Eigendistortion

    Eigendistortion(image, model).synthesize(method="lobpcg", k=1, tol=1e-3, max_iter=50)


def _gpu_settings() -> None:
    """The scope every Fisher product on a CUDA device runs under (entered without a GPU: it only sets flags)."""
    from eigdist_core.device import reproducible

    with reproducible("cuda"):
        pass


def _session(tmp_path: Path) -> None:
    from experiments.psychopy_monitors import quiet_monitor

    quiet_monitor("state")  # what a session's window gets
    run_session(tmp_path / "data")


def test_library_calls_leave_process_state_as_found(unusual_caller, tmp_path):
    model = SmallConvNet()  # seeds torch's generator itself: made before the caller's state is taken
    image = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    steps: dict[str, Callable[[], None]] = {
        "build_set": lambda: _build(tmp_path),
        "Eigendistortion.synthesize": lambda: _synthesis(model, image),
        "device.reproducible('cuda')": _gpu_settings,
        "session (quiet_monitor, run_headless)": lambda: _session(tmp_path),
    }
    before = snapshot()
    assert before["torch threads"] != 1 and before["umask"] == oct(0o027)  # the caller's, not a default
    leaks = []
    for name, step in steps.items():
        step()
        after = snapshot()
        leaks += [f"{name} changed {change}" for change in changes(before, after)]
        before = after
    assert not leaks, "\n".join(leaks)


def test_changes_names_what_differs():
    """The comparison itself: a changed, an added and a removed entry are each named."""
    assert changes({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ["b: 2 → 3", "c: '<unset>' → 4"]
    assert changes({"a": 1}, {}) == ["a: 1 → '<unset>'"]
