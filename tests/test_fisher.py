"""The Fisher operator against explicit JᵀJV."""

import copy

import torch

from eigdist_core.fisher import FisherOperator


def explicit_jacobian(model, image):
    x = image.reshape(-1)
    return torch.autograd.functional.jacobian(lambda v: model(v.view(image.shape)).reshape(-1), x)


def test_products_equal_explicit_jtjv_float64(conv_net, small_image):
    image = small_image.double()
    op = FisherOperator(conv_net, image, dtype=torch.float64)
    jac = explicit_jacobian(copy.deepcopy(conv_net).double(), image)
    V = torch.randn(5, op.n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = (jac.T @ (jac @ V.T)).T
    got = op @ V
    assert torch.allclose(got, expected, atol=1e-8, rtol=0)
    assert op.products == 5


def test_single_vector_and_counter(linear_model):
    op = FisherOperator(linear_model, torch.ones(25), dtype=torch.float64)
    v = torch.zeros(25, dtype=torch.float64)
    v[3] = 1
    M = linear_model.M.weight.double()
    assert torch.allclose(op @ v, M.T @ M @ v, atol=1e-12)
    assert op.products == 1


def test_jacobian_equals_weight_matrix(linear_model):
    op = FisherOperator(linear_model, torch.ones(25))
    assert torch.allclose(op.jacobian(), linear_model.M.weight, atol=1e-6)


def test_jacobian_by_forward_mode_when_outputs_outnumber_inputs():
    from tests.conftest import LinearModel

    model = LinearModel(n=6, m=15)
    op = FisherOperator(model, torch.ones(6))
    assert torch.allclose(op.jacobian(), model.M.weight, atol=1e-6)


def test_float64_does_not_change_callers_model(conv_net, small_image):
    FisherOperator(conv_net, small_image, dtype=torch.float64)
    assert next(conv_net.parameters()).dtype == torch.float32
    assert not any(p.requires_grad for p in conv_net.parameters())
