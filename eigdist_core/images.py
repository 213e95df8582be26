"""Built-in images (scikit-image's CC0 photos) and image loading/preprocessing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .errors import EigdistError
from .validate import validate_number

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
        If given, the central square crop is resized to ``size × size`` (downscaled: a crop
        smaller than ``size`` is refused with :class:`ImageError`, never upscaled).
    channels
        1 (grey, by luminance) or 3 (RGB; grey is repeated); ``None`` keeps the source's.
    """
    array = _read(source)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 4:
        array = array[:, :, :3]
    if channels not in (None, 1, 3):
        raise EigdistError(f"channels must be 1 or 3, got {channels!r}")
    if channels == 1 and array.shape[2] == 3:
        from skimage.color import rgb2gray

        array = rgb2gray(array)[:, :, None]
    elif channels == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    image = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))
    if size is not None:
        validate_number("size", size, integer=True, low=2)
        side = min(array.shape[:2])
        if side < size:  # an upscaled crop would show interpolation, not the image, to the model and the eye
            raise ImageError(
                f"image {str(source)!r} is {array.shape[1]}×{array.shape[0]} pixels: its central square crop "
                f"({side}×{side}) is smaller than size = {size} and would be upscaled; give an image at least "
                f"{size} pixels on its shorter side, or a size <= {side}")
        image = square_resize(image, size)
    return image.clamp_(0.0, 1.0)  # resizing only averages values in [0, 1]: this removes rounding, not data


def square_resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Central square crop of a (C, H, W) tensor, resized (antialiased) to ``size × size``."""
    validate_number("size", size, integer=True, low=2)
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


class ImageError(EigdistError):
    """An image file that cannot be read, or whose values are not an image's; the message names the file."""


#: Integer image types and the value that becomes 1.0 (the documented conversion rule).
INTEGER_SCALES = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}


def _read(source: str | os.PathLike) -> np.ndarray:
    name = str(source)
    if name in BUILTIN_IMAGES:
        from skimage import data

        return to_unit(getattr(data, name)(), name)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(
            f"image {name!r} is neither a file nor a built-in name; built-ins: {', '.join(BUILTIN_IMAGES)}"
        )
    if path.is_dir():
        raise ImageError(f"image {name!r} is a folder, not an image file")
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            from skimage import io

            # an open file, not the path: given a path, imageio leaves a handle open for each plugin
            # that fails to read it (an unreadable file leaked several)
            with path.open("rb") as file:
                array = io.imread(file)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL: truncated or unknown files; numpy: bad headers
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"image {name!r} is not a readable image file ({first})") from None
    return to_unit(array, name)


def to_unit(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as float64 in [0, 1] by the one documented rule, or an :class:`ImageError` naming ``name``.

    uint8 is divided by 255 and uint16 by 65535; bool gives 0 and 1; a float
    array must already lie in [0, 1] and be finite (it is never rescaled or
    clipped: a 0–255 float image is refused, not turned into a white field).
    Other integer types are refused (their full scale is not known).
    """
    array = np.asarray(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)) or array.size == 0:
        raise ImageError(f"image {name!r} has shape {array.shape}; expected H × W or H × W × 1, 3 or 4 channels")
    if array.dtype == bool:
        return array.astype(np.float64)
    if array.dtype in INTEGER_SCALES:
        return array.astype(np.float64) / INTEGER_SCALES[array.dtype]
    if not np.issubdtype(array.dtype, np.floating):
        raise ImageError(
            f"image {name!r} has dtype {array.dtype}; use uint8 (0-255), uint16 (0-65535) or float in [0, 1]"
        )
    array = array.astype(np.float64)
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise ImageError(f"image {name!r} has {bad} NaN or infinite values")
    lo, hi = float(array.min()), float(array.max())
    if lo < 0.0 or hi > 1.0:
        raise ImageError(
            f"image {name!r} has values in [{lo:.6g}, {hi:.6g}]; a float image must lie in [0, 1] "
            "(scale it first, e.g. divide 0-255 values by 255; uint8 and uint16 files are scaled by 255 and 65535)"
        )
    return array
