"""Every input of a stimulus-set build, checked before any work or any write.

:func:`check_inputs` loads each image (values in [0, 1], none on the display bound once mapped
into ``value_range``) and runs each model on a small image of the set's colour, estimates one
group's memory from that pass, then runs each model on a full-size image: a bad key, file,
model, colour or memory need stops the build before a file is written, named by its config key.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .config import ModelEntry, SetConfig, image_id_of
from .contract import DISPLAY_RANGE
from .errors import EigdistError, in_context
from .validate import ModelError, validate_model


#: Side of the input of the first dry forward pass of each model (colour and output-size check).
DRY_SIZE = 32


#: Peak memory of one group ≈ this × 8 bytes × (input values + output values): the forward's
#: activations, their gradients and the float64 copies of the response curve.
MEMORY_FACTOR = 16


class BuildError(EigdistError):
    """A build that cannot start: a bad input, model, output folder or memory need; the message names it."""


def prepare_image(source: str, base: Path, config: SetConfig) -> np.ndarray:
    """Load, crop, resize, convert and compress one image into the set's value_range (float32 C×H×W)."""
    from .images import BUILTIN_IMAGES, load_image

    path = source if source in BUILTIN_IMAGES else base / source
    image = load_image(path, size=config.size, channels=config.channels).numpy().astype(np.float64)
    lo, hi = config.value_range
    return (lo + (hi - lo) * image).astype(np.float32)


def check_inputs(config: SetConfig, base: Path, jobs: int = 1) -> dict[str, np.ndarray]:
    """Check every model and image before any work; return the prepared images.

    Each model runs once on a small input of the set's colour (a model that
    cannot take the set's images fails here, naming its ``[[models]]`` entry and
    the ``color`` key), the memory of one group is estimated from that pass and
    refused when it exceeds this machine's, then each model runs on an image of
    the set's full size, and every image is loaded and checked (readable, values
    in [0, 1], no pixel on the display bound 0 or 1 once mapped into
    ``value_range``). Errors name the config key (``images[2]``, ``models[0]``).
    """
    from . import models

    loaded = []
    for i, net in enumerate(config.models):
        try:
            loaded.append(models.load(net.spec, net.weights))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"models[{i}].weights ({net.weights!r}): {exc}") from None
        except EigdistError as exc:
            raise BuildError(f"models[{i}] ({net.spec}, weights {net.weights}): {exc}") from None
    small = min(DRY_SIZE, config.size)
    outputs = _dry_runs(config, loaded, small)
    _check_memory(config, small, outputs, jobs)
    if small < config.size:
        _dry_runs(config, loaded, config.size)
    images = {}
    for i, source in enumerate(config.images):
        try:
            images[image_id_of(source)] = prepare_image(source, base, config)
        except (EigdistError, OSError) as exc:
            raise in_context(exc, f"images[{i}] ({source!r})") from exc
        _check_displayable(i, source, images[image_id_of(source)], config)
    return images


def _dry_runs(config: SetConfig, loaded: list, size: int) -> list[int]:
    """:func:`_dry_run` of every model; a layer of a ``[[contrasts]]`` entry that fails is named with its contrast."""
    outputs = []
    for i, (net, model) in enumerate(zip(config.models, loaded)):
        try:
            outputs.append(_dry_run(i, net, model, config, size))
        except BuildError as exc:
            where = next((f"contrasts[{c}] ({contrast.name})" for c, contrast in enumerate(config.contrasts)
                          if net in contrast.models), None)
            if where is None:
                raise
            raise BuildError(f"{where}: the layers of a contrast must take the same input (the set's "
                             f"{config.channels}-channel {size} × {size} images); {exc}") from None
    return outputs


def _dry_run(i: int, net: ModelEntry, model, config: SetConfig, size: int) -> int:
    """Run ``model`` on a mid-grey ``size`` × ``size`` image of the set's colour; return its number of outputs."""
    import torch

    lo, hi = config.value_range
    x = torch.full((1, config.channels, size, size), (lo + hi) / 2, dtype=torch.float32)
    try:
        return validate_model(model, x).numel()
    except ModelError as exc:  # the model is at fault, not the set's colour or size
        raise BuildError(f"models[{i}] ({net.spec}, weights {net.weights}) on a mid-grey {size} × {size} image: "
                         f"{exc}; or remove this [[models]] entry") from None
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BuildError(
            f"models[{i}] ({net.spec}, weights {net.weights}) cannot take this set's images "
            f"(color = {config.color!r}: {config.channels} channel(s), {size} × {size} px): {first}; "
            f"change the color key (or size), or remove this [[models]] entry"
        ) from None


def _check_memory(config: SetConfig, small: int, outputs: list[int], jobs: int) -> None:
    """Refuse a set whose groups would not fit in this machine's memory (before any image is resized).

    ``outputs`` are the models' output sizes at ``small`` px, in ``config.models`` order. A layer's
    group holds one model; a contrast's group holds all of its M models at once (M Fisher operators,
    their forwards and copies), so it counts the sum of theirs.
    """
    scale = (config.size / small) ** 2
    n = config.channels * config.size**2
    out = {net: count * scale for net, count in zip(config.models, outputs)}

    def one(net, solver: str) -> float:  # a model's share: activations and copies, the dense Jacobian if exact
        return MEMORY_FACTOR * 8 * (n + out[net]) + (8 * n * out[net] if solver == "exact" else 0)

    groups = [(one(net, config.solver), f"about {out[net]:.3g} outputs of the largest layer")
              for net in config.models]
    groups += [(sum(one(net, c.solver) for net in c.models),
                f"contrasts[{i}] ({c.name}) holds its {len(c.models)} layers' "
                f"{sum(out[net] for net in c.models):.3g} outputs at once")
               for i, c in enumerate(config.contrasts)]
    need, what = max(groups, key=lambda group: group[0])
    need *= jobs
    exact = config.solver == "exact" or any(c.solver == "exact" for c in config.contrasts)
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise BuildError(
            f"size = {config.size}: {jobs} group(s) at a time would need about {need / 2**30:.3g} GiB "
            f"({n:.3g} input values, {what}{', exact solver' if exact else ''}), more than this machine's "
            f"{have / 2**30:.3g} GiB; use a smaller size{' or another solver' if exact else ''}"
        )


def _check_displayable(i: int, source: str, image: np.ndarray, config: SetConfig) -> None:
    """Refuse an image with pixels on the display bound: no distortion could be shown there without clipping."""
    lo, hi = DISPLAY_RANGE
    stuck = int(((image <= lo) | (image >= hi)).sum())
    if stuck:
        raise BuildError(
            f"images[{i}] ({source!r}): {stuck} pixel(s) lie on the display bound {lo:g} or {hi:g} once mapped into "
            f"value_range {list(config.value_range)}, so image ± α·e would clip for every α > 0 "
            f"(alpha_displayable_max = 0); use a value_range inside (0, 1), e.g. [0.2, 0.8]"
        )
