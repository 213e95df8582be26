"""Stimulus sets for tests: a one-image grey set (module fixture), a tiny one written by hand, and the fingerprint
that compares builds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eigdist_core.io import load_json, save_npy, sha256_file
from eigdist_core.stimulus_set import alpha_displayable, compute_build_id, item_id_for, write_manifest
from tests.trial_fixtures import set_config_toml


def fingerprint(folder: Path) -> dict:
    """Every file's sha256 (temporary files included) and the manifest without its ``created``.

    Two builds of one config must have equal fingerprints whatever the jobs, executor or interruptions.
    """
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != "build.log"}
    manifest = load_json(folder / "manifest.json")
    manifest.pop("created")
    files.pop("manifest.json")
    return {"files": files, "manifest": manifest}


@pytest.fixture(scope="module")
def stimulus_set(tmp_path_factory) -> Path:
    """A built grey set of the camera image (``set_config_toml("trials", "camera", "grey")``)."""
    from eigdist_core.build import build_set

    base = tmp_path_factory.mktemp("set")
    (base / "trials.toml").write_text(set_config_toml("trials", "camera", "grey"))
    return build_set(base / "trials.toml", base / "set", progress=False)


def make_tiny_set(folder: Path, size: int = 4) -> dict:
    """A one-image, three-item set written with numpy only (max ⟂ min by construction)."""
    rng = np.random.default_rng(0)
    image = (0.2 + 0.6 * rng.random((1, size, size))).astype(np.float32)
    basis = np.linalg.qr(rng.standard_normal((size * size, 3)))[0].T.astype(np.float32)
    config = {"name": "tiny", "seed": 0}
    versions = {"python": "3", "torch": "2", "eigdist": "0.1.0"}
    images = [{"image_id": "img", "source": "hand", "file": "images/img.npy",
               "sha256": save_npy(folder / "images/img.npy", image)}]
    items = []
    for direction, vec in zip(("max", "min", "random"), basis):
        vec = vec.reshape(1, size, size)
        item_id = item_id_for("img", "net", "conv.1", "random:0", direction, 0)
        items.append({
            "item_id": item_id, "image_id": "img", "model": "net", "layer": "conv.1",
            "weights": "random:0", "direction": direction, "index": 0,
            "eigenvalue": None if direction == "random" else 1.0, "rayleigh": 1.0, "residual": 0.0,
            "converged": True, "iterations": 1, "degenerate": False, "seed": 7,
            "alpha_displayable_max": alpha_displayable(image, vec),
            "file": f"items/{item_id}.npy", "sha256": save_npy(folder / f"items/{item_id}.npy", vec),
            "response_curve": {"alpha": [0.0, 1.0], "distance": [0.0, 1.0]},
        })
    manifest = {
        "schema_version": 2, "build_id": compute_build_id(config, versions), "name": "tiny",
        "created": "2026-11-27T00:00:00+00:00", "config": config, "versions": versions,
        "channels": 1, "size": size, "value_range": [0.2, 0.8], "alpha_max": 1.0,
        "complete": True, "images": images, "items": items,
    }
    write_manifest(folder, manifest)
    return manifest
