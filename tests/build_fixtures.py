"""Built stimulus sets for tests: a one-image grey set (module fixture) and the fingerprint that compares builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from eigdist_core.io import load_json, sha256_file
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
