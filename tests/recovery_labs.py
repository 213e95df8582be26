"""Simulated labs for the model comparison's recovery and calibration checks (benchmarks/bench_recovery.py, tests).

Two kinds of lab:

- :func:`engine_lab`: model observers (``experiments.observers.ModelObserver``, the additive-noise observer
  of ``eigdist run --simulate model=...``) seeing through one layer of a stimulus set, each running one
  session through the experiment's own trial engine without a window (``experiments.engine.run_headless``,
  QUEST+ tracks, trial files written and read back as rows).
- :func:`weibull_lab`: Weibull observers (``analysis.simulate``) on a synthetic sensitivity table with many
  images, cheap enough for hundreds of labs; the two candidates of :func:`perturbed_pair` are equally good
  by construction.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.simulate import simulate_trials
from eigdist_core.contract import L2_MODEL, TRACK_KEY

#: The recovery set: four front ends and a convolutional block at 32 × 32, three images (45 items).
SET_TOML = """\
name = "recovery"
seed = 0
images = ["camera", "coffee", "chelsea"]
color = "grey"
size = 32
value_range = [0.2, 0.8]
alpha_max = 4.0
directions = ["max", "min", "random"]
k = 1
solver = "auto"
tol = 1e-4
max_iter = 1000
response_points = 3
""" + "".join(f'\n[[models]]\nspec = "{spec}"\nweights = "{w}"\n' for spec, w in (
    ("frontend:ln", "published"), ("frontend:lg", "published"), ("frontend:lgg", "published"),
    ("frontend:onoff", "published"), ("efficientnet_lite0:_blocks.1", "bundled")))
#: The additive-noise observer's threshold at the true layer's median item, in units of α (the items' ceilings
#: lie between 0.4 and 10.6, most near 2.5).
MEDIAN_THRESHOLD = 1.0
#: The same for the mixture labs: at 1.0 the ½ ln + ½ lgg readout is not linear in α where it is tested
#: (‖ΔR‖²/(α² s) 0.59–1.19 across items at their linear-theory thresholds, 13 of 45 of which lie above the
#: item's displayable maximum), so its thresholds do not follow ½ s_ln + ½ s_lgg; at 0.25: 0.86–1.07, 1 of 45
#: (docs/analysis.md, recovery through the engine). 0.25 is still 2/255 rms per pixel at 32 × 32.
MIXTURE_THRESHOLD = 0.25
#: √(2·√12·Φ⁻¹(¾)) = 1.53: in 2afc_ref with N noisy units of σ, the target wins at 75 % when
#: ‖Δf‖² = Φ⁻¹(¾)·√(12N)·σ² (the squared-distance difference has variance 12Nσ⁴ + 8σ²‖Δf‖²).
DPRIME_FACTOR = 1.53
#: The engine labs' observers answer at random on this share of trials.
LAPSE = 0.02


def build_set(folder: Path) -> Path:
    """The recovery set in ``folder`` (built once, about a minute; reused while its manifest is there)."""
    if not (folder / "manifest.json").exists():
        from eigdist.cli.main import main as cli

        folder.parent.mkdir(parents=True, exist_ok=True)
        config = folder.parent / f"{folder.name}.toml"
        config.write_text(SET_TOML.replace('name = "recovery"', f'name = "{folder.name}"'))
        if cli(["stimuli", "build", str(config), "--out", str(folder), "--quiet"]) != 0:
            raise RuntimeError(f"building {config} failed")
    return folder


class CachedSource:
    """A stimulus set whose image and item arrays are read from disk once (the engine reads them every trial)."""

    def __init__(self, source) -> None:
        self.manifest, self.set_id, self._source, self._arrays = source.manifest, source.set_id, source, {}

    def image(self, image_id: str) -> np.ndarray:
        return self._get("image", image_id)

    def item(self, item_id: str) -> np.ndarray:
        return self._get("item", item_id)

    def _get(self, kind: str, name: str) -> np.ndarray:
        if (kind, name) not in self._arrays:
            self._arrays[kind, name] = getattr(self._source, kind)(name)
        return self._arrays[kind, name]


class Readout:
    """What a model observer sees: the responses of its layers, layer m's times √c_m, concatenated (so its s is
    Σ c_m s_m where the layers are linear), each stimulus's response computed once: the tracks show α on a
    grid, so the same stimuli recur across trials, observers and labs, and the model is deterministic."""

    def __init__(self, models: list, gains: list[float]) -> None:
        self.models, self.gains, self._memo = models, gains, {}
        self.units = 0  # the response's size, set by EngineLab.readout

    def __call__(self, x):
        import torch

        key = (tuple(x.shape), x.numpy().tobytes())
        if key not in self._memo:
            self._memo[key] = torch.cat([m(x).flatten(1) * c ** 0.5 for m, c in zip(self.models, self.gains)], 1)
        return self._memo[key]


@dataclass
class EngineLab:
    """A stimulus set opened once, its sensitivity table, and the loaded models observers may see through."""

    source: object
    sens: pd.DataFrame
    models: dict
    readouts: dict = field(default_factory=dict)

    @classmethod
    def open(cls, folder: Path) -> "EngineLab":
        from eigdist_core.sensitivities import read_table
        from eigdist_core.stimulus_set import StimulusSet

        source = StimulusSet.open(folder)
        return cls(CachedSource(source), pd.DataFrame(read_table(folder, source.manifest)), {})

    def model(self, spec: str):
        if spec not in self.models:
            from eigdist_core import models

            weights = self.sens.loc[(self.sens["model"] + ":" + self.sens["layer"]) == spec, "weights"].iloc[0]
            self.models[spec] = models.load(spec, weights)
        return self.models[spec]

    def readout(self, shares: dict[str, float], threshold: float = MEDIAN_THRESHOLD) -> tuple[Readout, float]:
        """The readout of the layers ``shares`` names and its σ (the readout built once per ``shares``).

        Layer m gets c_m ∝ share_m / g_m (g_m the geometric mean of its s over the set; c = 1 for the first),
        so at an item where every s_m is at its g_m, layer m gives share_m of s = Σ c_m s_m (the mixture fit's
        share, analysis.mixture). σ puts the threshold of the set's median item at ``threshold`` (see
        :data:`DPRIME_FACTOR`; N = the readout's units).
        """
        key = tuple(shares.items())
        if key not in self.readouts:
            import torch

            s = self.layer_s(list(shares))
            g = np.exp(np.log(s.where(s > 0)).mean())
            first = next(iter(shares))
            gains = [(share / shares[first]) * (g[first] / g[spec]) for spec, share in shares.items()]
            readout = Readout([self.model(spec) for spec in shares], gains)
            image = self.source.manifest["images"][0]["image_id"]
            with torch.no_grad():
                readout.units = readout(torch.as_tensor(self.source.image(image))[None]).numel()
            median = float((s * gains).sum(axis=1).median())
            self.readouts[key] = readout, np.sqrt(median) / (DPRIME_FACTOR * readout.units ** 0.25)
        readout, sigma = self.readouts[key]
        return readout, threshold * sigma

    def layer_s(self, specs: list[str]) -> pd.DataFrame:
        """s of every item (rows) under each layer ``model:layer`` of ``specs`` (columns)."""
        return self.sens.assign(spec=self.sens["model"] + ":" + self.sens["layer"]).pivot_table(
            index="item_id", columns="spec", values="s")[specs]

    def mixed_s(self, shares: dict[str, float]) -> pd.Series:
        """s = Σ c_m s_m of every item: what the readout of ``shares`` sees where its layers are linear."""
        return (self.layer_s(list(shares)) * self.readout(shares)[0].gains).sum(axis=1)


def readout_linearity(lab: EngineLab, shares: dict[str, float], threshold: float) -> tuple[np.ndarray, int]:
    """ρ = ‖R(x + α_T e) − R(x)‖²/(α_T² s) of each item at its linear-theory threshold α_T (s = Σ c_m s_m, the
    d' of :data:`DPRIME_FACTOR` at the readout's σ), and how many α_T lie above the item's displayable maximum.
    ρ = 1 at every item: the observers' thresholds follow s."""
    import torch

    readout, sigma = lab.readout(shares, threshold)
    s = lab.mixed_s(shares)
    rho, above = [], 0
    with torch.no_grad():
        for item in lab.source.manifest["items"]:
            x = torch.as_tensor(lab.source.image(item["image_id"]))[None]
            e = torch.as_tensor(lab.source.item(item["item_id"]))[None]
            r0 = readout(x)
            alpha = DPRIME_FACTOR * sigma * r0.numel() ** 0.25 / np.sqrt(s[item["item_id"]])
            above += alpha > item["alpha_displayable_max"]
            rho.append(float(((readout(x + alpha * e) - r0).double() ** 2).sum()) / (alpha ** 2 * s[item["item_id"]]))
    return np.array(rho), above


def correct_probability(distance: np.ndarray, noise: np.ndarray, units: int, lapse: float = LAPSE) -> np.ndarray:
    """P(correct) of the 2afc_ref model observer whose target's noise-free response lies ``distance`` from the
    reference's, N = ``units`` units of noise σ = ``noise``: Φ(d²/√(12Nσ⁴ + 8σ²d²)), the squared-distance
    difference being nearly normal with that mean and variance (:data:`DPRIME_FACTOR`); lapses answer at random."""
    from scipy import stats

    z = distance ** 2 / np.sqrt(12.0 * units * noise ** 4 + 8.0 * noise ** 2 * distance ** 2)
    return (1.0 - lapse) * stats.norm.cdf(z) + 0.5 * lapse


def expected_correct(lab: EngineLab, shares: dict[str, float], trials: pd.DataFrame, law: bool) -> np.ndarray:
    """Each engine-lab trial's probability of a correct answer for its observer (σ read from its ``observer``
    spec): at the response distance it saw (``repr_distance``), or, with ``law``, at α√s, s = Σ c_m s_m (the
    distance of an observer whose readout is linear, so that its thresholds follow the mixture exactly)."""
    units = lab.readout(shares)[0].units
    noise = trials["observer"].str.extract(r"noise=([^;]+)")[0].astype(float).to_numpy()
    if not law:
        return correct_probability(trials["repr_distance"].to_numpy(dtype=float), noise, units)
    s = lab.mixed_s(shares).reindex(trials["item_id"]).to_numpy()
    return correct_probability(trials["alpha"].to_numpy(dtype=float) * np.sqrt(s), noise, units)


def engine_lab(lab: EngineLab, true: str | dict[str, float], *, observers: int, per_condition: int, seed: int,
               root: Path, spread: float = 0.2, threshold: float = MEDIAN_THRESHOLD) -> pd.DataFrame:
    """Trial rows of ``observers`` model observers, one session each, seeing through ``true``: one layer
    (``model:layer``) or several, {layer: share} (:meth:`EngineLab.readout`).

    Each observer's σ is the readout's σ (the median item's threshold at ``threshold``) times a log-normal
    factor (sd ``spread``); lapse :data:`LAPSE`. Sessions have no practice and no catch trials (the comparison scores
    main trials only) and show every image, ``per_condition`` QUEST+ trials per item.
    """
    from experiments.config import load_config
    from experiments.engine import open_engine, run_headless
    from experiments.observers import ModelObserver

    shares = {true: 1.0} if isinstance(true, str) else true
    name = true if isinstance(true, str) else "+".join(f"{share:g}*{spec}" for spec, share in shares.items())
    readout, sigma = lab.readout(shares, threshold)
    config = replace(load_config(), per_condition=per_condition, practice=0, catch_rate=0.0,
                     images_per_session=len(lab.source.manifest["images"]), seed=seed)
    rng = np.random.default_rng(seed)
    data = root / f"lab{seed}"
    rows = []
    try:
        for p in range(observers):
            noise = sigma * float(np.exp(rng.normal(0.0, spread)))
            spec = f"model={name};noise={noise:.6g};lapse={LAPSE:g};seed={seed * 1000 + p}"
            observer = ModelObserver(name, noise=noise, lapse=LAPSE, seed=seed * 1000 + p, observer=spec, model=readout)
            engine = open_engine(lab.source, config, data, f"P{p + 1:02d}", 1, observer=spec, calibrated=True)
            with engine.writer:
                rows += run_headless(engine, observer)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return pd.DataFrame(rows)


def with_copy(sens: pd.DataFrame, spec: str, weights: str = "copy") -> pd.DataFrame:
    """The table with layer ``spec`` listed a second time under other weights (the same s)."""
    copy = sens[(sens["model"] + ":" + sens["layer"]) == spec].assign(weights=weights)
    return pd.concat([sens, copy], ignore_index=True)


def synthetic_items(n_images: int, per_image: int, spread: float, rng: np.random.Generator) -> pd.DataFrame:
    """Items of a synthetic set (condition columns, ``item_id``) with the true layer's ln s ~ N(0, spread²)."""
    rows = [(f"img{j}", "syn", f"i{q}", "w", "max") for j in range(n_images) for q in range(per_image)]
    items = pd.DataFrame(rows, columns=list(TRACK_KEY[1:]))
    items["item_id"] = items["image_id"] + "__syn__" + items["layer"] + "__w__max"
    items["ln_s"] = rng.normal(0.0, spread, len(items))
    return items


def perturbed_pair(items: pd.DataFrame, size: float, rng: np.random.Generator) -> pd.DataFrame:
    """Sensitivity table of two candidates, the true layer's ln s plus independent N(0, size²) noise each, and L2."""
    frames = [pd.DataFrame({"item_id": items["item_id"], "model": "pert", "layer": name, "weights": "none",
                            "s": np.exp(items["ln_s"] + rng.normal(0.0, size, len(items)))}) for name in ("a", "b")]
    frames.append(pd.DataFrame({"item_id": items["item_id"], "model": L2_MODEL[0], "layer": L2_MODEL[1],
                                "weights": L2_MODEL[2], "s": 1.0}))
    return pd.concat(frames, ignore_index=True)


def weibull_lab(items: pd.DataFrame, *, observers: int, trials: int, seed: int,
                spread: float = 0.2) -> pd.DataFrame:
    """Constant-stimulus trials of Weibull observers whose threshold is 0.3·c_p/√s (c_p log-normal, sd ``spread``)."""
    rng = np.random.default_rng(seed)
    factor = np.exp(rng.normal(0.0, spread, observers))
    truth = pd.concat([items.assign(participant=f"p{p:02d}", threshold=0.3 * factor[p] * np.exp(-0.5 * items["ln_s"]))
                       for p in range(observers)], ignore_index=True)
    return simulate_trials(truth[[*TRACK_KEY, "threshold"]], n_trials=trials, seed=seed, alpha_max=1e6)
