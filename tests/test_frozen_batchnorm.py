"""Eval-mode batch norm as an affine map: same responses and products, cheaper derivatives."""

import copy

import pytest
import torch
from torch import nn

from eigdist_core.fisher import FisherOperator
from eigdist_core.frozen_batchnorm import AffineBatchNorm
from tests.spectra import explicit_jacobian


def trained_bn_net(dims: int = 2) -> nn.Module:
    """Conv (or linear) + batch norm with non-trivial running statistics and affine parameters."""
    gen = torch.Generator().manual_seed(0)
    if dims == 2:
        net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2))
    else:
        net = nn.Sequential(nn.Flatten(0), nn.Linear(64, 5), nn.Unflatten(0, (1, 5)), nn.BatchNorm1d(5))
    for bn in (m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.weight.data.copy_(torch.randn(bn.num_features, generator=gen))
        bn.bias.data.copy_(torch.randn(bn.num_features, generator=gen))
    return net.eval().double()


@pytest.mark.parametrize("dims", [2, 1])
def test_eval_batch_norm_is_replaced_with_the_same_response(dims):
    net = trained_bn_net(dims)
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    mode = AffineBatchNorm()
    with mode:
        y = net(x)
    assert mode.replaced == (2 if dims == 2 else 1)
    assert torch.allclose(y, net(x), atol=1e-12, rtol=0)


def test_training_mode_and_no_running_statistics_pass_through():
    x = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    for bn in (nn.BatchNorm2d(3).train(), nn.BatchNorm2d(3, track_running_stats=False).eval()):
        reference = copy.deepcopy(bn)
        mode = AffineBatchNorm()
        with mode:
            y = bn(x)
        assert mode.replaced == 0
        assert torch.allclose(y, reference(x))
        assert all(torch.equal(v, reference.state_dict()[k]) for k, v in bn.state_dict().items())  # stats updated alike


def test_fisher_products_skip_torch_batch_norm_and_equal_explicit_jtjv():
    net = trained_bn_net()
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    op = FisherOperator(net, x, dtype=torch.float64)
    names, todo = set(), [op._graph.y.grad_fn]
    while todo:
        fn = todo.pop()
        names.add(type(fn).__name__)
        todo += [next_fn for next_fn, _ in fn.next_functions if next_fn is not None]
    assert not any("BatchNorm" in name for name in names)
    jac = explicit_jacobian(net, x)
    V = torch.randn(3, op.n, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    expected = (jac.T @ (jac @ V.T)).T
    assert torch.allclose(op @ V, expected, atol=1e-10, rtol=0)
    assert torch.allclose(op @ V[0], expected[0], atol=1e-10, rtol=0)
