"""What every synthesis class shares: the image, the shape of its distortions, the result of ``synthesize()``.

:class:`~eigdist_core.eigendistortion.Eigendistortion`,
:class:`~eigdist_core.layer_contrasts.GeneralizedEigendistortion` and
:class:`~eigdist_core.layer_contrasts.PrincipalDistortion` build on :class:`Synthesis`.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import torch

Result = TypeVar("Result")


class Synthesis(Generic[Result]):
    """An image and the result its ``synthesize()`` sets; reading the result before raises.

    Subclasses set ``image`` (detached) and name what they compute in :attr:`computes`
    (for the message when the result is read too early).
    """

    computes = "results"
    image: torch.Tensor

    def __init__(self) -> None:
        self._result: Result | None = None

    @property
    def result(self) -> Result:
        if self._result is None:
            raise RuntimeError(f"no {self.computes} yet: call synthesize() first")
        return self._result

    @property
    def distortion_shape(self) -> tuple[int, ...]:
        """The image's shape without its batch dimension: the shape of one distortion."""
        shape = tuple(self.image.shape)
        return shape[1:] if len(shape) == 4 else shape

    def _shaped(self, vectors: torch.Tensor) -> torch.Tensor:
        """Flat vectors (one a row) shaped like the image."""
        return vectors.reshape(vectors.shape[0], *self.distortion_shape)


class Eigenpairs(Synthesis[Result]):
    """A synthesis whose result holds eigenvectors and eigenvalues, read with plenoptic's names."""

    @property
    def eigendistortions(self) -> torch.Tensor:
        return self._shaped(self.result.eigenvectors)

    @property
    def eigenvalues(self) -> torch.Tensor:
        return self.result.eigenvalues
