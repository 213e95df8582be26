"""The Fisher operator against explicit JᵀJV."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from eigdist_core.eigendistortion import Eigendistortion
from eigdist_core.fisher import GRAPH_BLOCK, FisherOperator
from tests.nets import SmallConvNet
from tests.spectra import explicit_jacobian


pytestmark = pytest.mark.usefixtures("one_thread")


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


def test_solver_blocks_go_through_the_recorded_graph_and_larger_ones_through_vmap(conv_net, small_image, monkeypatch):
    """Blocks of up to GRAPH_BLOCK vectors need no vmap; larger ones take one vmapped pass; both equal JᵀJV."""
    image = small_image.double()
    op = FisherOperator(conv_net, image, dtype=torch.float64)
    jac = explicit_jacobian(copy.deepcopy(conv_net).double(), image)
    V = torch.randn(GRAPH_BLOCK + 1, op.n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    vmapped = []
    monkeypatch.setattr(op, "_vmapped_jvp", lambda block, jvp=op._vmapped_jvp: vmapped.append(len(block)) or jvp(block))
    large = op @ V
    assert vmapped == [GRAPH_BLOCK + 1]
    small = torch.cat([op @ V[:GRAPH_BLOCK], op @ V[GRAPH_BLOCK:]])  # a block of 8 and a block of one
    assert vmapped == [GRAPH_BLOCK + 1]
    assert torch.allclose(small, (jac.T @ (jac @ V.T)).T, atol=1e-10, rtol=0)
    assert torch.allclose(small, large, atol=1e-12, rtol=0)
    assert op.path == "torch.func" and op.products == 2 * (GRAPH_BLOCK + 1)


def test_jacobian_equals_weight_matrix(linear_model):
    op = FisherOperator(linear_model, torch.ones(25))
    assert torch.allclose(op.jacobian(), linear_model.M.weight, atol=1e-6)


def test_jacobian_by_forward_mode_when_outputs_outnumber_inputs():
    from tests.nets import LinearModel

    model = LinearModel(n=6, m=15)
    op = FisherOperator(model, torch.ones(6))
    assert torch.allclose(op.jacobian(), model.M.weight, atol=1e-6)


def test_float64_does_not_change_callers_model(conv_net, small_image):
    FisherOperator(conv_net, small_image, dtype=torch.float64)
    assert next(conv_net.parameters()).dtype == torch.float32


class CountingNet(torch.nn.Module):
    """SmallConvNet that counts its calls in a buffer: its forward writes to its own state."""

    def __init__(self) -> None:
        super().__init__()
        self.net = SmallConvNet()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return self.net(x)


class OldStyleSquare(torch.autograd.Function):
    """x², as an autograd.Function without ``setup_context``: torch.func refuses to trace it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 2 * x * grad


class CustomOpNet(torch.nn.Module):
    """SmallConvNet followed by a custom autograd.Function (or the same square in plain torch)."""

    def __init__(self, custom: bool = True) -> None:
        super().__init__()
        self.net, self.custom = SmallConvNet(), custom

    def forward(self, x):
        y = self.net(x)
        return OldStyleSquare.apply(y) if self.custom else y * y


def test_model_is_never_changed():
    """Mode, requires_grad, .grad, buffers and the global RNG stay as the caller left them."""
    net = torch.nn.Sequential(SmallConvNet(), torch.nn.BatchNorm2d(3), torch.nn.Dropout(0.5))
    net.train()
    image = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.random.get_rng_state()
    eig = Eigendistortion(image, net).synthesize(method="lobpcg", k=2, tol=1e-3)
    eig.synthesize(method="exact", k=2)
    assert all(m.training for m in net.modules())
    assert all(p.requires_grad and p.grad is None for p in net.parameters())
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())  # BatchNorm statistics too
    assert torch.equal(torch.random.get_rng_state(), rng)
    # and the results are those of the model in eval mode
    frozen = copy.deepcopy(net).eval()
    ref = Eigendistortion(image, frozen).synthesize(method="exact", k=2)
    assert torch.allclose(eig.eigenvalues, ref.eigenvalues, rtol=1e-5)


def test_a_model_that_writes_to_its_state_runs_on_plain_autograd_with_the_same_products(small_image):
    net = CountingNet()
    op = FisherOperator(net, small_image.double(), dtype=torch.float64)
    assert op.path == "autograd" and "calls" in op.reason
    ref = FisherOperator(copy.deepcopy(net.net), small_image.double(), dtype=torch.float64)
    assert ref.path == "torch.func" and ref.reason == ""
    V = torch.randn(3, op.n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(op @ V, ref @ V, atol=1e-12, rtol=1e-10)
    assert torch.allclose(op.jacobian(), ref.jacobian(), atol=1e-12)
    eig = Eigendistortion(small_image, net).synthesize(method="exact", k=2)
    assert eig.diagnostics["fisher"]["path"] == "autograd"
    assert not any("Batched" in type(t).__name__ for t in net.buffers())


class CachingNet(CountingNet):
    """CountingNet that also replaces one buffer and adds another in forward (a cached filter, say)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x):
        self.scale = self.scale * 1.0  # a new tensor in the buffer's slot
        self.register_buffer("cache", x.detach().clone())
        return super().forward(x)


@pytest.mark.parametrize("method", ["exact", "lobpcg"])
def test_eigdists_own_calls_leave_a_models_buffers_as_they_were(small_image, method):
    """A counter buffer stays at 0 through the constructor and synthesis; replaced and added buffers come back."""
    net = CachingNet()
    scale = net.scale
    eig = Eigendistortion(small_image, net)
    assert float(net.calls) == 0 and net.scale is scale and not hasattr(net, "cache")
    eig.synthesize(method=method, k=2, tol=1e-3)
    assert float(net.calls) == 0 and set(dict(net.named_buffers())) == {"calls", "scale"}
    ref = Eigendistortion(small_image, copy.deepcopy(net.net)).synthesize(method=method, k=2, tol=1e-3)
    assert torch.allclose(eig.eigenvalues, ref.eigenvalues, rtol=1e-4)
    net(small_image)  # the model itself still counts
    assert float(net.calls) == 1


def test_a_model_torch_func_cannot_trace_falls_back_to_autograd(small_image):
    net = CustomOpNet()
    eig = Eigendistortion(small_image, net).synthesize(method="exact", k=2)
    assert eig.diagnostics["fisher"]["path"] == "autograd"
    assert eig.diagnostics["fisher"]["reason"].startswith("torch.func cannot trace the model")
    ref = Eigendistortion(small_image, CustomOpNet(custom=False)).synthesize(method="exact", k=2)
    assert ref.diagnostics["fisher"]["path"] == "torch.func"
    assert torch.allclose(eig.eigenvalues, ref.eigenvalues, rtol=1e-3, atol=1e-6)


class OnceDifferentiableSquare(OldStyleSquare):
    """x², with a backward that cannot itself be differentiated (the subclass below adds what torch.func needs)."""

    backward = staticmethod(torch.autograd.function.once_differentiable(OldStyleSquare.backward))


class TraceableOnceDifferentiableSquare(OnceDifferentiableSquare):
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def jvp(ctx, tangent):
        (x,) = ctx.saved_tensors
        return 2 * x * tangent


def test_a_once_differentiable_backward_gives_true_products_or_a_clear_error():
    x = torch.rand(6, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) + 0.5
    v = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    op = FisherOperator(lambda t: TraceableOnceDifferentiableSquare.apply(torch.tanh(t)), x, dtype=torch.float64)
    jac = torch.diag(2 * torch.tanh(x) * (1 - torch.tanh(x) ** 2))
    assert op.path == "torch.func"
    assert torch.allclose(op @ v, jac @ jac @ v, atol=1e-12)  # the single vector through vmap, not zeros
    with pytest.raises(ValueError, match=r"torch.func cannot trace the model.*plain autograd cannot take J·v "
                                         r"either.*once_differentiable"):
        FisherOperator(lambda t: OnceDifferentiableSquare.apply(torch.tanh(t)), x, dtype=torch.float64)


def test_a_model_whose_jacobian_is_zero_has_zero_products():
    op = FisherOperator(torch.sign, torch.linspace(-1, 1, 5, dtype=torch.float64), dtype=torch.float64)
    assert torch.equal(op @ torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64))


def test_a_model_that_detaches_its_input_is_refused_before_any_work(small_image):
    class Detaching(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))  # the response requires grad, but not through x

        def forward(self, x):
            return x.detach() * self.w

    with pytest.raises(ValueError, match="does not depend on the image through autograd: the model detaches"):
        FisherOperator(Detaching(), small_image)


PLENOPTIC_REPRODUCER = """
import plenoptic as po, torch
from eigdist_core.eigendistortion import Eigendistortion
torch.set_num_threads(1)
m = po.models.OnOff((31, 31), pretrained=True, cache_filt=True)
po.remove_grad(m)
m.eval()
x = po.data.einstein()[..., :20, :20]
eig = Eigendistortion(x, m)
with torch.no_grad():
    m(x)
eig.synthesize(method="lobpcg", k=1, tol=1e-3)
m(x).sum()
print(eig.diagnostics["fisher"]["path"], float(eig.eigenvalues[0]))
"""


def test_issue_17_reproducer_plenoptic_onoff_does_not_crash():
    """Constructing an Eigendistortion for plenoptic's OnOff used to corrupt it (segfault later): in a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.run([sys.executable, "-c", PLENOPTIC_REPRODUCER], capture_output=True, text=True,
                         timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    path, lam = run.stdout.split()
    assert path == "autograd" and float(lam) > 0


def test_a_forward_that_replaces_data_is_seen_even_when_the_address_comes_back():
    """The snapshot keeps the old storage alive, so a replaced ``.data`` cannot reuse its address."""
    from eigdist_core.model_state import changed_tensors, snapshot

    class Abs(nn.Module):  # plenoptic's Gaussian: self.std.data = self.std.data.abs()
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(1))

        def forward(self, x):
            self.w.data = self.w.data.abs()
            return x * self.w

    model = Abs()
    before = snapshot(model)
    for _ in range(20):  # many replacements: without the alias, one may land on the old address
        model(torch.ones(1))
    assert changed_tensors(model, before) == ["w"]
    assert before[("", "w")][3].data_ptr() != model.w.data_ptr()


def test_ctrl_c_inside_the_transforms_is_raised_not_taken_for_an_untraceable_model(conv_net, small_image, monkeypatch):
    """A KeyboardInterrupt inside torch.func's level bookkeeping comes out as a RuntimeError (the
    interrupt is its context) and leaves the transform stack corrupted: the operator must stop with
    the interrupt, not fall back to autograd and go on (a later torch.func call then failed with
    "vmap: called random operation while in randomness error mode")."""
    def vjp_interrupted(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("layer.key() == TransformType::Vmap INTERNAL ASSERT FAILED")

    monkeypatch.setattr(torch.func, "vjp", vjp_interrupted)
    with pytest.raises(KeyboardInterrupt):
        FisherOperator(conv_net, small_image, dtype=torch.float64)
    monkeypatch.setattr(torch.func, "vjp", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("cannot trace")))
    assert FisherOperator(conv_net, small_image, dtype=torch.float64).path == "autograd"
