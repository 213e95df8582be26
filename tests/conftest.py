"""Shared test fixtures. Test helpers are imported one way: ``from tests.<module> import ...``."""

from __future__ import annotations

import pytest
import torch

from tests.nets import LinearModel, SmallConvNet


@pytest.fixture
def one_thread():
    """Small problems: one thread is faster than two on a shared machine, and results depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def linear_model() -> LinearModel:
    return LinearModel()


@pytest.fixture
def conv_net() -> SmallConvNet:
    return SmallConvNet()


@pytest.fixture
def small_image() -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(1, 1, 12, 12, generator=gen)
