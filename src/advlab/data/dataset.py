"""The in-memory image dataset container shared by every loader.

Images are kept as ``uint8`` tensors of shape ``(N, C, H, W)`` (a quarter of the memory of
``float32``); :meth:`ImageDataset.tensors` and :meth:`ImageDataset.batches` convert to
``float32`` in ``[0, 1]`` on the way out, which is the input range every advlab model expects.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

__all__ = ["DatasetError", "ImageDataset", "SPLITS"]

logger = logging.getLogger(__name__)

#: The splits every dataset provides.
SPLITS: tuple[str, ...] = ("train", "test")


class DatasetError(ValueError):
    """A dataset could not be found, downloaded or parsed.

    The message is a single line that says what went wrong and what to do about it
    (where to put which files, or which file to delete and download again).
    """


def _check_positive_int(value: object, what: str) -> int:
    """Return ``value`` as an ``int`` if it is a positive integer, else raise ``ValueError``."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a positive integer, got {value!r}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be a positive integer, got {value!r}") from None
    if number <= 0:
        raise ValueError(f"{what} must be a positive integer, got {number}")
    return number


@dataclass(frozen=True, eq=False, repr=False)
class ImageDataset:
    """A labelled image dataset held in memory as ``uint8``.

    Instances are immutable: :meth:`subset` returns a new dataset (with copied tensors)
    rather than changing this one.

    Attributes:
        images: ``uint8`` tensor of shape ``(N, C, H, W)`` with pixel values ``0..255``.
        labels: ``int64`` tensor of shape ``(N,)`` with values in ``[0, num_classes)``.
        classes: Class names; ``classes[label]`` names a label.
        name: Dataset name (``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``, ``"digits"``,
            ``"synthetic"``).
        split: ``"train"`` or ``"test"``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    split: str

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or not isinstance(self.labels, torch.Tensor):
            raise TypeError("images and labels must be torch.Tensor objects")
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                "images must be a uint8 tensor of shape (N, C, H, W), got "
                f"{self.images.dtype} of shape {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError(
                "labels must be an int64 tensor of shape (N,), got "
                f"{self.labels.dtype} of shape {tuple(self.labels.shape)}"
            )
        if self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"images and labels disagree on the number of examples: "
                f"{self.images.shape[0]} images, {self.labels.shape[0]} labels"
            )
        if not isinstance(self.classes, tuple) or not all(isinstance(c, str) for c in self.classes):
            raise TypeError("classes must be a tuple of str (use tuple(names))")
        if len(self.classes) == 0:
            raise ValueError("classes must name at least one class")
        if self.labels.numel() > 0:
            low, high = int(self.labels.min()), int(self.labels.max())
            if low < 0 or high >= len(self.classes):
                raise ValueError(
                    f"labels must lie in [0, {len(self.classes)}), found values in [{low}, {high}]"
                )
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"shape={self.shape}, num_classes={self.num_classes})"
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape ``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        """The number of classes (``len(classes)``)."""
        return len(self.classes)

    def tensors(
        self, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the whole dataset as model-ready tensors.

        Args:
            device: Where to put the tensors; ``None`` keeps them on the dataset's device.

        Returns:
            ``(x, y)``: ``x`` is ``float32`` in ``[0, 1]`` (``images / 255``) of shape
            ``(N, C, H, W)``; ``y`` is an ``int64`` copy of the labels. Neither aliases the
            dataset's own storage.
        """
        x = self.images.to(device=device, dtype=torch.float32).div_(255.0)
        y = self.labels.to(device=device, copy=True)
        return x, y

    def subset(
        self,
        limit: int | None = None,
        classes: Sequence[int] | None = None,
        relabel: bool = False,
    ) -> ImageDataset:
        """Select examples deterministically.

        Keeps the examples (in their original order) whose label is in ``classes``, then the
        first ``limit`` of those. No randomness is involved, so the same call always returns
        the same examples.

        Args:
            limit: Keep at most this many examples (a positive integer); ``None`` keeps all.
            classes: Labels to keep; ``None`` keeps every class.
            relabel: Map ``classes[i]`` to label ``i`` and rename ``classes`` accordingly
                (e.g. ``classes=[3, 7], relabel=True`` gives a binary 0/1 dataset whose
                class names are ``("3", "7")``). Requires ``classes``.

        Returns:
            A new :class:`ImageDataset` with copied tensors.

        Raises:
            ValueError: ``limit`` is not positive, ``classes`` is empty, repeats a class or
                names a class this dataset does not have, or ``relabel`` is set without
                ``classes``.
            TypeError: ``limit`` or an entry of ``classes`` is not an integer.
        """
        if limit is not None:
            limit = _check_positive_int(limit, "limit")
        keep = torch.arange(len(self))
        new_labels = self.labels
        new_classes = self.classes
        if classes is not None:
            chosen = self._check_classes(classes)
            wanted = torch.tensor(chosen, dtype=torch.int64, device=self.labels.device)
            mask = torch.isin(self.labels, wanted)
            keep = torch.nonzero(mask.cpu(), as_tuple=False).flatten()
            if relabel:
                lookup = torch.full(
                    (self.num_classes,), -1, dtype=torch.int64, device=self.labels.device
                )
                lookup[wanted] = torch.arange(len(chosen), device=self.labels.device)
                new_labels = lookup[self.labels]
                new_classes = tuple(self.classes[c] for c in chosen)
        elif relabel:
            raise ValueError(
                "relabel=True needs classes, e.g. subset(classes=[3, 7], relabel=True)"
            )
        if limit is not None:
            keep = keep[:limit]
        if keep.numel() == 0:
            logger.warning("subset of %r is empty (classes=%s, limit=%s)", self, classes, limit)
        index = keep.to(self.images.device)
        return ImageDataset(
            images=self.images.index_select(0, index),
            labels=new_labels.index_select(0, keep.to(new_labels.device)),
            classes=new_classes,
            name=self.name,
            split=self.split,
        )

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate over the dataset in mini-batches.

        Args:
            batch_size: Examples per batch (the last batch may be smaller).
            shuffle: Visit the examples in a random order drawn from ``generator``.
            generator: Source of randomness for ``shuffle``. The global RNG is never used
                or reseeded: without a generator, ``shuffle=True`` draws the order from a
                fresh generator seeded from OS entropy (not reproducible).
            device: Where to put each batch; ``None`` keeps the dataset's device.

        Yields:
            ``(x, y)`` with ``x`` ``float32`` in ``[0, 1]`` of shape ``(B, C, H, W)`` and
            ``y`` ``int64`` of shape ``(B,)``.

        Raises:
            ValueError: ``batch_size`` is not a positive integer.
        """
        batch_size = _check_positive_int(batch_size, "batch_size")
        n = len(self)
        order: torch.Tensor | None = None
        if shuffle:
            if generator is None:
                generator = torch.Generator()
                generator.seed()
            order = torch.randperm(n, generator=generator, device=generator.device).cpu()
        return self._iter_batches(order, batch_size, device)

    def _iter_batches(
        self,
        order: torch.Tensor | None,
        batch_size: int,
        device: torch.device | str | None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self)
        for start in range(0, n, batch_size):
            if order is None:
                images = self.images[start : start + batch_size]
                labels = self.labels[start : start + batch_size]
            else:
                index = order[start : start + batch_size]
                images = self.images.index_select(0, index.to(self.images.device))
                labels = self.labels.index_select(0, index.to(self.labels.device))
            x = images.to(device=device, dtype=torch.float32).div_(255.0)
            y = labels.to(device=device, copy=True)
            yield x, y

    def _check_classes(self, classes: Sequence[int]) -> list[int]:
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
            raise TypeError(f"classes must be a sequence of ints, got {classes!r}")
        chosen: list[int] = []
        for c in classes:
            if isinstance(c, bool):
                raise TypeError(f"classes must contain ints, got {c!r}")
            try:
                value = operator.index(c)
            except TypeError:
                raise TypeError(f"classes must contain ints, got {c!r}") from None
            if not 0 <= value < self.num_classes:
                raise ValueError(
                    f"unknown class {value} for {self.name!r}: valid classes are "
                    f"0..{self.num_classes - 1} ({', '.join(self.classes)})"
                )
            if value in chosen:
                raise ValueError(f"class {value} appears twice in classes={list(classes)}")
            chosen.append(value)
        if not chosen:
            raise ValueError("classes must name at least one class (or be None for all)")
        return chosen
