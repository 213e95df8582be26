"""eigdist_core: eigendistortion synthesis (models, Fisher operator, solvers, stimulus sets).

Imports nothing from ``experiments`` or ``analysis``; heavy submodules are
imported where they are used.
"""

__version__ = "0.1.0"

__all__ = ["Eigendistortion", "GeneralizedEigendistortion", "PrincipalDistortion", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import eigdist_core` (and the CLI's --help) does not import torch.
    if name == "Eigendistortion":
        from .eigendistortion import Eigendistortion

        return Eigendistortion
    if name in ("GeneralizedEigendistortion", "PrincipalDistortion"):
        from . import layer_contrasts

        return getattr(layer_contrasts, name)
    raise AttributeError(f"module 'eigdist_core' has no attribute {name!r}")
