"""A lab's own models: ``python:<file.py or package.module>:<factory>`` and families registered by entry point.

``python:`` specs name a factory, called with no arguments, that returns an
``nn.Module``. Installed packages register whole families under the entry-point
group :data:`ENTRY_POINT_GROUP`: the entry point's name is the ``<model>`` of a
spec and its object a callable ``load(layer, weights) -> nn.Module`` (with an
optional ``default_weights`` attribute). Both are wrapped in
:class:`ExternalModel`, which checks at every call that the module maps
(N, C, H, W) images to one tensor with N rows, and names the spec, file and
factory when it does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .weights import load_state_file, parse_weights, seeded_init
from ..errors import EigdistError

#: The entry-point group through which installed packages register model families.
ENTRY_POINT_GROUP = "eigdist.models"
#: Weights a ``python:`` model takes: the module as the factory builds it, the factory under a seed, a state dict.
PYTHON_ALLOWED = ("factory", "random", "file")
#: Default weights of ``python:`` models and of families that do not name their own.
FACTORY = "factory"


class ExternalModel(nn.Module):
    """A module from outside eigdist, checked at every call: (N, C, H, W) images in, one tensor with N rows out.

    Parameters
    ----------
    model
        The lab's module.
    source
        How to name it in errors, e.g. ``python:lab.py:make (file lab.py, factory make)``.
    """

    def __init__(self, model: nn.Module, source: str) -> None:
        super().__init__()
        self.model, self.source = model, source

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4:
            raise EigdistError(f"{self.source} takes (N, C, H, W) images; got shape {tuple(image.shape)}")
        out = self.model(image)
        if not isinstance(out, torch.Tensor):
            hint = f" with keys {sorted(out)}" if isinstance(out, dict) else ""
            raise EigdistError(
                f"{self.source} must map (N, C, H, W) images to one tensor; it returned a {type(out).__name__}{hint}"
            )
        if out.ndim == 0 or out.shape[0] != image.shape[0]:
            raise EigdistError(
                f"{self.source} must return one response per image (first dimension N = {image.shape[0]}); "
                f"got shape {tuple(out.shape)}"
            )
        return out


@dataclass(frozen=True)
class PythonTarget:
    """The parts of ``python:<target>:<factory>``; ``is_file``: the target is a file (it ends in ``.py`` or
    holds a path separator), not a dotted module name."""

    target: str
    factory: str
    is_file: bool

    @property
    def source(self) -> str:
        kind = "file" if self.is_file else "module"
        return f"python:{self.target}:{self.factory} ({kind} {self.target}, factory {self.factory})"


def parse_python(layer: str) -> PythonTarget:
    """Split the ``<file.py or package.module>:<factory>`` part of a ``python:`` spec."""
    target, _, factory = layer.rpartition(":")
    if not target or not factory.isidentifier():
        raise EigdistError(
            f"model spec 'python:{layer}' must look like 'python:<path/to/file.py or package.module>:<factory>', "
            "e.g. 'python:lab/models.py:make_model'"
        )
    return PythonTarget(target, factory, is_file=target.endswith(".py") or "/" in target or "\\" in target)


def python_module(parsed: PythonTarget) -> Any:
    """Import the file or module a ``python:`` spec names; errors name the spec and the file or module."""
    if not parsed.is_file:
        try:
            return importlib.import_module(parsed.target)
        except ImportError as err:
            raise EigdistError(f"{parsed.source}: cannot import module {parsed.target!r}: {err}") from None
    path = Path(parsed.target)
    if not path.is_file():
        raise FileNotFoundError(f"{parsed.source}: no such file {str(path)!r} (relative to {Path.cwd()})")
    digest = hashlib.sha256(str(path.resolve()).encode() + path.read_bytes()).hexdigest()[:12]
    name = f"eigdist_user_{path.stem}_{digest}"  # one module per file and content: an edited file is re-run
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise EigdistError(f"{parsed.source}: running {str(path)!r} failed: {type(err).__name__}: {err}") from None
    return module


def load_python(layer: str, weights: str) -> nn.Module:
    """``python:<target>:<factory>`` with weights ``factory``, ``random:<seed>`` or a state-dict file.

    Raises
    ------
    ValueError
        Naming the spec, the file or module and the factory: a missing factory,
        one that fails, or one that returns something other than an ``nn.Module``.
    FileNotFoundError
        For a file that does not exist.
    """
    parsed = parse_python(layer)
    module = python_module(parsed)
    factory = getattr(module, parsed.factory, None)
    if not callable(factory):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise EigdistError(f"{parsed.source}: {parsed.target} has no callable {parsed.factory!r}; it has {', '.join(names) or 'none'}")
    kind = parse_weights(weights, f"python:{layer}", PYTHON_ALLOWED)
    with seeded_init(kind.seed) if kind.kind == "random" else contextlib.nullcontext():
        try:
            model = factory()
        except Exception as err:
            raise EigdistError(f"{parsed.source}: calling {parsed.factory}() failed: {type(err).__name__}: {err}") from None
    if not isinstance(model, nn.Module):
        raise EigdistError(
            f"{parsed.source}: {parsed.factory}() must return a torch.nn.Module mapping (N, C, H, W) images "
            f"to one tensor; it returned a {type(model).__name__}"
        )
    if kind.kind == "file":
        load_state_file(kind.path, model, f"python:{layer}")
    return ExternalModel(model, parsed.source)


def plugin_families() -> dict[str, EntryPoint]:
    """Model families registered by installed packages under :data:`ENTRY_POINT_GROUP`, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_plugin(entry: EntryPoint, layer: str, weights: str | None) -> nn.Module:
    """``<family>:<layer>`` from a registered family: ``load(layer, weights)``, checked and wrapped."""
    where = f"{entry.name}:{layer} (entry point {entry.name} = {entry.value} in group {ENTRY_POINT_GROUP})"
    try:
        loader = entry.load()
    except Exception as err:
        raise EigdistError(f"{where}: cannot load the entry point: {type(err).__name__}: {err}") from None
    if not callable(loader):
        raise EigdistError(f"{where}: the entry point must be a callable load(layer, weights), got {type(loader).__name__}")
    model = loader(layer, weights if weights is not None else plugin_default_weights(entry))
    if not isinstance(model, nn.Module):
        raise EigdistError(f"{where}: load() must return a torch.nn.Module, got {type(model).__name__}")
    return ExternalModel(model, where)


def plugin_default_weights(entry: EntryPoint) -> str:
    """A family's ``default_weights`` attribute, else ``factory``."""
    return str(getattr(entry.load(), "default_weights", FACTORY))

