"""f(x + δ) − f(x) for a batch of input differences δ, rounded relative to δ rather than to f(x).

A float32 pass of x + δ rounds x + δ at every layer, so f₃₂(x + δ) − f₃₂(x) is off by about the float32
error of f(x) itself however small δ is, and ρ at small α needed float64 passes (4–5 × the cost of a
float32 one). Here the difference is carried through the network's graph instead: an operation linear
in its input (convolution, linear map, eval-mode batch norm, a sum) is applied to the difference alone
in float32, its bias and constants cancelling; any other operation g (ReLU, max pooling, …) gives
g(a + δ) − g(a) in float64 from its input a at x (one float64 pass per image records every a). The
convolutions, nearly all the cost, run in float32, and the rounding of each is relative to the
difference it carries, as in a float32 Jacobian-vector product: the result is f(x + δ) − f(x) to about
1e-6 relative at every amplitude (docs/stimuli.md, "Sensitivities").

Only networks whose graph is known take this path: :class:`~eigdist_core.models.adapter.LayerModel` and
:class:`~eigdist_core.models.adapter.LayerStack` (torch.fx graphs); other models return ``None``.
"""

from __future__ import annotations

import functools
import operator
from typing import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from .models.adapter import LayerModel, LayerStack
from .models.frontend import FrontEnd, filter_valid, gaussian_valid

#: A model: an ``nn.Module`` or any callable from images to outputs (LayerModel, LayerStack and the front ends have a graph).
Model = Callable[[torch.Tensor], torch.Tensor]

#: Functions linear in their tensor arguments taken together, applied to the differences as they are.
_SUMS = {operator.add: 1.0, torch.add: 1.0, operator.sub: -1.0, torch.sub: -1.0}
#: Functions linear in their first argument when the others are constant (the front ends' filters, slicing;
#: F.pad where it pads with zeros or copies the input), applied to the differences with the others in float32.
_FIRST_LINEAR = {filter_valid, gaussian_valid, operator.getitem, F.pad}
#: Products, linear in either argument when the other is constant.
_PRODUCTS = {operator.mul, torch.mul, "mul"}


class Unsupported(ValueError):
    """A graph whose differences this module cannot carry (a value depending on the image that is no tensor)."""


def _graph(model: Model) -> tuple[Callable, fx.GraphModule, list[str | None]] | None:
    """The model's input map, its fx graph and the keys of the graph's outputs it concatenates, or ``None``.

    A front end's graph returns its response itself (key ``None``).
    """
    if type(model) is FrontEnd:
        return _identity, fx.symbolic_trace(model), [None]
    if isinstance(model, LayerStack):
        outputs = model.stack.graph.find_nodes(op="output")[0].args[0]
        return model.deepest.network_input, model.stack, [str(i) for i in range(len(outputs))]
    if isinstance(model, LayerModel):
        return model.network_input, model.extractor, ["out"]
    return None


class DifferencePass:
    """f(x + δ) − f(x) of one model at one image ``x`` (1 × C × H × W, float64), flattened per row.

    ``model64`` is the float64 copy of ``model32`` (:func:`~eigdist_core.sensitivity_values.as_float64`).
    Use :func:`difference_pass`, which returns ``None`` for a model without a known graph.

    ``checked`` is true for the front ends: a centre-surround filter barely responds to some directions
    (a difference of Gaussians has no response to uniform light), and along them float32 filtering loses
    digits (up to 1e-5 relative in s on a 64 px study sample), so their users check each item's float32
    J·v against a float64 one (:func:`~eigdist_core.sensitivity_values.layer_values`).
    """

    def __init__(self, model32: Model, model64: Model, x: torch.Tensor) -> None:
        (self._input64, self._gm64, self._keys), (_, self._gm32, _) = _graph(model64), _graph(model32)
        self._x = x
        self.checked = type(model32) is FrontEnd
        nodes = list(self._gm64.graph.nodes)
        last = {n: i for i, node in enumerate(nodes) for n in node.all_input_nodes}
        self._free = [[n for n in node.all_input_nodes if last[n] == i] for i, node in enumerate(nodes)]
        self._base: dict[fx.Node, object] = {}
        self._single: dict[object, object] = {}
        self._placeholder = next(n for n in nodes if n.op == "placeholder")
        varies = set()
        with torch.no_grad():
            for node in nodes:
                if node.op == "placeholder":
                    self._base[node] = self._input64(x)
                elif node.op != "output":
                    self._base[node] = self._call64(node, lambda n: _clone(self._base[n]))
                if node.op == "placeholder" or any(n in varies for n in node.all_input_nodes):
                    varies.add(node)
                    if node.users and not isinstance(self._base[node], torch.Tensor):
                        raise Unsupported(f"{node.name} depends on the image but is not a tensor")

    def __call__(self, delta: torch.Tensor) -> torch.Tensor:
        """f(x + δ) − f(x) for each row of ``delta`` (b × C × H × W, float64): b × m, float32."""
        with torch.no_grad():
            start = self._input64(self._x + delta) - self._base[self._placeholder]
        return self._run(start.float(), tangent=False)

    def jvp(self, V: torch.Tensor) -> torch.Tensor:
        """J·v at x for each row of ``V`` (b × C × H × W, float64), by the same rules: b × m, float32.

        The linear operations carry the tangent in float32 as they carry a difference; any other operation
        takes its Jacobian-vector product at its input a, in float64 (ReLU: the tangent where a > 0).
        """
        from .fisher import _load_forward_ad_quietly

        _load_forward_ad_quietly()
        x = self._x.expand(len(V), *self._x.shape[1:]).clone()
        return self._run(torch.func.jvp(self._input64, (x,), (V,))[1].float(), tangent=True)

    def _run(self, start: torch.Tensor, tangent: bool) -> torch.Tensor:
        """Carry ``start``, the input's difference (or tangent), through the graph to the output, flattened."""
        env: dict[fx.Node, torch.Tensor | None] = {}
        with torch.no_grad():
            for node, free in zip(self._gm64.graph.nodes, self._free):
                if node.op == "output":
                    out = [node.args[0] if k is None else node.args[0][k] for k in self._keys]
                    return torch.cat([_zeros_if_none(env[n], self._base[n], len(start)).flatten(1) for n in out], dim=1)
                if not node.users:  # a check, run once at x
                    continue
                env[node] = start if node.op == "placeholder" else self._difference(node, env, tangent)
                for n in free:
                    env.pop(n, None)
        raise ValueError("the model's graph has no output")

    def _difference(self, node: fx.Node, env: dict, tangent: bool) -> torch.Tensor | None:
        """The node's difference (or tangent) from those of its inputs (``None``: it does not depend on the image)."""
        inputs = [env[n] for n in node.all_input_nodes]
        if all(d is None for d in inputs):
            return None
        if node.op == "call_module" and not node.kwargs and len(node.args) == 1:
            module = self._gm32.get_submodule(node.target)
            linear = _linear_module(module)
            if linear is not None:
                return linear(env[node.args[0]])
            if _plain_max_pool(module) and not tangent:
                # max over each window of (a − max a) + δ, the window's offsets from its maximum kept in float32:
                # every sum is rounded relative to δ (a value that wins has |a − max a| ≤ 2 max |δ|)
                offsets = self._once((node, "pool"), lambda: (
                    _windows(module, self._base[node.args[0]], -torch.inf) - self._base[node].flatten(2)[:, :, None]
                ).float())
                d = (_windows(module, env[node.args[0]], 0.0) + offsets).amax(dim=2)
                return d.view(len(d), *self._base[node].shape[1:])
        if _first_linear(node) and all(env[n] is None for n in node.all_input_nodes if n is not node.args[0]):
            args, kwargs = fx.node.map_arg((node.args[1:], node.kwargs), self._base32)
            return node.target(env[node.args[0]], *args, **kwargs)
        if node.op in ("call_function", "call_method") and node.target in _PRODUCTS and not node.kwargs \
                and len(node.args) == 2 and sum(isinstance(n, fx.Node) and env[n] is not None for n in node.args) == 1:
            a, b = (env[n] if isinstance(n, fx.Node) and env[n] is not None else None for n in node.args)
            d, other = (a, node.args[1]) if a is not None else (b, node.args[0])
            return d * (self._base32(other) if isinstance(other, fx.Node) else other)
        if node.op == "call_function" and node.target in _SUMS and not node.kwargs and len(node.args) == 2:
            a, b = (env[n] if isinstance(n, fx.Node) else None for n in node.args)
            sign = _SUMS[node.target]
            return a if b is None else sign * b if a is None else a + sign * b
        if _is_relu(node, self._gm32) and not node.kwargs and len(node.args) == 1:
            a, d = self._base32(node.args[0]), env[node.args[0]]
            if tangent:
                return torch.where(a > 0, d, 0.0)
            # relu(a + δ) − relu(a) = max(δ, −a) + min(a, 0): max(δ, −a) where a > 0, else max(a + δ, 0), where
            # a + δ is rounded only where |a| < |δ| (the sign changes), so every value is rounded relative to δ
            negative, low = self._once((node, "relu"), lambda: (-a, a.clamp_max(0)))
            return torch.maximum(d, negative).add_(low)
        varying = [n for n in node.all_input_nodes if env[n] is not None]
        if tangent:  # any other operation g: its Jacobian-vector product at its input, in float64
            def g(*values):
                given = dict(zip(varying, values))
                return self._call64(node, lambda n: given[n] if n in given else _clone(self._base[n]))

            b = len(env[varying[0]])
            primals = tuple(self._base[n].expand(b, *self._base[n].shape[1:]).clone() for n in varying)
            with torch.enable_grad():
                return torch.func.jvp(g, primals, tuple(env[n].double() for n in varying))[1].float()
        # any other operation g: g(a + δ) − g(a), in float64
        full = self._call64(node, lambda n: self._base[n] + env[n].double() if env[n] is not None
                            else _clone(self._base[n]))
        return (full - self._base[node]).float()

    def _base32(self, node: fx.Node) -> torch.Tensor:
        """The node's value at x in float32 (kept once computed)."""
        return self._once(node, lambda: self._base[node].float())

    def _once(self, key, make: Callable[[], object]):
        """``make()``, a value derived from those at x, kept under ``key`` once computed."""
        if key not in self._single:
            self._single[key] = make()
        return self._single[key]

    def _call64(self, node: fx.Node, value: Callable[[fx.Node], object]):
        """Run ``node`` of the float64 graph with each input node's value given by ``value``."""
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), value)
        if node.op == "call_module":
            return self._gm64.get_submodule(node.target)(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        if node.op == "get_attr":
            return functools.reduce(getattr, node.target.split("."), self._gm64)
        raise Unsupported(f"graph node {node.op} {node.target}")


def _linear_module(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The module's map on differences when it is affine in its input (its bias cancels), else ``None``.

    Exact types only: a subclass may compute something else in its ``forward``.
    """
    if type(module) is nn.Conv2d and module.padding_mode == "zeros":
        return lambda d: F.conv2d(d, module.weight, None, module.stride, module.padding, module.dilation,
                                  module.groups)
    if type(module) is nn.Linear:
        return lambda d: F.linear(d, module.weight)
    if type(module) is nn.BatchNorm2d and not module.training and module.running_var is not None:
        scale = torch.rsqrt(module.running_var.double() + module.eps)
        if module.weight is not None:
            scale = scale * module.weight.double()
        scale = scale.float().view(1, -1, 1, 1)
        return lambda d: d * scale
    return None


def _first_linear(node: fx.Node) -> bool:
    """Whether ``node`` calls a function linear in its first argument (a node) when the others are constant."""
    if node.op != "call_function" or node.target not in _FIRST_LINEAR or not isinstance(node.args[0], fx.Node):
        return False
    if node.target is F.pad:  # pad(input, pad, mode="constant", value=None): linear unless it pads with a constant ≠ 0
        mode = node.kwargs.get("mode", node.args[2] if len(node.args) > 2 else "constant")
        return mode != "constant" or not node.kwargs.get("value", node.args[3] if len(node.args) > 3 else None)
    return True


def _plain_max_pool(module: nn.Module) -> bool:
    """Whether ``module`` is a 2-D max pooling whose windows :func:`_windows` lists (exact type, no ceil mode)."""
    return type(module) is nn.MaxPool2d and not module.ceil_mode and not module.return_indices


def _windows(pool: nn.MaxPool2d, x: torch.Tensor, fill: float) -> torch.Tensor:
    """The values of every window of ``pool`` on ``x`` (N × C × H × W), padded with ``fill``: N × C × k × L."""
    rows, cols = _pair(pool.padding)
    x = F.pad(x, [cols, cols, rows, rows], value=fill)
    windows = F.unfold(x, pool.kernel_size, dilation=pool.dilation, stride=pool.stride)
    return windows.view(len(x), x.shape[1], -1, windows.shape[-1])


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _is_relu(node: fx.Node, gm: fx.GraphModule) -> bool:
    """Whether ``node`` is a ReLU (module or function) of ``gm``."""
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)) is nn.ReLU
    return node.op == "call_function" and node.target in (F.relu, torch.relu)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _clone(value):
    """A copy of a tensor (an in-place operation must not change a recorded value); other values as they are."""
    return value.clone() if isinstance(value, torch.Tensor) else value


def _zeros_if_none(delta: torch.Tensor | None, base: torch.Tensor, b: int) -> torch.Tensor:
    return torch.zeros((b, *base.shape[1:]), dtype=torch.float32) if delta is None else delta


def difference_pass(model32: Model, model64: Model, x: torch.Tensor) -> DifferencePass | None:
    """A :class:`DifferencePass` of the model at ``x`` (1 × C × H × W, float64), or ``None`` if its graph is unknown."""
    if _graph(model32) is None or _graph(model64) is None:
        return None
    try:
        return DifferencePass(model32, model64, x)
    except Unsupported:
        return None
