"""method="exact": closed forms (the seed's linear model) and plenoptic's exact."""

import numpy as np
import pytest
import torch

from eigdist_core.eigendistortion import Eigendistortion
from tests.nets import LinearModel


def test_linear_model_jacobian_eigenvalues_and_null_space():
    model = LinearModel(25, 10)
    eig = Eigendistortion(torch.ones(25), model).synthesize(method="exact", k=3)
    M = model.M.weight.detach().double()
    assert torch.allclose(eig.jacobian.double(), M, atol=1e-6)
    full = torch.linalg.eigvalsh(M.T @ M).flip(0)
    assert torch.allclose(eig.eigenvalues[:3].double(), full[:3], atol=1e-5)
    assert torch.allclose(eig.eigenvalues[3:].double(), full[-3:], atol=1e-5)
    assert eig.eigenindex.tolist() == [0, 1, 2, 22, 23, 24]
    # 25 inputs, 10 outputs: the last eigendistortions lie in M's null space
    bottom = eig.eigendistortions[3:].double()
    assert torch.linalg.vector_norm(bottom @ M.T, dim=1).max() < 1e-5
    assert eig.diagnostics["degenerate"] is True


def test_unit_norm_and_sign_convention(conv_net, small_image):
    eig = Eigendistortion(small_image, conv_net).synthesize(method="exact", k=2)
    d = eig.eigendistortions.reshape(4, -1)
    assert eig.eigendistortions.shape == (4, 1, 12, 12)
    assert torch.allclose(torch.linalg.vector_norm(d, dim=1), torch.ones(4), atol=1e-5)
    idx = d.abs().argmax(dim=1)
    assert (d[torch.arange(4), idx] > 0).all()


def test_degenerate_choice_is_reproducible_and_seeded():
    model = LinearModel(25, 10)
    a = Eigendistortion(torch.ones(25), model).synthesize(method="exact", seed=3).eigendistortions[-1]
    b = Eigendistortion(torch.ones(25), model).synthesize(method="exact", seed=3).eigendistortions[-1]
    c = Eigendistortion(torch.ones(25), model).synthesize(method="exact", seed=4).eigendistortions[-1]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_stop_criterion_is_an_alias_for_tol(conv_net, small_image):
    eig = Eigendistortion(small_image, conv_net).synthesize(method="exact", stop_criterion=1e-3)
    assert all(v["converged"] for v in eig.diagnostics["vectors"])


def test_save_load_round_trip(tmp_path, conv_net, small_image):
    eig = Eigendistortion(small_image, conv_net).synthesize(method="exact", k=2)
    eig.save(tmp_path / "e")
    assert not list((tmp_path / "e").glob("*.pt"))
    back = Eigendistortion.load(tmp_path / "e", conv_net)
    assert torch.equal(back.eigendistortions, eig.eigendistortions)
    assert torch.equal(back.eigenvalues, eig.eigenvalues)
    assert back.diagnostics == eig.diagnostics


def test_load_refuses_another_model(tmp_path, conv_net, small_image):
    from tests.nets import SmallConvNet

    Eigendistortion(small_image, conv_net).synthesize(method="exact").save(tmp_path / "e")
    with pytest.raises(ValueError, match="does not reproduce the response"):
        Eigendistortion.load(tmp_path / "e", SmallConvNet(seed=5))


def test_results_before_synthesize_raise(conv_net, small_image):
    with pytest.raises(RuntimeError, match="call synthesize"):
        Eigendistortion(small_image, conv_net).eigendistortions


def test_exact_matches_plenoptic_exact():
    import plenoptic as po

    from tests.nets import SmoothNet

    net = SmoothNet().double()
    po.remove_grad(net)  # plenoptic's contract; eigdist leaves the model as it is
    net.eval()
    image = torch.rand(1, 1, 10, 10, generator=torch.Generator().manual_seed(2)).double()
    ours = Eigendistortion(image, net, dtype=torch.float64).synthesize(method="exact", k=2)
    assert ours.diagnostics["degenerate"] is False
    theirs = po.Eigendistortion(image, net)
    theirs.synthesize(method="exact", k=2)
    # plenoptic stores every eigenvector for exact; compare ours to its top 2 and bottom 2
    t_vals = theirs.eigenvalues.double()
    t_vecs = theirs.eigendistortions.reshape(t_vals.numel(), -1).double()
    sel = torch.tensor([0, 1, t_vals.numel() - 2, t_vals.numel() - 1])
    assert torch.allclose(ours.eigenvalues, t_vals[sel], rtol=1e-6, atol=1e-10)
    cos = (ours.eigendistortions.reshape(4, -1) * t_vecs[sel]).sum(1).abs()
    assert np.allclose(cos.numpy(), 1.0, atol=1e-6)
