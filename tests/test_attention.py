"""Easy catch trials measure attention, not the model: through the real trial engine and the analysis.

A linear model observer f(x) = J x sees each layer's ``max`` direction with λ = 1 and its ``min``
direction with λ = 1e-6 (λ_max/λ_min = 10⁶): at the ceiling (α 0.8) a min direction moves f by
8e-4, far below the noise σ = 0.02, so it is invisible below the ceiling, exactly what a good
model predicts. Two visits of one image, 30 tracked trials per condition and visit, 40 % catch
trials, all easy: ≈ 240 easy catches per observer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.exclusions import ExclusionRules, apply_exclusions, attention_catches
from analysis.load import load_trials
from eigdist_core.stimulus_set import seal
from experiments.engine import EASY_MIN_TRIALS, open_engine, run_headless
from experiments.observers import ModelObserver
from tests.trial_fixtures import make_manifest, small_config

LAMBDA = {"max": 1.0, "min": 1e-6}
NOISE = 0.02


class LinearSet:
    """One image (1 × 8 × 8), two layers: max and min items orthonormal, random items random."""

    def __init__(self) -> None:
        manifest = make_manifest(n_images=1)
        for item in manifest["items"]:
            item["eigenvalue"] = LAMBDA.get(item["direction"])
        self.manifest = seal({k: v for k, v in manifest.items() if k != "set_id"})
        self.set_id = self.manifest["set_id"]
        basis = np.linalg.qr(np.random.default_rng(0).standard_normal((64, 64)))[0].T
        self.items, rows = {}, []
        for i, item in enumerate(it for it in self.manifest["items"] if it["direction"] != "random"):
            self.items[item["item_id"]] = basis[i]
            rows.append(np.sqrt(item["eigenvalue"]) * basis[i])
        for item in self.manifest["items"]:
            if item["direction"] == "random":
                v = np.random.default_rng(len(self.items)).standard_normal(64)
                self.items[item["item_id"]] = v / np.linalg.norm(v)
        self.jacobian = np.array(rows, dtype=np.float32)

    def image(self, image_id: str) -> np.ndarray:
        return np.full((1, 8, 8), 0.5, dtype=np.float32)

    def item(self, item_id: str) -> np.ndarray:
        return self.items[item_id].reshape(1, 8, 8).astype(np.float32)

    def model(self, x):
        import torch

        return x.flatten(1) @ torch.as_tensor(self.jacobian).T


def _run(source: LinearSet, data, participant: str, lapse: float, seed: int) -> None:
    config = small_config(per_condition=60, visits_per_image=2, images_per_session=1, practice=0,
                          catch_rate=0.4, easy_fraction=1.0)
    spec = f"model=linear;noise={NOISE};lapse={lapse};seed={seed}"
    observer = ModelObserver("linear", noise=NOISE, lapse=lapse, seed=seed, observer=spec, model=source.model)
    for session in (1, 2):
        engine = open_engine(source, config, data, participant, session, observer=spec, calibrated=True)
        with engine.writer:
            run_headless(engine, observer)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> pd.DataFrame:
    """Four attentive model observers (P01–P04) and one who answers at random on 30 % of trials (P05)."""
    data = tmp_path_factory.mktemp("data")
    source = LinearSet()
    for p in range(1, 5):
        _run(source, data, f"P{p:02d}", lapse=0.0, seed=p)
    _run(source, data, "P05", lapse=0.3, seed=5)
    return load_trials([data])


def test_min_directions_are_invisible_below_the_ceiling(lab):
    tracked = lab[~lab["is_catch"] & (lab["participant"] != "P05")]
    at_top = tracked[(tracked["direction"] == "min") & (tracked["alpha"] >= 0.5 * tracked["alpha_ceiling"])]
    assert len(at_top) > 300 and at_top["correct"].mean() < 0.6     # a coin flip up to the ceiling
    assert tracked.loc[tracked["direction"] == "max", "alpha"].median() < 0.2 * 0.8  # max: far below it


def test_easy_catches_are_visible_by_construction_and_attentive_observers_stay(lab):
    easy = lab[lab["catch_type"] == "easy"]
    assert (easy["direction"] == "max").all()                      # never a min or random direction
    scored = attention_catches(lab)
    per_participant = lab[scored].groupby("participant")["correct"].agg(["mean", "size"])
    assert (per_participant["size"] >= 150).all()
    # scored: below the ceiling, so easy_factor × a data-based estimate; the rest sit at the ceiling
    assert (easy.loc[~scored[easy.index], "alpha"] == easy.loc[~scored[easy.index], "alpha_ceiling"]).all()
    attentive = per_participant.drop(index="P05")
    assert (attentive["mean"] >= 0.95).all(), attentive
    assert per_participant.loc["P05", "mean"] < 0.9
    _, excluded = apply_exclusions(lab, ExclusionRules())         # the default floor 0.9
    assert set(excluded["participant"]) == {"P05"}
    assert excluded["reason"].str.startswith("easy-catch accuracy").all()


def test_an_easy_catch_waits_for_a_track_with_data(lab):
    """The first easy catches of each max track (fewer than EASY_MIN_TRIALS tracked trials before them)
    show the ceiling and are not scored: the prior is not an estimate of this observer."""
    first = lab[lab["session"] == 1].sort_values(["participant", "trial"])
    seen = first[~first["is_catch"]].groupby(["participant", "layer", "direction"]).cumcount()
    first = first.assign(before=seen.reindex(first.index)).sort_values(["participant", "trial"])
    first["before"] = first.groupby(["participant", "layer", "direction"])["before"].transform(
        lambda s: s.ffill().fillna(-1) + 1)
    early = first[(first["catch_type"] == "easy") & (first["before"] < EASY_MIN_TRIALS)]
    assert len(early) > 0 and (early["alpha"] == early["alpha_ceiling"]).all()
    assert not attention_catches(early).any()
