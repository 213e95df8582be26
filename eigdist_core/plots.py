"""Eigendistortion figures and the one PNG writer for figures.

Figures are plain ``matplotlib.figure.Figure`` objects, never pyplot state: library code
leaves the user's backend alone (inline figures in Jupyter keep working), and
:func:`save_figure` writes a PNG without any backend.
"""

from __future__ import annotations

import io
import os

import numpy as np

from .io import atomic_write_bytes


def show_array(ax, array: np.ndarray, title: str, symmetric: bool = False) -> None:
    """Draw a (C, H, W) array: grey for C = 1, RGB for C = 3; values outside [0, 1] are clipped for display."""
    img = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    if symmetric:  # a distortion: zero is mid-grey, scaled to its own max
        m = float(np.abs(array).max()) or 1.0
        img = 0.5 + 0.5 * img / m
    ax.imshow(np.clip(img, 0, 1), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def eigendistortion_figure(
    image: np.ndarray,
    maxdist: np.ndarray,
    mindist: np.ndarray,
    alpha: float,
    title: str = "",
    eigenvalues: tuple[float, float] | None = None,
    labels: tuple[str, str] = ("max eigendistortion", "min eigendistortion"),
):
    """plenoptic's ``display_eigendistortion_all`` layout for the max and min eigendistortions.

    Top row: the max and min distortions (zero is mid-grey, each scaled to its
    own largest magnitude). Bottom row: the image, then image + α·distortion
    under each distortion. The sums are clipped to [0, 1] for display only;
    stored distortions are not.

    Parameters
    ----------
    image, maxdist, mindist
        (C, H, W) arrays; the distortions have unit L2 norm.
    alpha
        Amplitude added to the image in the bottom row.
    title
        Figure title.
    eigenvalues
        (λ_max, λ_min), shown in the distortions' titles when given.
    labels
        The two distortions' names (a generalized pair's top and bottom, principal a and b).
    """
    from matplotlib.figure import Figure

    lam = ("", "") if eigenvalues is None else tuple(f"\nλ = {v:.4g}" for v in eigenvalues)
    fig = Figure(figsize=(9, 6.6))
    axes = fig.subplots(2, 3)
    axes[0, 0].set_axis_off()
    show_array(axes[0, 1], maxdist, labels[0] + lam[0], symmetric=True)
    show_array(axes[0, 2], mindist, labels[1] + lam[1], symmetric=True)
    show_array(axes[1, 0], image, "image")
    short = [label.split()[0].rstrip(":") for label in labels]  # "max", "top", "principal"
    show_array(axes[1, 1], image + alpha * maxdist, f"image + {alpha:g}·{short[0]}")
    show_array(axes[1, 2], image + alpha * mindist, f"image + {alpha:g}·{short[1]}")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> str:
    """Write ``fig`` as a PNG atomically and return the file's sha256."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return atomic_write_bytes(path, buffer.getvalue())
