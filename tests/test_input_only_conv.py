"""Convolutions with an input-only backward: the same responses, gradients and J·v, one convolution per J·v."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from eigdist_core.fisher import FisherOperator, _Graph
from eigdist_core.input_only_conv import InputOnlyConvolution
from tests.spectra import explicit_jacobian

CONVOLUTIONS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

#: (dims, in, out, kernel, stride, padding, dilation, groups, size): strided edges that leave rows
#: out (output padding), groups, dilation, anisotropic kernels, and stems (≤ 4 input channels: the
#: sub-pixel form) with strides 1–3, odd sizes and padding wider than the kernel.
GEOMETRIES = [
    (2, 3, 16, 7, 2, 3, 1, 1, 20),
    (2, 1, 16, 7, 2, 3, 1, 1, 19),
    (2, 2, 8, 5, 3, 0, 1, 1, 17),
    (2, 3, 8, (5, 3), 2, (2, 1), 1, 1, 15),
    (2, 3, 8, 3, 2, 4, 1, 1, 10),
    (2, 4, 6, 3, 1, 1, 1, 2, 11),
    (2, 6, 6, 3, 2, 1, 1, 6, 11),
    (2, 2, 4, 3, 1, 0, 2, 1, 11),
    (2, 5, 4, (3, 1), 1, (1, 0), 1, 1, 11),
    (2, 3, 4, 4, 3, 2, 2, 1, 16),
    (1, 3, 5, 4, 2, 1, 1, 1, 11),
    (3, 2, 4, 3, 2, 1, 1, 1, 7),
]


def derivatives(conv, x, w, b, geometry, mode: bool):
    """y, Jᵀu and J·v (by the double-vjp trick) of x ↦ conv(x, w, b), with or without the mode."""
    stride, padding, dilation, groups = geometry
    gen = torch.Generator().manual_seed(1)
    if mode:
        with InputOnlyConvolution() as counter:
            y = conv(x, w, b, stride, padding, dilation, groups)
        assert counter.replaced == 1
    else:
        y = conv(x, w, b, stride, padding, dilation, groups)
    u = torch.randn(y.shape, generator=gen, dtype=y.dtype).requires_grad_(True)
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    g = torch.autograd.grad(y, x, u, create_graph=True)[0]
    return y, g, torch.autograd.grad(g, u, v)[0]


@pytest.mark.parametrize("dims, c_in, c_out, kernel, stride, padding, dilation, groups, size", GEOMETRIES)
@pytest.mark.parametrize("batched", [True, False])
def test_response_gradient_and_jvp_equal_torch_own(dims, c_in, c_out, kernel, stride, padding, dilation, groups, size,
                                                    batched):
    gen = torch.Generator().manual_seed(0)
    kernel = kernel if isinstance(kernel, tuple) else (kernel,) * dims
    w = torch.randn(c_out, c_in // groups, *kernel, generator=gen, dtype=torch.float64)
    b = torch.randn(c_out, generator=gen, dtype=torch.float64)
    shape = (1, c_in) + (size,) * dims if batched else (c_in,) + (size,) * dims
    x = torch.randn(shape, generator=gen, dtype=torch.float64).requires_grad_(True)
    geometry = (stride, padding, dilation, groups)
    ours = derivatives(CONVOLUTIONS[dims], x, w, b, geometry, mode=True)
    torch_own = derivatives(CONVOLUTIONS[dims], x, w, b, geometry, mode=False)
    for a, c in zip(ours, torch_own):
        assert a.shape == c.shape
        assert torch.allclose(a, c, atol=1e-12, rtol=0)


def test_weights_computed_from_the_input_string_padding_and_constant_inputs_pass_through():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 2, 9, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, generator=gen, dtype=torch.float64)
    mode = InputOnlyConvolution()
    with mode:
        dynamic = F.conv2d(x, w * x.mean())  # a filter that depends on the image: its path must be kept
        F.conv2d(x, w, padding="same")
        F.conv2d(x.detach(), w)
    assert mode.replaced == 0
    g = torch.autograd.grad(dynamic.sum(), x)[0]
    assert torch.allclose(g, torch.autograd.grad(F.conv2d(x, w * x.mean()).sum(), x)[0])


def test_parameters_that_require_grad_are_used_and_left_without_grad():
    conv = nn.Conv2d(1, 4, 3).double()  # requires_grad=True, as a lab's own model has it
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    mode = InputOnlyConvolution()
    with mode:
        y = conv(x)
    assert mode.replaced == 1
    y.sum().backward()
    assert conv.weight.grad is None and x.grad is not None


class ConvCounter(TorchDispatchMode):
    """Records the convolution kernels torch runs (forward, transposed, backward) and pixel shuffles."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if "conv" in func.__name__ or "shuffle" in func.__name__:
            self.calls.append(func.__name__)
        return func(*args, **(kwargs or {}))


def two_conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 8, 3)).double().eval()


def counted(fn, *args):
    """fn(*args) and the convolution kernels and pixel shuffles it ran."""
    counter = ConvCounter()
    with counter:
        out = fn(*args)
    return out, counter.calls


def convolutions(calls: list[str]) -> list[str]:
    return [name for name in calls if "conv" in name]


def test_a_fisher_product_runs_one_convolution_per_layer_and_pass():
    """J·v through the recorded graph: one convolution per layer, where torch's own double backward runs
    two; Jᵀu: one transposed convolution per layer. Products equal the explicit JᵀJ·v."""
    net, x = two_conv_net(), torch.rand(1, 1, 16, 16, dtype=torch.float64)
    op = FisherOperator(net, x, dtype=torch.float64)
    v = torch.randn(1, op.n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    u, calls = counted(op._graph.jvp, v)
    assert len(convolutions(calls)) == 2, calls
    plain = _Graph(lambda t: net(t.view(x.shape)).reshape(-1), x.reshape(-1))  # torch's own rules
    plain.prepare_jvp()
    u_plain, calls_plain = counted(plain.jvp, v)
    assert len(convolutions(calls_plain)) == 4 and torch.allclose(u, u_plain, atol=1e-12)
    Fv, calls = counted(op._graph.vjp, u)
    assert len(convolutions(calls)) == 2, calls
    J = explicit_jacobian(net, x)
    assert torch.allclose(Fv[0], J.T @ (J @ v[0]), atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("c_in, stride, subpixel", [(3, 2, True), (1, 2, True), (1, 3, True), (3, 1, False),
                                                    (8, 2, False)])
def test_the_stem_of_a_network_takes_its_transposed_convolution_in_the_subpixel_form(c_in, stride, subpixel):
    """Few input channels, strided: Jᵀu runs a plain convolution and a pixel shuffle, not a transposed one."""
    conv = nn.Conv2d(c_in, 16, 5, stride=stride, padding=2)
    x = torch.randn(1, c_in, 17, 17, requires_grad=True)
    with InputOnlyConvolution():
        y = conv(x)
    u = torch.randn(y.shape, generator=torch.Generator().manual_seed(4))
    g, calls = counted(lambda: torch.autograd.grad(y, x, u)[0])
    assert [name for name in calls if "conv" in name] == ["convolution.default"]
    assert ("pixel_shuffle.default" in calls) == subpixel
    assert torch.allclose(g, torch.autograd.grad(conv(x), x, u)[0], atol=1e-5)
