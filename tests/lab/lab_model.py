"""A lab's own model, as a file: ``python:lab_model.py:make`` (see docs/models.md)."""

from torch import nn


def make() -> nn.Module:
    """Two colour-blind centre-surround-like channels, random weights (the factory's own init)."""
    return nn.Sequential(nn.Conv2d(1, 2, 5, padding=2), nn.Softplus())


def not_a_module():
    """A factory that returns the wrong thing, for the error test."""
    return "a string"
