"""Built-in images (scikit-image's CC0 photos) and image loading/preprocessing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

#: Built-in names: scikit-image photos shipped inside its wheel (CC0 / public domain).
BUILTIN_IMAGES = (
    "astronaut", "brick", "camera", "chelsea", "coffee", "grass", "gravel",
    "horse", "hubble_deep_field", "retina", "rocket", "text",
)


def load_image(source: str | os.PathLike, size: int | None = None, channels: int | None = None) -> torch.Tensor:
    """Load a built-in name or an image file as a float32 (C, H, W) tensor in [0, 1].

    Parameters
    ----------
    source
        One of :data:`BUILTIN_IMAGES`, or a path to a PNG/JPEG/TIFF/``.npy`` file.
    size
        If given, the central square crop is resized to ``size × size``.
    channels
        1 (grey, by luminance) or 3 (RGB; grey is repeated); ``None`` keeps the source's.
    """
    array = _read(source)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 4:
        array = array[:, :, :3]
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if channels == 1 and array.shape[2] == 3:
        from skimage.color import rgb2gray

        array = rgb2gray(array)[:, :, None]
    elif channels == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    image = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))
    if size is not None:
        image = square_resize(image, size)
    return image.clamp_(0.0, 1.0)


def square_resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Central square crop of a (C, H, W) tensor, resized (antialiased) to ``size × size``."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an int >= 2, got {size!r}")
    _, h, w = image.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = image[:, top : top + s, left : left + s]
    if s == size:
        return crop.contiguous()
    out = torch.nn.functional.interpolate(
        crop[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return out[0]


def _read(source: str | os.PathLike) -> np.ndarray:
    name = str(source)
    if name in BUILTIN_IMAGES:
        from skimage import data

        return _to_unit(getattr(data, name)())
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"image {name!r} is neither a file nor a built-in name; built-ins: {', '.join(BUILTIN_IMAGES)}"
        )
    if path.suffix == ".npy":
        return _to_unit(np.load(path, allow_pickle=False))
    from skimage import io

    return _to_unit(io.imread(path))


def _to_unit(array: np.ndarray) -> np.ndarray:
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float64) / np.iinfo(array.dtype).max
    if array.dtype == bool:
        return array.astype(np.float64)
    return array.astype(np.float64)
