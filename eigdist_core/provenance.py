"""The package versions whose change can change a stimulus set's bytes (recorded in its manifest)."""

from __future__ import annotations

import platform

from . import __version__


def versions() -> dict[str, str]:
    """The package versions a set's bytes depend on."""
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "eigdist": __version__}
