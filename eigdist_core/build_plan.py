"""A build's plan: the set's groups of items, each with its item ids and seed, in a fixed order (pure).

A group is the unit of a build's work and of its resumption. A layer's group is one (image, network)
pair: the network is loaded once and one synthesis gives its max and min items (:mod:`eigdist_core.build`).
A contrast's group is one (image, ``[[contrasts]]`` entry) pair: one solve over the contrast's layers
gives its items (:mod:`eigdist_core.build_contrasts`). A group's seed derives from the config seed and
its names alone, so its result does not depend on which worker computes it, or when.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .config import Contrast, ModelEntry, SetConfig, image_id_of
from .contract import CONTRAST_DIRECTIONS, CONTRAST_WEIGHTS
from .stimulus_set import item_id_for


@dataclass(frozen=True)
class Group:
    """The items of one image that one ``source`` makes, a network of the set or a contrast, and their seed."""

    image_id: str
    source: ModelEntry | Contrast
    item_ids: tuple[str, ...]
    seed: int

    @property
    def label(self) -> str:
        """How progress and the build log name the group: the image, then the network or the contrast."""
        s = self.source
        names = (s.kind, s.name) if isinstance(s, Contrast) else (s.spec, s.weights)
        return " ".join((self.image_id, *names))


def derive_seed(seed: int, *names: str) -> int:
    """A seed in [0, 2³¹) from the config seed and names (stable across machines and runs)."""
    text = "\x1f".join([str(seed), *names]).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "big") >> 1


def directions_of(config: SetConfig) -> list[tuple[str, int]]:
    """(direction, index) of each item of a layer's group: k max, k min, one random."""
    out = []
    for direction in config.directions:
        count = 1 if direction == "random" else config.k
        out += [(direction, i) for i in range(count)]
    return out


def contrast_directions(contrast: Contrast) -> list[tuple[str, int]]:
    """(direction, index) of a contrast's items: k top then k bottom, or the principal pair."""
    first, second = CONTRAST_DIRECTIONS[contrast.kind]
    count = contrast.k if contrast.kind == "generalized" else 1
    return [(first, i) for i in range(count)] + [(second, i) for i in range(count)]


def plan(config: SetConfig) -> list[Group]:
    """Every group of the set in a fixed order: images, then networks, as in the config; then, again
    image by image, the contrasts."""
    layers, contrasts = [], []
    for source in config.images:
        image_id = image_id_of(source)
        for net in config.models:
            ids = [item_id_for(image_id, net.model, net.layer, net.weights, d, i) for d, i in directions_of(config)]
            layers.append(Group(image_id, net, tuple(ids), derive_seed(config.seed, image_id, net.spec, net.weights)))
        for c in config.contrasts:
            ids = [item_id_for(image_id, c.kind, c.name, CONTRAST_WEIGHTS, d, i) for d, i in contrast_directions(c)]
            seed = derive_seed(config.seed, image_id, "contrast", c.kind, c.name)
            contrasts.append(Group(image_id, c, tuple(ids), seed))
    return layers + contrasts
