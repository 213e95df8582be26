"""A tiny hand-made stimulus set and a headless session runner, shared by the trial tests.

Run as a script (``python tests/trial_fixtures.py DATA KILL_AT``) it runs one
simulated session and SIGKILLs itself while trial KILL_AT is on screen
(after the answer, before the row is written): the crash the resume test needs.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import replace

import numpy as np

from experiments.config import load_config
from experiments.engine import open_engine, run_headless
from eigdist_core.stimulus_set import SCHEMA_VERSION, seal
from experiments.observers import WeibullObserver

IMAGES = ("parrot", "door", "boats")
LAYERS = ("conv1", "layer2")


def make_manifest(n_images: int = 3, alpha_max: float = 1.0) -> dict:
    """A sealed manifest (``set_id`` from its content) with n_images × 2 layers × 3 directions items (no files)."""
    items = [
        {"item_id": f"{im}__resnet18__{layer}__random_0__{d}0", "image_id": im, "model": "resnet18",
         "layer": layer, "weights": "random:0", "direction": d, "eigenvalue": 1.0, "alpha_displayable_max": 0.8}
        for im in IMAGES[:n_images] for layer in LAYERS for d in ("max", "min", "random")
    ]
    return seal({"schema_version": SCHEMA_VERSION, "alpha_max": alpha_max,
                 "images": [{"image_id": im} for im in IMAGES[:n_images]], "items": items})


#: The set_id of the default :func:`make_manifest` (what :class:`ArraySource` records).
SET_ID = make_manifest()["set_id"]


class ArraySource:
    """A stand-in stimulus set: the manifest above, image(id) and item(id) as small arrays (1 × 8 × 8)."""

    set_id = SET_ID

    def __init__(self) -> None:
        self.manifest = make_manifest()

    def image(self, image_id: str) -> np.ndarray:
        return np.full((1, 8, 8), 0.5, dtype=np.float32)

    def item(self, item_id: str) -> np.ndarray:
        rng = np.random.default_rng(sum(map(ord, item_id)))
        v = rng.standard_normal((1, 8, 8)).astype(np.float32)
        return v / np.linalg.norm(v)


def set_config_toml(name: str, image: str, color: str, *, more_images: tuple[str, ...] = (),
                    more_layers: tuple[str, ...] = ()) -> str:
    """A 16-pixel stimulus-set config of resnet18 conv1 (random weights), exact solver; ``more_images`` and
    ``more_layers`` (resnet18 layer names, random weights) add to its one image and one layer."""
    images = ", ".join(f'"{i}"' for i in (image, *more_images))
    layers = "".join(f'\n[[models]]\nspec = "resnet18:{layer}"\nweights = "random:0"\n' for layer in ("conv1", *more_layers))
    return f"""\
name = "{name}"
images = [{images}]
color = "{color}"
size = 16
value_range = [0.2, 0.8]
alpha_max = 2.0
directions = ["max", "min", "random"]
solver = "exact"
response_points = 3
{layers}"""


def small_config(**changes):
    """The shipped config with few trials, so a session takes well under a second."""
    base = replace(load_config(), per_condition=12, practice=4, break_every=20, images_per_session=2)
    return replace(base, **changes)


def models_config(**options):
    """:func:`small_config` with ``track.kind = "models"`` (defaults of ``[track.models]`` unless given)."""
    from experiments.config import parse_config

    return replace(small_config(), track_kind="models", track_options=parse_config(
        {"track": {"kind": "models", "models": {"n_alpha": 12, "n_k": 12, **options}}}).track_options)


def models_grid(config=None):
    """The models track's grid of :class:`ArraySource`: its items, their ceilings, seeded sensitivities of
    its two layers (log-normal, σ = 1.5, independent per item and layer)."""
    from experiments.design import conditions
    from experiments.model_track import make_grid

    config = config or models_config()
    conds = conditions(make_manifest())
    s = np.exp(1.5 * np.random.default_rng(7).standard_normal((len(conds), len(LAYERS))))
    return make_grid(s, [f"resnet18:{layer} (random:0)" for layer in LAYERS], [c.item_id for c in conds],
                     [c.alpha_ceiling for c in conds], n_alternatives=config.n_alternatives,
                     n_alpha=config.track_options["n_alpha"], n_k=config.track_options["n_k"])


def run_session(data, participant="P01", session=1, *, resume=False, responder=None, config=None, grid=None):
    """Open (or resume) and run one headless session; return the engine (``grid``: a models config's)."""
    responder = responder or WeibullObserver(threshold=0.1, seed=5, observer="weibull;threshold=0.1;seed=5")
    engine = open_engine(ArraySource(), config or small_config(), data, participant, session,
                         observer=responder.observer, calibrated=False, resume=resume, grid=grid)
    with engine.writer:
        run_headless(engine, responder)
    return engine


class KillAt(WeibullObserver):
    """A Weibull observer whose process dies while trial ``kill_at`` is being answered."""

    kill_at: int = 0

    def respond(self, trial, stimuli, session):
        response = super().respond(trial, stimuli, session)
        if trial.trial == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return response


if __name__ == "__main__":  # DATA KILL_AT [models]
    data, kill_at = sys.argv[1], int(sys.argv[2])
    observer = KillAt(threshold=0.1, seed=5, observer="weibull;threshold=0.1;seed=5")
    observer.kill_at = kill_at
    models = sys.argv[3:] == ["models"]
    run_session(data, responder=observer, config=models_config(stop_at=1.0) if models else None,
                grid=models_grid() if models else None)


def write_lab(data, trials) -> list:
    """Write a DataFrame of trial rows (e.g. ``analysis.simulate``) as BIDS sessions with the experiment's writer.

    Returns the trial files, one per (participant, session).
    """
    from experiments.datafile import session_paths, write_trial_file

    files = []
    for (participant, session), rows in trials.groupby(["participant", "session"], sort=True):
        path = session_paths(data, str(participant), int(session)).trials
        write_trial_file(path, rows.drop(columns=["source_file", "source_line"], errors="ignore").to_dict("records"))
        files.append(path)
    return files


def bids_validator():
    """The official BIDS validator (``bids-validator-deno``, the ``test`` extra), or skip the test."""
    import shutil
    from pathlib import Path

    import pytest

    found = shutil.which("bids-validator-deno") or shutil.which("bids-validator-deno",
                                                                 path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip("bids-validator-deno is not installed (pip install -e '.[test]')")
    return found


def validate_bids(folder) -> tuple[list[dict], list[dict]]:
    """Run the official BIDS validator on ``folder``; return its errors and warnings (printed)."""
    import json
    import subprocess

    done = subprocess.run([bids_validator(), "--json", str(folder)], capture_output=True, text=True, timeout=300)
    issues = json.loads(done.stdout)["issues"]["issues"]
    errors = [i for i in issues if i["severity"] == "error"]
    warnings = [i for i in issues if i["severity"] != "error"]
    for issue in issues:
        print(issue["severity"], issue["code"], issue.get("location", ""), issue.get("subCode", "") or "")
    return errors, warnings


def config_text(per_condition: int = 3, feedback: bool = True, task: str = "2afc_ref") -> str:
    """A short session: 1-2 frames per interval at 60 Hz, few trials."""
    return f"""seed = 1
[task]
name = "{task}"
feedback = {str(feedback).lower()}
[timing]
fixation_ms = 16
reference_ms = 16
isi_ms = 16
test_ms = 30
feedback_ms = 16
[trials]
per_condition = {per_condition}
practice = 2
break_every = 6
catch_rate = 0.1
[schedule]
images_per_session = 1
"""
