"""Iterative solvers (lanczos, lobpcg, power, auto) against exact eigendecompositions."""

from __future__ import annotations

import re

import pytest
import torch

from eigdist_core.eigendistortion import Eigendistortion
from eigdist_core.fisher import FisherOperator
from eigdist_core.solvers import IterativeSettings, solve_exact, solve_iterative
from tests.nets import LinearModel
from tests.spectra import CASES, Spectrum, check_against_exact, exact, net_and_image, operator

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("method", ["lanczos", "lobpcg"])
@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("case", list(CASES))
def test_iterative_matches_exact(case, k, method):
    result = solve_iterative(operator(case), k, IterativeSettings(method, method, tol=1e-3, max_iter=2000))
    check_against_exact(result, exact(case, k), k)
    assert result.method == method


@pytest.mark.parametrize("case", ["conv-1x24x24", "smooth-3x16x16"])
def test_auto_pair_and_float64_products_match_exact(case):
    """The optimised paths (Lanczos top + LOBPCG bottom, float32 or float64 products) agree with exact."""
    reference = exact(case, 1)
    for dtype in (torch.float32, torch.float64):
        result = solve_iterative(operator(case, dtype), 1, IterativeSettings("lanczos", "lobpcg", tol=1e-3))
        check_against_exact(result, reference, 1)
        assert result.method == "lanczos+lobpcg"


def test_degenerate_bottom_is_exacts_null_space_choice():
    """A null space: the min eigendistortions are the seeded block projected onto it, as in exact."""
    op = operator("conv-3x16x16")
    for seed in (0, 7):
        reference = solve_exact(op, 2, seed)
        result = solve_iterative(op, 2, IterativeSettings("lanczos", "lobpcg", tol=1e-6, seed=seed))
        assert result.degenerate and reference.degenerate
        cos = (result.eigenvectors[2:].double() * reference.eigenvectors[2:].double()).sum(1)
        assert cos.min() > 0.9999, cos  # same vectors, same signs, same order


def test_power_is_plenoptics_algorithm_and_reaches_exact():
    eigenvalues = [6.0, 5.0, 3.0, 2.0, 1.0, 0.2]
    op = FisherOperator(Spectrum(eigenvalues), torch.ones(6, dtype=torch.float64), dtype=torch.float64)
    result = solve_iterative(op, 2, IterativeSettings("power", "power", tol=1e-9, max_iter=500))
    assert torch.allclose(result.eigenvalues, torch.tensor([6.0, 5.0, 1.0, 0.2], dtype=torch.float64))
    reference = solve_exact(op, 2)
    cos = (result.eigenvectors * reference.eigenvectors).sum(1).abs()
    assert cos.min() > 1 - 1e-9
    assert result.method == "power" and not result.degenerate
    assert result.diagnostics[0].products == 2 * result.diagnostics[0].iterations + 2


def test_lanczos_stops_once_its_subspace_spans_everything():
    # tol=0 is never met: only the full space (no direction left to add) can end the iteration early
    eigenvalues = [6.0, 5.0, 3.0, 2.0, 1.0, 0.2]
    op = FisherOperator(Spectrum(eigenvalues), torch.ones(6, dtype=torch.float64), dtype=torch.float64)
    result = solve_iterative(op, 1, IterativeSettings("lanczos", "lanczos", tol=0.0, max_iter=50))
    top, bottom = result.diagnostics
    assert top.iterations < 50 and top.products == 6  # each of the 6 directions multiplied once
    assert bottom.iterations < 50 and bottom.products == 0  # the warm start spans everything already
    assert torch.allclose(result.eigenvalues, torch.tensor([6.0, 0.2], dtype=torch.float64))


def test_power_degenerate_bottom_tends_to_the_same_choice():
    op = FisherOperator(LinearModel(25, 10), torch.ones(25), dtype=torch.float64)
    reference = solve_exact(op, 1, seed=3)
    result = solve_iterative(op, 1, IterativeSettings("power", "power", tol=1e-10, max_iter=5000, seed=3))
    assert result.degenerate
    assert float((result.eigenvectors[1] * reference.eigenvectors[1]).sum()) > 1 - 1e-8


@pytest.mark.parametrize("method", ["lanczos", "lobpcg", "power"])
def test_same_seed_same_vectors(method):
    op = operator("smooth-1x24x24")
    a = solve_iterative(op, 2, IterativeSettings(method, method, max_iter=30, seed=5))
    b = solve_iterative(op, 2, IterativeSettings(method, method, max_iter=30, seed=5))
    assert torch.equal(a.eigenvectors, b.eigenvectors)
    assert [d.products for d in a.diagnostics] == [d.products for d in b.diagnostics]


def test_stopping_short_says_so_in_result_and_warning():
    eig = Eigendistortion(*reversed(net_and_image("smooth-1x24x24")))
    with pytest.warns(RuntimeWarning, match=r"lobpcg did not reach tol=1e-08 for eigenindex 0 \(residual"):
        eig.synthesize(method="lobpcg", tol=1e-8, max_iter=3)
    vectors = eig.diagnostics["vectors"]
    assert not any(v["converged"] for v in vectors)
    assert all(v["iterations"] == 3 for v in vectors)


def test_time_budget_stops_the_solver_and_warns():
    eig = Eigendistortion(*reversed(net_and_image("smooth-1x24x24")))
    with pytest.warns(RuntimeWarning, match="did not reach tol"):
        eig.synthesize(method="lanczos", tol=1e-12, time_budget=1e-9)
    assert all(v["iterations"] == 0 for v in eig.diagnostics["vectors"])


def test_diagnostics_count_products_and_time():
    op = operator("smooth-1x24x24")
    result = solve_iterative(op, 1, IterativeSettings("lanczos", "lobpcg", block=4))
    top, bottom = result.diagnostics
    assert top.products > 0 and bottom.products > 0
    assert top.products + bottom.products == op.products
    assert top.products % 4 == 0  # whole blocks of 4
    assert top.seconds > 0 and bottom.seconds > 0


def test_synthesize_auto_uses_exact_when_small_and_the_pair_otherwise(monkeypatch):
    import eigdist_core.eigendistortion as module

    net, image = net_and_image("smooth-1x24x24")
    assert Eigendistortion(image, net).synthesize().diagnostics["method"] == "exact"
    monkeypatch.setattr(module, "EXACT_LIMIT", 0)
    eig = Eigendistortion(image, net).synthesize(k=2)
    assert eig.diagnostics["method"] == "lanczos+lobpcg"
    assert eig.eigendistortions.shape == (4, 1, 24, 24)
    assert eig.eigenindex.tolist() == [0, 1, 574, 575]


def test_unknown_iterative_method_is_refused():
    with pytest.raises(ValueError, match="iterative method must be one of lanczos, lobpcg, power; got 'arnoldi'"):
        solve_iterative(operator("smooth-1x24x24"), 1, IterativeSettings("lanczos", "arnoldi"))


def test_history_records_every_iteration_of_both_phases():
    op = operator("conv-1x24x24")  # degenerate: the bottom is the null-space projection
    result = solve_iterative(op, 1, IterativeSettings("lanczos", "lobpcg", tol=1e-3))
    phases = [h["phase"] for h in result.history]
    assert phases == sorted(phases, key=["top", "bottom"].index) and {"top", "bottom"} == set(phases)
    top = [h for h in result.history if h["phase"] == "top"]
    assert top[-1]["iteration"] == result.diagnostics[0].iterations
    assert top[-1]["residual"] <= 1e-3 < top[0]["residual"]
    assert [h["seconds"] for h in result.history] == sorted(h["seconds"] for h in result.history)
    assert result.history[-1]["products"] <= op.products


# --- every k: a null space smaller than k (issue 17) ------------------------------------------------

METHODS = ["exact", "lanczos", "lobpcg", "power", "auto"]


def _scaled_head(n: int, gains: list[float]):
    """y = x[:len(gains)]·gains: F = diag(gains², 0, …, 0), a null space of n − len(gains)."""
    g = torch.tensor(gains)
    return lambda x: x[: len(gains)] * g.to(x.dtype)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k", [1, 2])
def test_diag_9_4_1_0_every_k(method, k):
    """The issue's F = diag(9, 4, 1, 0): k = 2 must give 9, 4 | 1, 0 with e1…e4 (e3 and e4 used to mix)."""
    eig = Eigendistortion(torch.rand(4), _scaled_head(4, [3.0, 2.0, 1.0])).synthesize(method=method, k=k, max_iter=5000)
    expected = {1: ([9.0, 0.0], [0, 3]), 2: ([9.0, 4.0, 1.0, 0.0], [0, 1, 2, 3])}[k]
    assert torch.allclose(eig.eigenvalues, torch.tensor(expected[0]), atol=1e-5)
    assert eig.eigendistortions.abs().argmax(1).tolist() == expected[1]
    assert (eig.eigendistortions.abs().max(1).values > 1 - 1e-5).all()  # the unit vectors themselves
    assert eig.diagnostics["degenerate"]


def test_k_above_half_the_inputs_is_refused():
    eig = Eigendistortion(torch.rand(4), _scaled_head(4, [3.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= n/2 = 2 \(n = 4 input values\), got k=3"):
        eig.synthesize(k=3)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("gains, null", [([3.0, 2.0, 1.0, 0.5], 2), ([3.0, 2.0, 1.0, 0.5, 0.3], 1)])
def test_k_3_with_a_null_space_of_1_or_2(method, gains, null):
    """k = 3 on six inputs: the bottom is the 3 − d smallest non-null eigenpairs, then the d null directions."""
    eig = Eigendistortion(torch.rand(6, dtype=torch.float64), _scaled_head(6, gains), dtype=torch.float64)
    eig.synthesize(method=method, k=3, tol=1e-9, max_iter=20000)
    squares = [g * g for g in gains] + [0.0] * null
    expected = squares[:3] + squares[3:]
    assert torch.allclose(eig.eigenvalues, torch.tensor(expected, dtype=torch.float64), atol=1e-8)
    idx = eig.eigendistortions.abs().argmax(1).tolist()
    assert idx[: 6 - null] == list(range(6 - null))  # eigenvectors e1, e2, … up to the null part
    exact = Eigendistortion(torch.rand(6, dtype=torch.float64), _scaled_head(6, gains), dtype=torch.float64)
    exact.synthesize(method="exact", k=3)
    cos = (eig.eigendistortions[-null:] * exact.eigendistortions[-null:]).sum(1)
    assert cos.min() > 1 - 1e-8  # the same seeded null directions as exact, same order and sign


class NullConv(torch.nn.Module):
    """3 → 2 channels, same size: on 3 × 3 × 3 images 27 inputs, 18 outputs, a null space of 9."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.Softplus())

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def null_conv():
    image = torch.rand(1, 3, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return NullConv().double(), image


@pytest.mark.parametrize("method", ["lanczos", "lobpcg", "power", "auto"])
def test_conv_net_with_a_null_space_smaller_than_k_matches_exact(method, null_conv):
    """k = 12 > 9 null directions: 3 smallest non-null eigenpairs then the 9 seeded null directions, sorted."""
    net, image = null_conv
    k = 12
    ref = Eigendistortion(image, net, dtype=torch.float64).synthesize(method="exact", k=k)
    eig = Eigendistortion(image, net, dtype=torch.float64).synthesize(method=method, k=k, tol=1e-7, max_iter=20000)
    lam = float(ref.eigenvalues[0])
    assert ref.diagnostics["degenerate"] and eig.diagnostics["degenerate"]
    assert torch.allclose(eig.eigenvalues, ref.eigenvalues, atol=1e-7 * lam)
    bottom = ref.eigenvalues[k:]
    assert (bottom[:3] > 1e-6 * lam).all() and (bottom[3:] <= 1e-6 * lam).all()
    assert (bottom[:-1] >= bottom[1:] - 1e-9 * lam).all()
    cos = (eig.eigendistortions.reshape(2 * k, -1) * ref.eigendistortions.reshape(2 * k, -1)).sum(1).abs()
    assert cos.min() > 1 - 1e-6, cos


def test_orthonormalize_never_grows_a_subspace_past_the_whole_space():
    """A block that spans all n directions cannot grow: the extra rows were rounding noise that broke Rayleigh-Ritz."""
    from eigdist_core.block_iteration import orthonormalize

    S = torch.eye(6, dtype=torch.float64)[:4]
    W = orthonormalize(torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), [S])
    assert W.shape == (2, 6)
    assert torch.allclose(W @ W.T, torch.eye(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(W @ S.T, torch.zeros(2, 4, dtype=torch.float64), atol=1e-12)
    assert orthonormalize(torch.randn(3, 6, dtype=torch.float64), [torch.eye(6, dtype=torch.float64)]).shape == (0, 6)


def _dense_bottom() -> Spectrum:
    """One large eigenvalue over a dense cluster of small ones: a bottom that takes many iterations."""
    values = torch.linspace(1e-3, 2e-2, 199).tolist() + [100.0]
    return Spectrum(values)


@pytest.mark.parametrize("method", ["lobpcg", "lanczos"])
def test_a_bottom_start_near_the_answer_saves_products_and_finds_it(method):
    net = _dense_bottom()
    x = torch.rand(200, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    cold = Eigendistortion(x, net, dtype=torch.float64).synthesize(method=method, k=1, tol=1e-6, max_iter=5000)
    truth = torch.linalg.eigh(net.M.T @ net.M).eigenvectors[:, 0]
    nudge = 0.01 * torch.randn(200, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    warm = Eigendistortion(x, net, dtype=torch.float64).synthesize(method=method, k=1, tol=1e-6, max_iter=5000,
                                                                   bottom_start=truth + nudge)
    cold_products, warm_products = cold.result.diagnostics[1].products, warm.result.diagnostics[1].products
    assert warm_products < cold_products / 3, (warm_products, cold_products)
    assert warm.result.diagnostics[1].converged
    assert float(warm.eigenvalues[1]) == pytest.approx(1e-3, rel=1e-2)
    assert abs(float(warm.eigendistortions[1] @ truth)) > 0.999


@pytest.mark.parametrize("start, error, message", [
    (torch.ones(7), ValueError, r"bottom_start must hold whole vectors of n = 200 values.*got shape \(7,\)"),
    (torch.ones(0), ValueError, r"bottom_start must hold whole vectors"),
    (torch.full((200,), float("nan")), ValueError, r"bottom_start must be finite"),
    (torch.ones(200, dtype=torch.int64), TypeError, r"bottom_start must be a float tensor.*got Tensor"),
    ([0.0] * 200, TypeError, r"bottom_start must be a float tensor.*got list"),
])
def test_a_bad_bottom_start_is_refused_with_its_shape(start, error, message):
    eig = Eigendistortion(torch.rand(200, dtype=torch.float64), _dense_bottom(), dtype=torch.float64)
    with pytest.raises(error, match=message):
        eig.synthesize(method="lobpcg", bottom_start=start)


def test_power_refuses_a_bottom_start():
    eig = Eigendistortion(torch.rand(200, dtype=torch.float64), _dense_bottom(), dtype=torch.float64)
    with pytest.raises(ValueError, match="bottom_start needs lanczos, lobpcg or chebyshev at the bottom"):
        eig.synthesize(method="power", bottom_start=torch.ones(200))


# --- a zero Fisher matrix, a bottom that cannot be told from null, power's order -----------------------------


class DeadReLU(torch.nn.Module):
    """A conv layer whose ReLU is dead at every pixel of a [0, 1] image: J = 0 (``scale`` shrinks a live one)."""

    def __init__(self, bias: float = -100.0, scale: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 3, 3, padding=1)
        torch.nn.init.constant_(self.conv.bias, bias)
        self.scale = scale

    def forward(self, x):
        return self.scale * torch.relu(self.conv(x))


@pytest.mark.parametrize("model", [DeadReLU(), DeadReLU(bias=0.5, scale=1e-20)], ids=["dead", "underflow"])
def test_a_zero_fisher_matrix_gives_every_method_the_same_zeros(small_image, model):
    """Dead (J = 0) or so small that float32 products underflow: zeros, degenerate, the same vectors, a warning."""
    results = {}
    for method in METHODS:
        with pytest.warns(RuntimeWarning, match=r"the Fisher matrix is 0 at this image .* every direction is null"):
            eig = Eigendistortion(small_image, model).synthesize(method=method, k=2)
        assert torch.equal(eig.eigenvalues, torch.zeros(4)) and eig.diagnostics["degenerate"]
        assert all(v["converged"] for v in eig.diagnostics["vectors"])
        results[method] = eig.eigendistortions.reshape(4, -1)
    for method, vectors in results.items():
        assert torch.equal(vectors, results["exact"]), method
    assert torch.allclose(vectors @ vectors.T, torch.eye(4), atol=1e-6)  # orthonormal


def test_resnet18_layer2_bottom_below_the_tolerance_is_possibly_degenerate():
    """Its Jacobian at a 64 × 64 camera crop has an exact 70-dimensional null space; LOBPCG's bottom at tol 1e-4
    (1.6e-6·λ_max) cannot be told from 0, and the result must say so."""
    from eigdist_core import models
    from eigdist_core.images import load_image

    image = load_image("camera", size=64)[None]
    model = models.load("resnet18:layer2", "random:0")
    with pytest.warns(RuntimeWarning, match=r"lanczos\+lobpcg: possibly degenerate: the bottom eigenvalue .*·λ_max "
                                            r"cannot be told from 0 at tol=0.0001 \(residual"):
        eig = Eigendistortion(image, model).synthesize()  # auto: the Jacobian is too large for exact
    lam = eig.eigenvalues
    assert float(lam[1]) <= 1e-4 * float(lam[0])
    assert eig.diagnostics["degenerate"] and eig.diagnostics["possibly_degenerate"]


def test_power_stopped_short_returns_sorted_pairs_and_names_the_unconverged(small_image, conv_net):
    with pytest.warns(RuntimeWarning, match=r"power did not reach tol=0.0001 for eigenindex 0 .*eigenindex 143") \
            as caught:
        eig = Eigendistortion(small_image, conv_net).synthesize(method="power", k=3, max_iter=3)
    lam = eig.eigenvalues
    assert (lam[:2] >= lam[1:3]).all() and (lam[3:5] >= lam[4:]).all(), lam  # the bottom used to come unsorted
    vectors = eig.diagnostics["vectors"]
    assert torch.allclose(torch.tensor([v["rayleigh"] for v in vectors], dtype=lam.dtype), lam)
    message = next(str(w.message) for w in caught if "did not reach" in str(w.message))
    named = {int(i) for i in re.findall(r"eigenindex (\d+)", message)}
    assert named == {int(i) for i, v in zip(eig.eigenindex, vectors) if not v["converged"]}


@pytest.mark.parametrize("method", ["lanczos", "lobpcg", "power"])
def test_a_bottom_within_tol_of_zero_is_possibly_degenerate_and_a_smaller_tol_resolves_it(method):
    """F with eigenvalues 1e-5 and 0.1 … 1: at tol 1e-4 the bottom cannot be told from 0; at 1e-8 it can."""
    net = Spectrum([1e-5] + torch.linspace(0.1, 1.0, 19).tolist())
    x = torch.rand(20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning, match=rf"{method}: possibly degenerate: the bottom eigenvalue .*·λ_max cannot be "
                                            r"told from 0 at tol=0.0001"):
        loose = Eigendistortion(x, net, dtype=torch.float64).synthesize(method=method, tol=1e-4, max_iter=5000)
    assert loose.diagnostics["degenerate"] and loose.diagnostics["possibly_degenerate"]
    tight = Eigendistortion(x, net, dtype=torch.float64).synthesize(method=method, tol=1e-8, max_iter=20000)
    assert not tight.diagnostics["degenerate"] and not tight.diagnostics["possibly_degenerate"]
    assert float(tight.eigenvalues[1]) == pytest.approx(1e-5, rel=1e-3)
