"""Principal distortions: the two-layer closed form and a dense optimiser over the whole space, for linear layers."""

import json
import math

import jsonschema
import numpy as np
import pytest
import torch
from scipy.fft import dctn
from scipy.optimize import minimize

from eigdist_core.layer_contrasts import GeneralizedEigendistortion, PrincipalDistortion
from eigdist_core.cosine_start import cosine_start
from eigdist_core.errors import EigdistError
from eigdist_core.io import json_bytes
from eigdist_core.stimulus_set import manifest_schema
from eigdist_core.subspace import REGULARIZATION, SCALE_TOL, Scales, regularization_record

N = 12


def linear_layers(count: int, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(N + 3, N, generator=gen, dtype=torch.float64) for _ in range(count)]


def models(mats):
    return [(lambda M: lambda x: M @ x)(M) for M in mats]


def dense_optimum(mats: list[torch.Tensor], restarts: int = 30) -> float:
    """max over (a, b) of Var_m[log aᵀF_m a − log bᵀF_m b], F_m regularised, by BFGS from random starts."""
    F = []
    for M in mats:
        f = (M.T @ M).numpy()
        F.append(f + REGULARIZATION * np.linalg.eigvalsh(f)[-1] * np.eye(N))
    F = np.stack(F)

    def negative(z):  # −V and its gradient (V is the same for every scale of a and of b)
        a, b = z[:N], z[N:]
        Fa, Fb = F @ a, F @ b
        s_a, s_b = Fa @ a, Fb @ b
        c = np.log(s_a) - np.log(s_b)
        c -= c.mean()
        grad = np.concatenate([(c / s_a) @ Fa, -(c / s_b) @ Fb]) * 4 / len(c)
        return -np.mean(c**2), -grad

    rng = np.random.default_rng(0)
    return max(-minimize(negative, rng.standard_normal(2 * N), jac=True, method="BFGS", options={"gtol": 1e-10}).fun
               for _ in range(restarts))


@pytest.mark.parametrize("method", ["exact", "iterative"])
def test_two_layers_give_the_top_and_bottom_generalized_eigenvectors(method):
    A, B = linear_layers(2)
    x = torch.rand(N, dtype=torch.float64)
    pd = PrincipalDistortion(x, models([A, B]), dtype=torch.float64).synthesize(method=method, tol=1e-6)
    gen = GeneralizedEigendistortion(x, *models([A, B]), dtype=torch.float64).synthesize(method="exact", k=1)
    cos = np.abs(np.sum(pd.principal_distortions.numpy() * gen.eigendistortions.numpy(), axis=1))
    assert cos.min() >= 0.9999  # a is the top, b the bottom (the first layer sees a best)
    lam = gen.eigenvalues.numpy()
    assert pd.objective == pytest.approx(np.log(lam[0] / lam[1]) ** 2 / 4, rel=1e-8)
    assert pd.diagnostics["converged"]


@pytest.mark.parametrize("count", [3, 5])
@pytest.mark.parametrize("method", ["exact", "iterative"])
def test_m_layers_reach_the_dense_optimum(count, method):
    mats = linear_layers(count, seed=count)
    pd = PrincipalDistortion(torch.rand(N, dtype=torch.float64), models(mats), dtype=torch.float64)
    pd.synthesize(method=method, tol=1e-6)
    assert pd.objective == pytest.approx(dense_optimum(mats), rel=1e-4)
    d = pd.diagnostics
    assert d["converged"] and max(d["residuals"]) <= 1e-6
    logs = np.array(d["log_sensitivities"])  # a is the change the first layer sees best relative to the rest
    r = logs[:, 0] - logs[:, 1]
    assert r[0] >= r.mean()
    assert np.allclose(np.linalg.norm(pd.principal_distortions.numpy(), axis=1), 1)


@pytest.mark.parametrize("count, method", [(2, "exact"), (3, "subspace")])
def test_auto_is_exact_only_for_the_two_layer_closed_form(count, method):
    """Three or more layers have no closed form: ``auto`` iterates (``exact`` optimises over all n dimensions)."""
    pd = PrincipalDistortion(torch.rand(N, dtype=torch.float64), models(linear_layers(count)), dtype=torch.float64)
    assert pd.synthesize(method="auto", tol=1e-6).diagnostics["method"] == method


def test_iterative_records_an_objective_trace_that_rises():
    mats = linear_layers(4, seed=7)
    pd = PrincipalDistortion(torch.rand(N, dtype=torch.float64), models(mats), dtype=torch.float64)
    pd.synthesize(method="iterative", tol=1e-6)
    trace = [h["objective"] for h in pd.result.history]
    assert len(trace) == pd.result.iterations + 1
    assert trace[-1] == pytest.approx(pd.objective, rel=1e-9)
    assert all(later >= earlier * (1 - 1e-9) for earlier, later in zip(trace, trace[1:]))
    assert pd.result.products > 0


@pytest.mark.parametrize("layers, message", [
    (1, r"a comparison needs at least 2 layers; got 1"),
    ("same", r"layers 0 and 2 are the same model: a layer cannot be compared with itself"),
])
def test_bad_layer_lists_are_one_line_errors(layers, message):
    convs = [torch.nn.Conv2d(1, 2, 3), torch.nn.Conv2d(1, 2, 5)]
    given = convs[:1] if layers == 1 else [*convs, convs[0]]
    with pytest.raises(EigdistError, match=message):
        PrincipalDistortion(torch.rand(1, 1, 8, 8), given)


@pytest.mark.parametrize("shape, count", [((1, 1, 64, 64), 21), ((12,), 6), ((1, 3, 8, 10), 30)])
def test_cosine_start_is_an_orthonormal_grid_of_modes(shape, count):
    X = cosine_start(shape)
    assert X.shape == (count, int(np.prod(shape)))
    assert torch.allclose(X @ X.T, torch.eye(count, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(X[0], torch.full_like(X[0], X[0, 0]))  # the mean first, the same in every channel


def test_layers_diagonal_in_the_cosine_basis_converge_at_the_first_solve():
    """Two layers blind to one corner mode each ((0, 0) and (7, 7), both on the grid): the start holds the answer."""
    shape = (1, 1, 8, 8)
    basis = torch.from_numpy(dctn(np.eye(64).reshape(64, 8, 8), norm="ortho", axes=(1, 2)).reshape(64, 64)).T
    gains = torch.ones(2, 64, dtype=torch.float64)
    gains[0, 63], gains[1, 0] = 1e-3, 1e-3
    layers = [(lambda g: lambda x: g * (basis @ x.reshape(-1)))(g) for g in gains]
    pd = PrincipalDistortion(torch.rand(shape, dtype=torch.float64), layers, dtype=torch.float64)
    pd.synthesize(method="iterative", tol=1e-8)
    assert pd.result.iterations == 0 and pd.diagnostics["converged"]
    modes = cosine_start(shape)
    cos = (pd.result.vectors.abs() @ modes.abs().T).max(1).values
    assert cos.min() > 1 - 1e-9


@pytest.mark.parametrize("smallest, largest_norm", [(-10, 4), (-12, 4), (-16, 6)])
def test_orthonormalize_keeps_nearly_dependent_rows_of_very_different_norms_orthonormal(smallest, largest_norm):
    """A thick restart's columns: B-normalised Ritz vectors (norms up to 10⁴ where F_B is near its floor), nearly
    dependent. One SVQB pass left S Sᵀ − I at 10⁻² to 1 (three front-end layers at 16 px: H_B then had eigenvalues
    below the regularisation, and Cholesky failed with "F_B is singular")."""
    from eigdist_core.block_iteration import orthonormalize

    gen = torch.Generator().manual_seed(0)
    base = torch.randn(20, 200, generator=gen, dtype=torch.float64)
    U, _, Vh = torch.linalg.svd(torch.randn(20, 20, generator=gen, dtype=torch.float64))
    W = (U * torch.logspace(0, smallest, 20, dtype=torch.float64)) @ Vh @ base
    W = W * torch.logspace(0, largest_norm, 20, dtype=torch.float64)[:, None]
    Q = orthonormalize(W, [])
    assert Q.shape[0] >= 8
    assert (Q @ Q.T - torch.eye(Q.shape[0], dtype=torch.float64)).abs().max() < 1e-12
    residual = W - (W @ Q.T) @ Q  # Q spans W's strong directions
    assert torch.linalg.vector_norm(residual, dim=1).max() < 1e-6 * torch.linalg.vector_norm(W, dim=1).max()


def regularised(mats: list[torch.Tensor]) -> list[np.ndarray]:
    F = [(M.T @ M).numpy() for M in mats]
    return [f + REGULARIZATION * np.linalg.eigvalsh(f)[-1] * np.eye(len(f)) for f in F]


@pytest.mark.parametrize("count", [2, 3])
def test_residual_is_the_backward_error_that_makes_each_vector_stationary(count):
    """η = ‖g‖ / Σ|c_m| ‖F_m‖/s_m; δF_m = −η‖F_m‖ sign(c_m)(u aᵀ + a uᵀ) zeroes the gradient g at a, keeps every s_m;
    for two layers η is the generalized eigenpair's normwise backward error."""
    mats = linear_layers(count, seed=11)
    pd = PrincipalDistortion(torch.rand(N, dtype=torch.float64), models(mats), dtype=torch.float64)
    pd.synthesize(method="iterative", tol=1e-12, max_iter=1)  # stopped early: residuals well above rounding
    F = regularised(mats)
    norms = np.array([np.linalg.eigvalsh(f)[-1] for f in F])
    vectors = pd.result.vectors.numpy()
    for index, sign in ((0, 1), (1, -1)):
        v, w = vectors[index], vectors[1 - index]
        s, t = np.array([v @ f @ v for f in F]), np.array([w @ f @ w for f in F])
        c = sign * (np.log(s) - np.log(t))
        c -= c.mean()
        g = sum(cm * f @ v / sm for cm, f, sm in zip(c, F, s))
        eta = np.linalg.norm(g) / np.sum(np.abs(c) * norms / s)
        # the solver's ‖F_m‖ is its Lanczos λ_max, a Rayleigh quotient at residual ≤ SCALE_TOL: exact to ≈ SCALE_TOL²
        assert pd.result.residuals[index] == pytest.approx(eta, rel=10 * SCALE_TOL**2)
        assert eta > 1e-8
        u = g / np.linalg.norm(g)
        perturbed = [f - eta * n * np.sign(cm) * (np.outer(u, v) + np.outer(v, u)) for f, n, cm in zip(F, norms, c)]
        assert [np.linalg.norm(p - f, 2) for p, f in zip(perturbed, F)] == pytest.approx(eta * norms, rel=1e-9)
        assert [v @ p @ v for p in perturbed] == pytest.approx(s, rel=1e-9)
        stationary = sum(cm * p @ v / sm for cm, p, sm in zip(c, perturbed, s))
        assert np.linalg.norm(stationary) <= 1e-9 * np.linalg.norm(g)
        if count == 2:
            lam = s[0] / s[1]
            pair = np.linalg.norm(F[0] @ v - lam * F[1] @ v) / (norms[0] + lam * norms[1])
            assert eta == pytest.approx(pair, rel=1e-9)


@pytest.mark.parametrize("kind", ["generalized", "principal"])
def test_a_lambda_max_stopped_by_the_time_budget_says_so(kind):
    """The regularisation's λ_max estimates share the solve's deadline: a budget spent before they reach SCALE_TOL leaves
    lower bounds, and the record flags them (residual per layer, lambda_max_converged false)."""
    mats = [torch.randn(40, 30, generator=torch.Generator().manual_seed(i), dtype=torch.float64) for i in range(3)]
    x = torch.rand(30, dtype=torch.float64)

    def solve(budget):
        if kind == "generalized":
            comp = GeneralizedEigendistortion(x, *models(mats[:2]), dtype=torch.float64)
        else:
            comp = PrincipalDistortion(x, models(mats), dtype=torch.float64)
        return comp.synthesize(method="iterative", time_budget=budget, max_iter=3).result.regularization

    short = solve(1e-9)
    assert short["lambda_max_converged"] is False
    assert all(r > SCALE_TOL for r in short["lambda_max_residual"])
    exact = [np.linalg.eigvalsh((M.T @ M).numpy())[-1] for M in mats[:len(short["lambda_max"])]]
    assert all(lam < top * (1 - 1e-3) for lam, top in zip(short["lambda_max"], exact))  # lower bounds, far off
    full = solve(None)
    assert full["lambda_max_converged"] is True and max(full["lambda_max_residual"]) <= SCALE_TOL
    assert full["lambda_max"] == pytest.approx(exact, rel=10 * SCALE_TOL**2)  # a Rayleigh quotient: ≈ residual²


def test_the_regularisation_record_writes_non_finite_values_as_null():
    """NaN (not estimated) and ±inf alike become null, which the manifest's JSON and its schema accept."""
    record = regularization_record(0.1, Scales([2.0, math.nan, math.inf], [0.0, -math.inf, math.nan]))
    assert record["lambda_max"] == [2.0, None, None] and record["lambda_max_residual"] == [0.0, None, None]
    assert json.loads(json_bytes(record)) == record  # json_bytes refuses NaN and ±inf
    jsonschema.validate(record, manifest_schema()["$defs"]["item"]["properties"]["contrast"]["properties"]
                        ["regularization"])
