"""s = vᵀF_m(x)v and the linearity ratio ρ of the items of one image under the layers of one network.

The numbers of the sensitivity table (:mod:`~eigdist_core.sensitivities`, docs/stimuli.md
"Sensitivities"): s_m(v) = ‖J_m v‖² by Jacobian-vector products (batched over the image's items;
difference passes, :mod:`~eigdist_core.difference_pass`, for networks with a graph) and ρ_m(α) = ‖f_m(x + αv) − f_m(x)‖² / (α²·s_m(v)) at every amplitude the experiment can show.
Layers of one network share their passes (:func:`~eigdist_core.models.adapter.stack_layers`): one
forward of the deepest layer gives every layer's response.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

#: Items per batch of Jacobian-vector products.
CHUNK = 16
#: Images per forward pass of ρ: larger batches were no faster (resnet18 maxpool … layer3 stacked, 256 px:
#: 0.66–0.77 s per image in batches of 8 and 32) or slower (128 px: 0.11 s in 8, 0.23–0.66 s in 64), and cost memory.
PASS_BATCH = 8
#: Relative error allowed in ρ where its forward passes run in float32 (docs/stimuli.md, "Sensitivities").
RHO_RTOL = 1e-4
#: Safety factor on the float32 error bound of :func:`_float32_safe` and on the float32 J·v of a checked
#: difference pass.
FLOAT32_MARGIN = 4.0
#: Relative error allowed in the float32 J·v (s) of an item whose difference pass is checked
#: (:attr:`~eigdist_core.difference_pass.DifferencePass.checked`): above it, the item's ρ takes other passes.
DIFFERENCE_RTOL = 1e-6


def pair_values(model, image: np.ndarray, items: np.ndarray, ceilings: Sequence[float],
                alphas: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """s, ρ at ``alphas`` (NaN above each ceiling) and ρ at each ceiling, for every item of one image.

    Parameters
    ----------
    model
        The candidate (an ``nn.Module`` or callable of (N, C, H, W) images), float64 (see :func:`as_float64`).
    image
        C × H × W.
    items
        b × C × H × W unit directions.
    ceilings
        Each item's α ceiling.
    alphas
        The grid.

    Returns
    -------
    s : (b,), rho : (b, K), rho_ceiling : (b,)
        In float64.
    """
    s, rho, rho_c = layer_values(model, None, image, items, ceilings, alphas)
    return s[:, 0], rho[:, 0], rho_c[:, 0]


def layer_values(model, sizes: Sequence[int] | None, image: np.ndarray, items: np.ndarray,
                 ceilings: Sequence[float], alphas: Sequence[float],
                 model32=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pair_values` for L layers whose flattened responses ``model`` concatenates (``sizes``: theirs).

    ``sizes`` ``None`` is one layer, the whole response. ``model32`` is the same model in float32: a network
    whose graph is known then gets s and ρ from difference passes
    (:func:`~eigdist_core.difference_pass.difference_pass`), any other model its ρ passes in float32
    where their error is below :data:`RHO_RTOL` (:func:`_float32_safe`). Returns s (b, L), ρ (b, L, K)
    and ρ at the ceiling (b, L).
    """
    import torch

    from .difference_pass import difference_pass
    from .fisher import FisherOperator

    x = torch.from_numpy(np.asarray(image, dtype=np.float64))[None]
    V = torch.from_numpy(np.asarray(items, dtype=np.float64).reshape(len(items), -1))
    difference = None if model32 is None else difference_pass(model32, model, x)
    float32_jv = None if difference is None else torch.cat(
        [difference.jvp(V[i:i + CHUNK].view(-1, *x.shape[1:])).double() for i in range(0, len(V), CHUNK)])
    if difference is None or difference.checked:
        op = FisherOperator(model, x, dtype=torch.float64)
        jv = torch.cat([op.jvp(V[i:i + CHUNK]) for i in range(0, len(V), CHUNK)])
    else:
        jv = float32_jv
    bounds = np.cumsum([0, *(sizes or [jv.shape[1]])])
    s = _per_layer(jv ** 2, bounds)
    grid = np.asarray(alphas, dtype=np.float64)
    shown = [_shown(grid, c) for c in ceilings]
    which = [(j, a) for j, amps in enumerate(shown) for a in amps]
    # items whose passes the difference pass serves: all, or where its float32 J·v is within DIFFERENCE_RTOL
    served = np.full(len(items), difference is not None)
    if difference is not None and difference.checked:
        with np.errstate(divide="ignore", invalid="ignore"):
            error = np.abs(_per_layer(float32_jv ** 2, bounds) / s - 1)
        served = (FLOAT32_MARGIN * error <= DIFFERENCE_RTOL).all(axis=1)
    fast = np.array([served[j] for j, _ in which], dtype=bool)
    dist2 = np.empty((len(which), len(bounds) - 1))
    if fast.any():
        dist2[fast] = _distances(difference, x, V, [w for w, ok in zip(which, fast) if ok], bounds)
    if not fast.all():
        rest = [w for w, ok in zip(which, fast) if not ok]
        dist2[~fast] = (_distances(_differences(model, x), x, V, rest, bounds) if model32 is None
                        else _mixed_distances(model, model32, x, V, rest, bounds, s))
    rho = np.full((len(items), len(bounds) - 1, len(grid)), np.nan)
    rho_ceiling = np.empty((len(items), len(bounds) - 1))
    owner = np.array([j for j, _ in which])
    amps = np.array([a for _, a in which])
    for j, ceiling in enumerate(ceilings):
        on_grid = int((grid <= ceiling).sum())
        for layer in range(len(bounds) - 1):
            ratio = _ratio(dist2[owner == j, layer], amps[owner == j], s[j, layer])
            rho[j, layer, :on_grid], rho_ceiling[j, layer] = ratio[:on_grid], ratio[-1]
    return s, rho, rho_ceiling


def _shown(grid: np.ndarray, ceiling: float) -> list[float]:
    """The amplitudes an item is shown at: the grid up to its ceiling, then the ceiling unless it is the last of them."""
    amps = [float(a) for a in grid[grid <= ceiling]]
    return amps if amps and amps[-1] == ceiling else [*amps, float(ceiling)]


def _per_layer(values, bounds: np.ndarray) -> np.ndarray:
    """Row sums of ``values`` (rows × concatenated responses) over each layer's columns: rows × L, float64."""
    return np.stack([values[:, lo:hi].sum(dim=1).numpy() for lo, hi in zip(bounds[:-1], bounds[1:])], axis=1)


def _differences(model, x, dtype=None, base=None) -> Callable:
    """δ ↦ f(x + δ) − f(x) by plain passes in ``dtype`` (default float64; x + δ is formed in float64, then
    converted); ``base`` is f(x) flattened when already computed."""
    import torch

    dtype = dtype or torch.float64
    with torch.no_grad():
        base = model(x.to(dtype)).reshape(-1) if base is None else base
    return lambda delta: model((x + delta).to(dtype)).reshape(len(delta), -1) - base


def _distances(differences: Callable, x, V, which: list[tuple[int, float]], bounds: np.ndarray) -> np.ndarray:
    """‖f_l(x + αv_j) − f_l(x)‖² for each (j, α) of ``which`` and layer l, in batches of PASS_BATCH.

    ``differences`` maps a batch of input differences αv (float64) to f(x + αv) − f(x), flattened
    (:func:`_differences`, or a :class:`~eigdist_core.difference_pass.DifferencePass`); float64 out.
    """
    import torch

    out = np.empty((len(which), len(bounds) - 1))
    with torch.no_grad():
        for start in range(0, len(which), PASS_BATCH):
            part = which[start:start + PASS_BATCH]
            amps = torch.tensor([a for _, a in part], dtype=torch.float64)[:, None]
            delta = (amps * V[[j for j, _ in part]]).view(len(part), *x.shape[1:])
            out[start:start + len(part)] = _per_layer(differences(delta).double() ** 2, bounds)
    return out


def _mixed_distances(model, model32, x, V, which: list[tuple[int, float]], bounds: np.ndarray,
                     s: np.ndarray) -> np.ndarray:
    """:func:`_distances` in float32 where :func:`_float32_safe` finds it within :data:`RHO_RTOL`, else in float64."""
    import torch

    with torch.no_grad():
        base = model(x).reshape(-1)
        base32 = model32(x.float()).reshape(-1)
    error = np.sqrt(_per_layer((base32.double() - base)[None] ** 2, bounds)[0])
    owner, amps = np.array([j for j, _ in which], dtype=int), np.array([a for _, a in which])
    single = _float32_safe(amps[:, None] ** 2 * s[owner], error)
    out = np.empty((len(which), len(bounds) - 1))
    if single.any():
        out[single] = _distances(_differences(model32, x, torch.float32, base32), x, V,
                                 [w for w, ok in zip(which, single) if ok], bounds)
        single[single] = _float32_safe(out[single], error)  # a distance below its prediction: checked again
    if not single.all():
        out[~single] = _distances(_differences(model, x, base=base), x, V,
                                  [w for w, ok in zip(which, single) if not ok], bounds)
    return out


def _float32_safe(dist2: np.ndarray, error: np.ndarray) -> np.ndarray:
    """Which rows of squared distances (rows × L) float32 passes give to within :data:`RHO_RTOL` of ρ.

    ``error`` is each layer's ‖f₃₂(x) − f₆₄(x)‖. A float32 distance d = ‖f(x + αv) − f(x)‖ carries two such
    errors, so |Δd| ≲ 2·error and |Δρ|/ρ = 2|Δd|/d ≲ 4·error/d; a row is safe when that bound, times
    :data:`FLOAT32_MARGIN`, is at most :data:`RHO_RTOL` for every layer.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return (FLOAT32_MARGIN * 4 * error / np.sqrt(dist2) <= RHO_RTOL).all(axis=1)


def as_float64(model):
    """A frozen float64 copy of an ``nn.Module`` (a plain callable is returned as it is)."""
    import copy

    import torch

    from .validate import freeze

    return freeze(copy.deepcopy(model).double()) if isinstance(model, torch.nn.Module) else model


def _ratio(dist2: np.ndarray, alphas: np.ndarray, s: float) -> np.ndarray:
    """ρ = dist² / (α²·s); 1 where both are 0 (the prediction "no response" holds), inf where only s is."""
    predicted = alphas ** 2 * s
    with np.errstate(divide="ignore", invalid="ignore"):
        out = dist2 / predicted
    out[(predicted == 0) & (dist2 == 0)] = 1.0
    out[(predicted == 0) & (dist2 > 0)] = np.inf
    return out
