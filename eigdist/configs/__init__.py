"""The built-in stimulus-set configs (package data, so they work from an installed wheel).

``demo`` and ``demo_quick`` are what ``eigdist demo`` builds, ``demo_color`` and ``demo_color_quick``
what ``eigdist demo --color`` builds, ``demo_compare`` what ``eigdist demo --compare`` builds; ``seed`` is the tutorial's ResNet18
comparison. ``eigdist stimuli build NAME`` accepts these names as well as a TOML file.
"""

from __future__ import annotations

import contextlib
from importlib import resources
from pathlib import Path
from typing import Iterator

from eigdist_core.errors import EigdistError

#: Built-in stimulus-set configs, by name (``<name>.toml`` in this package).
BUILT_IN = ("demo", "demo_quick", "demo_color", "demo_color_quick", "demo_compare", "seed")


@contextlib.contextmanager
def built_in_config(name: str) -> Iterator[Path]:
    """The built-in config ``name`` as a file on disk for the duration of the ``with`` block.

    Raises
    ------
    EigdistError
        ``name`` is not one of :data:`BUILT_IN`.
    """
    if name not in BUILT_IN:
        raise EigdistError(f"{name!r} is neither a file nor a built-in stimulus-set config ({', '.join(BUILT_IN)})")
    with resources.as_file(resources.files(__name__) / f"{name}.toml") as path:
        yield Path(path)

