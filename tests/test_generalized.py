"""Generalized eigendistortions against scipy's dense generalized eigensolver, for linear layers."""

import numpy as np
import pytest
import scipy.linalg
import torch

from eigdist_core.layer_contrasts import GeneralizedEigendistortion
from eigdist_core.errors import EigdistError
from eigdist_core.subspace import REGULARIZATION

N, K = 24, 2


def linear(M: torch.Tensor):
    return lambda x: M @ x


def reference(A: torch.Tensor, B: torch.Tensor, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Top K and bottom K values (descending) and unit vectors (rows) of eigh(AᵀA + εa I, BᵀB + εb I)."""
    FA, FB = (A.T @ A).numpy(), (B.T @ B).numpy()
    shift = [eps * np.linalg.eigvalsh(F)[-1] * np.eye(N) for F in (FA, FB)]
    w, V = scipy.linalg.eigh(FA + shift[0], FB + shift[1])
    order = np.r_[np.arange(N - 1, N - 1 - K, -1), np.arange(K - 1, -1, -1)]
    vectors = V[:, order].T
    return w[order], vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def layers(rank_b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(N + 6, N, generator=gen, dtype=torch.float64)
    B = torch.randn(rank_b, N, generator=gen, dtype=torch.float64)
    if rank_b < N:  # rank-deficient B with as many outputs as inputs
        B = torch.randn(N, rank_b, generator=gen, dtype=torch.float64) @ B / rank_b**0.5
    return A, B


@pytest.mark.parametrize("rank_b, eps", [(N + 10, 0.0), (N + 10, REGULARIZATION), (N - 8, REGULARIZATION)],
                         ids=["full-rank plain", "full-rank regularised", "rank-deficient regularised"])
@pytest.mark.parametrize("method", ["exact", "iterative"])
def test_generalized_eigenpairs_match_scipy_eigh(rank_b, eps, method):
    A, B = layers(rank_b)
    x = torch.rand(N, dtype=torch.float64)
    gen = GeneralizedEigendistortion(x, linear(A), linear(B), dtype=torch.float64)
    gen.synthesize(method=method, k=K, tol=1e-9, regularization=eps)
    values, vectors = reference(A, B, eps)
    assert np.allclose(gen.eigenvalues.numpy(), values, rtol=1e-6, atol=0)
    cos = np.abs(np.sum(gen.eigendistortions.numpy() * vectors, axis=1))
    assert cos.min() >= 0.9999
    assert gen.diagnostics["converged"] and all(d["residual"] <= 1e-9 for d in gen.diagnostics["vectors"])
    rule = gen.diagnostics["regularization"]
    assert rule["epsilon"] == eps and rule["rule"] == ("none" if eps == 0 else "F + epsilon * lambda_max(F) * I")
    if rank_b < N:  # the top ratios live in B's null space: finite only because B is regularised
        assert gen.eigenvalues[0] > 1e5


def test_swapping_the_layers_swaps_top_and_bottom():
    A, B = layers(N - 8)
    x = torch.rand(N, dtype=torch.float64)
    ab = GeneralizedEigendistortion(x, linear(A), linear(B), dtype=torch.float64).synthesize(k=1)
    ba = GeneralizedEigendistortion(x, linear(B), linear(A), dtype=torch.float64).synthesize(k=1)
    assert np.allclose(ab.eigenvalues.numpy(), 1 / ba.eigenvalues.numpy()[::-1], rtol=1e-8)
    assert np.abs(np.sum(ab.eigendistortions.numpy() * ba.eigendistortions.numpy()[::-1], axis=1)).min() > 1 - 1e-8


def test_unregularised_singular_b_is_a_one_line_error():
    A, B = layers(N - 8)
    gen = GeneralizedEigendistortion(torch.rand(N, dtype=torch.float64), linear(A), linear(B), dtype=torch.float64)
    with pytest.raises(EigdistError, match=r"F_B is singular at this image.*use regularization > 0"):
        gen.synthesize(method="exact", regularization=0)


def test_float32_iterative_on_a_network_layer_converges_and_agrees_with_exact():
    gen = torch.Generator().manual_seed(1)
    conv_a = torch.nn.Conv2d(1, 2, 3, padding=1).double()
    conv_b = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 5, padding=2), torch.nn.Tanh()).double()
    image = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    exact = GeneralizedEigendistortion(image, conv_a, conv_b, dtype=torch.float64).synthesize(method="exact")
    it = GeneralizedEigendistortion(image, conv_a, conv_b).synthesize(method="iterative", tol=1e-4)
    assert it.diagnostics["converged"] and it.diagnostics["method"] == "davidson"
    assert it.eigendistortions.shape == (2, 1, 8, 8)
    assert np.allclose(it.eigenvalues.numpy(), exact.eigenvalues.numpy(), rtol=1e-3)


@pytest.mark.parametrize("models, message", [
    ("same", r"layers 0 and 1 are the same model: a layer cannot be compared with itself"),
    ("channels", r"layer 1 cannot take the image of shape \(1, 1, 8, 8\) \(all layers of a comparison see the same "
                 r"image\)"),
])
def test_bad_pairs_are_one_line_errors(models, message):
    conv = torch.nn.Conv2d(1, 2, 3)
    other = conv if models == "same" else torch.nn.Conv2d(3, 2, 3)
    with pytest.raises(EigdistError, match=message) as info:
        GeneralizedEigendistortion(torch.rand(1, 1, 8, 8), conv, other)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "power"}, "method must be one of auto, exact, iterative; got 'power'"),
    ({"regularization": -1.0}, "regularization must be a number >= 0 and <= 1, got -1.0"),
])
def test_bad_settings_are_one_line_errors(kwargs, message):
    gen = GeneralizedEigendistortion(torch.rand(1, 1, 8, 8), torch.nn.Conv2d(1, 2, 3), torch.nn.Conv2d(1, 2, 5))
    with pytest.raises(EigdistError, match=message):
        gen.synthesize(**kwargs)
