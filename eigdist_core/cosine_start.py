"""A start for principal distortions: cosine modes of the image plane on a coarse grid of frequencies.

The Fisher matrices of vision models at an image are nearly shift-invariant
(convolutions, local gain control), so cosine modes (the orthonormal DCT-II
basis) are nearly eigenvectors of all of them at once, and the layers differ
most in which spatial frequencies they see: a band-pass layer is blind to the
mean and a low-pass one to the finest modes. The principal distortions of
such layers are made of a few frequencies each. A random start is white
noise, seen alike by every layer; the gradient iteration then needs dozens
of steps to find the bands. These modes, a grid of frequencies from 0 to the
highest in each axis, let the first small solve pick the bands at once (on the
frontend models on the 64 px camera image one pair of grid modes, (24, 63)
against (0, 0), scores V ≈ 57, where 16 gradient iterations from random
vectors reached 15; docs/solvers.md). The solver's
objective, residuals and product counts are unchanged by the choice; on
models far from shift-invariant the grid is merely another start.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from scipy.fft import idctn

#: Frequencies per axis, as fractions of the highest (log-spaced, with 0 and the highest): 6 give
#: 21 modes on a square image (one per unordered pair, both orientations through the solver's gradients).
GRID = (0.0, 1 / 16, 3 / 16, 3 / 8, 5 / 8, 1.0)


def _plane(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The image plane: the last two axes, or the only one of a 1-D input."""
    return tuple(range(len(shape)))[-2:]


def grid_frequencies(size: int) -> list[int]:
    """The distinct indices of :data:`GRID` along an axis of ``size`` samples."""
    return sorted({round(f * (size - 1)) for f in GRID})


def cosine_start(shape: tuple[int, ...]) -> torch.Tensor:
    """Unit cosine modes on the grid as (K, n) float64 rows, each channel alike.

    On a plane, one mode per unordered pair of grid frequencies (kx ≤ ky);
    on a 1-D input, one per grid frequency.
    """
    axes = _plane(shape)
    grids = [grid_frequencies(shape[a]) for a in axes]
    if len(axes) == 2:
        square = grids[0] == grids[1]  # a mode and its transpose differ only in orientation
        pairs = [(i, j) for i, j in itertools.product(*grids) if i <= j or not square]
    else:
        pairs = [(i,) for i in grids[0]]
    rows = []
    for frequency in pairs:
        coefficients = np.zeros([shape[a] for a in axes])
        coefficients[frequency] = 1
        plane = idctn(coefficients, norm="ortho")
        mode = np.broadcast_to(plane, shape)
        rows.append(mode.ravel() / np.linalg.norm(mode))
    return torch.from_numpy(np.array(rows))
