"""eigdist: eigendistortions of vision models, a calibrated noticeability experiment, and a
ranking of model layers against human data.

The public API, imported lazily so that ``import eigdist`` (and ``eigdist --help``)
does not import torch or PsychoPy:

- ``eigdist.Eigendistortion``: max and min eigendistortions of one image through one model.
- ``eigdist.GeneralizedEigendistortion``, ``eigdist.PrincipalDistortion``: the changes that tell two
  layers, or several, apart at one image.
- ``eigdist.models``: ``eigdist.models.load("resnet18:layer2", weights="random:0")`` and friends.
- ``eigdist.StimulusSet``: read and verify a built stimulus set; ``eigdist.build_set`` builds one.
- ``eigdist.analyze``: trial files → thresholds, D per layer, ranking, report.

The three stages live in ``eigdist_core`` (synthesis), ``experiments`` (the PsychoPy session)
and ``analysis``; ``eigdist.cli`` is the ``eigdist`` command.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

#: The top-level packages that eigdist installs beside itself.
PACKAGES = ("eigdist_core", "experiments", "analysis")


def _hidden_package() -> str | None:
    """One line naming a file or folder that hides one of :data:`PACKAGES` on ``sys.path``, or None.

    A lab script named ``analysis.py`` (or a folder ``experiments/``) in the folder a script
    runs from comes before the installed packages, and Python would import it instead.
    """
    home = Path(__file__).resolve().parent.parent
    for name in PACKAGES:
        loaded = sys.modules.get(name)
        spec = loaded.__spec__ if loaded is not None else importlib.util.find_spec(name)
        origin = getattr(spec, "origin", None)
        if origin and origin not in ("built-in", "frozen") and Path(origin).resolve().parent.parent != home \
                and Path(origin).resolve().parent != home:
            shown = Path(origin).parent if Path(origin).name == "__init__.py" else Path(origin)
            return (f"{shown} hides eigdist's package {name!r} (it comes first on sys.path); "
                    "rename it, or run from another folder")
    return None


# ``python -m eigdist`` puts the working folder first on sys.path (sys.argv[0] is "-m" while the
# package is imported): like pip, drop it, so that the command behaves as the installed ``eigdist``.
if sys.argv[:1] == ["-m"] and sys.path and sys.path[0] in ("", os.getcwd()) and not sys.flags.safe_path:
    del sys.path[0]
if (_problem := _hidden_package()) is not None:
    raise ImportError(_problem)

from eigdist_core import __version__  # noqa: E402 (after the check above)

# name → (module, attribute or None for the module itself)
_API = {
    "Eigendistortion": ("eigdist_core.eigendistortion", "Eigendistortion"),
    "GeneralizedEigendistortion": ("eigdist_core.layer_contrasts", "GeneralizedEigendistortion"),
    "PrincipalDistortion": ("eigdist_core.layer_contrasts", "PrincipalDistortion"),
    "models": ("eigdist_core.models", None),
    "StimulusSet": ("eigdist_core.stimulus_set", "StimulusSet"),
    "build_set": ("eigdist_core.build", "build_set"),
    "analyze": ("analysis.pipeline", "analyze"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'eigdist' has no attribute {name!r}")
    module, attribute = _API[name]
    loaded = importlib.import_module(module)
    return loaded if attribute is None else getattr(loaded, attribute)


def __dir__() -> list[str]:
    return sorted(__all__)
