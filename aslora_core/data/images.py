"""Labelled images from a class-per-folder tree or a `.npz` file, and their encoding into pixel tensors."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

from aslora_core.data._labels import assign_labels
from aslora_core.data.encoding import EncodedDataset
from aslora_core.data.errors import DataError

_LOG = logging.getLogger(__name__)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
NPZ_SUFFIX = ".npz"
NPZ_IMAGES = "images"
NPZ_LABELS = "labels"
PIXEL_MAX = 255.0
"""Integer images are 8-bit (0-255); float images are taken to be in [0, 1] already."""
GRAY_DIMS = 2
CHANNEL_AXIS = -1
RGB_CHANNELS = 3


@dataclass(frozen=True)
class LabelledImages:
    """Images (height x width, or height x width x channels; sizes may differ) and their class indices."""

    images: tuple[npt.NDArray[np.generic], ...]
    label_indices: tuple[int, ...]
    label_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.images) != len(self.label_indices):
            raise DataError("every image needs exactly one label")
        if not self.label_names:
            raise DataError("labelled images need at least one label name")
        for position, label in enumerate(self.label_indices):
            if not 0 <= label < len(self.label_names):
                raise DataError(f"image {position} has label {label}, outside [0, {len(self.label_names)})")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        """Class index of every image, in order."""
        return np.asarray(self.label_indices, dtype=np.int64)

    def subset(self, indices: Sequence[int] | npt.NDArray[np.integer]) -> LabelledImages:
        """The images at `indices`, in that order, with the same label names."""
        picked = [int(index) for index in indices]
        for index in picked:
            if not 0 <= index < len(self):
                raise IndexError(f"index {index} is outside [0, {len(self)})")
        return LabelledImages(
            tuple(self.images[i] for i in picked),
            tuple(self.label_indices[i] for i in picked),
            self.label_names,
        )


def load_images(path: str | os.PathLike[str], label_names: Sequence[str] | None = None) -> LabelledImages:
    """Images from `root/<class>/*.png|jpg` (class names are the folder names) or from a `.npz` file with
    `images` (N x H x W or N x H x W x C) and integer `labels`; `label_names` fixes the class order."""
    source = Path(path)
    if source.is_dir():
        return _load_folder(source, label_names)
    if source.suffix.lower() == NPZ_SUFFIX and source.is_file():
        return _load_npz(source, label_names)
    raise DataError(f"{source}: expected an image folder (one sub-folder per class) or a {NPZ_SUFFIX} file")


def _load_folder(root: Path, label_names: Sequence[str] | None) -> LabelledImages:
    images: list[npt.NDArray[np.generic]] = []
    keys: list[str] = []
    for class_dir in sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name):
        for file in sorted(f for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES):
            with Image.open(file) as picture:
                images.append(np.asarray(picture.convert("RGB")))
            keys.append(class_dir.name)
    if not images:
        raise DataError(f"{root} holds no class folders with {sorted(IMAGE_SUFFIXES)} images")
    if label_names is None:
        names = tuple(sorted(set(keys)))
    else:
        names = tuple(label_names)
        unknown = sorted(set(keys) - set(names))
        if unknown:
            raise DataError(f"{root}: class folder(s) {unknown[:3]} are not among the run's labels")
    index = {name: position for position, name in enumerate(names)}
    _LOG.info("loaded %d images in %d classes from %s", len(images), len(set(keys)), root)
    return LabelledImages(tuple(images), tuple(index[key] for key in keys), names)


def _load_npz(source: Path, label_names: Sequence[str] | None) -> LabelledImages:
    with np.load(source, allow_pickle=False) as archive:
        missing = [name for name in (NPZ_IMAGES, NPZ_LABELS) if name not in archive.files]
        if missing:
            raise DataError(f"{source}: no array(s) {missing}")
        images, raw = archive[NPZ_IMAGES], archive[NPZ_LABELS]
    if images.ndim not in (GRAY_DIMS + 1, GRAY_DIMS + 2) or raw.ndim != 1 or len(images) != len(raw):
        raise DataError(
            f"{source}: need images N x H x W (x C) and N labels, got {images.shape}, {raw.shape}"
        )
    if not np.issubdtype(raw.dtype, np.integer):
        raise DataError(f"{source}: labels must be integers")
    keys = [str(int(value)) for value in raw]
    labels, names = assign_labels(keys, list(range(1, len(keys) + 1)), label_names, str(source))
    _LOG.info("loaded %d images in %d classes from %s", len(images), len(names), source)
    return LabelledImages(tuple(images), tuple(labels), names)


def encode_images(
    data: LabelledImages,
    *,
    image_size: tuple[int, int],
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> EncodedDataset:
    """`pixel_values` (N x C x H x W, resized bilinearly, normalised by `mean` and `std`) and `labels`."""
    if len(data) == 0:
        raise DataError("there are no images to encode")
    shift = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    scale = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    pixels = torch.empty((len(data), channels, *image_size), dtype=torch.float32)
    for position, image in enumerate(data.images):
        planes = _channels_first(image, channels)
        resized = torch.nn.functional.interpolate(
            planes.unsqueeze(0), size=image_size, mode="bilinear", align_corners=False, antialias=True
        )
        pixels[position] = (resized[0] - shift) / scale
    return EncodedDataset({"pixel_values": pixels, "labels": torch.from_numpy(data.labels)})


def _channels_first(image: npt.NDArray[np.generic], channels: int) -> torch.Tensor:
    """C x H x W floats in [0, 1], gray repeated to `channels` or colour averaged to one channel."""
    values = torch.as_tensor(np.asarray(image), dtype=torch.float32)
    if np.issubdtype(image.dtype, np.integer):
        values = values / PIXEL_MAX
    if values.dim() == GRAY_DIMS:
        values = values.unsqueeze(CHANNEL_AXIS)
    planes = values.permute(2, 0, 1)
    if planes.shape[0] == channels:
        return planes
    if planes.shape[0] == 1:
        return planes.expand(channels, -1, -1)
    if channels == 1:
        return planes.mean(dim=0, keepdim=True)
    raise DataError(f"an image with {planes.shape[0]} channels cannot feed a {channels}-channel model")
