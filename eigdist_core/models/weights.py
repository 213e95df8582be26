"""Weights values (``imagenet``, ``published``, ``bundled``, ``random:<seed>``, a file): parsing and checks.

Each model family allows some of them; a value a family does not allow is an
error that names the family and lists what it allows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from ..errors import EigdistError

#: Named weights values and what they mean (docs/formats.md, "Model specs"); ``factory``: a
#: ``python:`` model as its factory builds it.
NAMED = ("imagenet", "published", "bundled", "factory")
RANDOM_PREFIX = "random:"


@dataclass(frozen=True)
class Weights:
    """A parsed weights value: ``kind`` is ``named``, ``random`` or ``file``."""

    kind: str
    name: str = ""
    seed: int = 0
    path: Path | None = None


def parse_weights(weights: str, family: str, allowed: tuple[str, ...]) -> Weights:
    """Parse ``weights`` for a model family and check that the family allows it.

    Parameters
    ----------
    weights
        ``imagenet``, ``published``, ``bundled``, ``random:<seed>`` or a file path.
    family
        The family's name, for messages (e.g. ``resnet18`` or ``frontend``).
    allowed
        What the family takes: a subset of :data:`NAMED`, plus ``random`` and/or ``file``.

    Raises
    ------
    ValueError
        For a value the family does not allow, or a seed that is not an integer.
    FileNotFoundError
        For a path (allowed) that is not an existing file.
    """
    if not isinstance(weights, str) or not weights:
        raise EigdistError(f"weights must be a non-empty string; {family} allows {describe(allowed)}; got {weights!r}")
    if weights in NAMED:
        if weights not in allowed:
            raise EigdistError(f"weights {weights!r} are not available for {family}; allowed: {describe(allowed)}")
        return Weights("named", name=weights)
    if weights.startswith(RANDOM_PREFIX):
        if "random" not in allowed:
            raise EigdistError(f"weights {weights!r} are not available for {family}; allowed: {describe(allowed)}")
        text = weights[len(RANDOM_PREFIX):]
        try:
            seed = int(text)
        except ValueError:
            raise EigdistError(f"weights {weights!r}: 'random:<seed>' needs an integer seed, got {text!r}") from None
        return Weights("random", seed=seed)
    if "file" not in allowed:
        raise EigdistError(f"weights {weights!r} are not available for {family}; allowed: {describe(allowed)}")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights {weights!r} for {family}: no such file (allowed: {describe(allowed)})"
        )
    return Weights("file", path=path)


def describe(allowed: tuple[str, ...]) -> str:
    """``('imagenet', 'random', 'file')`` → ``"imagenet | random:<seed> | a file path"``."""
    words = {"random": "random:<seed>", "file": "a file path"}
    return " | ".join(words.get(a, a) for a in allowed)


def load_state_file(path: Path, module: torch.nn.Module, family: str) -> None:
    """Load a state-dict file (``torch.save`` of tensors only) into ``module``, strictly."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise EigdistError(f"weights file {str(path)!r} is not a torch state-dict file: {err}") from None
    if not isinstance(state, dict):
        raise EigdistError(f"weights file {str(path)!r} holds a {type(state).__name__}, not a state dict")
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise EigdistError(f"weights file {str(path)!r} does not fit {family}: {err}") from None


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Run a constructor with torch's global generator at ``seed``, and leave the caller's generator untouched.

    ``random:<seed>`` weights: the same weights every time, and the caller's
    random stream goes on as if nothing had been drawn.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
