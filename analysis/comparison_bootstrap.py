"""The model comparison's bootstrap: participants and images redrawn as the two crossed factors they are.

In a lab every participant sees the same images, so a score's cell sums (participant p, image i) carry a
participant effect, an image effect shared by every participant, and a residual (trials, p × i). Write
their contributions to the variance of the lab's mean as a = σ²_p / P, b = σ²_i / I, e = σ²_pi / (P·I);
the mean's variance is a + b + e. The D ranking's two-level bootstrap (participants, then each drawn
participant's images on their own) has a + b / P + 2e: it treats the image effect as independent between
participants (too narrow when images matter: 0.86 coverage of a null difference, docs/analysis.md) and
counts the residual twice. Redrawing participants and images jointly (Owen's pigeonhole bootstrap,
2007) gives a + b + 3e. This module keeps the two main effects and drops the interaction of the two
redraws: a draw is the point estimate plus the deviation of a participants-only redraw plus that of an
images-only redraw, independent, with variance (1 − 1/P)(a + e) + (1 − 1/I)(b + e) (a redraw of n units
has (n − 1)/n of their variance). That is conservative where the residual dominates (trial noise), and short
of a + b + e where the participant and image effects do and the levels are few: with 4 participants × 3
images the intervals cover 0.80–0.82 (benchmarks/bench_crossed_bootstrap.py; docs/analysis.md, "Measured").
The same two redraws, refitted, give the mixture weights' intervals (:mod:`analysis.mixture`).
"""

from __future__ import annotations

import numpy as np


def crossed_multiplicities(n_boot: int, n_people: int, n_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_boot, participants) and (n_boot, images) multiplicities of the two independent redraws.

    Draw b of a statistic is its point estimate plus its deviation with participants redrawn (weights
    ``people[b]``, all of their images) plus its deviation with images redrawn (weights ``images[b]``, for
    every participant): :func:`crossed_draws`. The scores and the mixture weights share these draws.
    """
    rng = np.random.default_rng(seed)
    people = rng.multinomial(n_people, np.full(n_people, 1.0 / n_people), size=n_boot).astype(float)
    images = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_boot).astype(float)
    return people, images


def crossed_draws(point: np.ndarray, by_people: np.ndarray, by_images: np.ndarray) -> np.ndarray:
    """Draws m + (m_P − m) + (m_I − m) of a statistic m from its values m_P, m_I under the two redraws."""
    return by_people + by_images - point


def crossed_bootstrap_means(total: np.ndarray, count: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, candidates) draws of Σ total / Σ count over (candidates, participants, images) cell sums.

    m is the mean of all cells, m_P the mean with participants drawn with replacement (all their images),
    m_I with images drawn with replacement (for every participant); see :func:`crossed_draws`. Every
    candidate sees the same draws, so differences and P(best) are paired.
    """
    _, n_p, n_i = total.shape
    people, images = crossed_multiplicities(n_boot, n_p, n_i, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = total.sum(axis=(1, 2)) / count.sum(axis=(1, 2))
        by_people = (people @ total.sum(axis=2).T) / (people @ count.sum(axis=2).T)
        by_images = (images @ total.sum(axis=1).T) / (images @ count.sum(axis=1).T)
    return crossed_draws(point, by_people, by_images)
