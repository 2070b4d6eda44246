"""Writing predictions in the official format: single-channel 8-bit PNGs of *label ids*."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..backend import as_numpy
from ..files import write_atomically
from .labels import NUM_CLASSES, PALETTE, TRAIN2ID

__all__ = ["write_prediction", "write_overlay", "train_to_label_ids", "colorize", "as_rgb",
           "overlay"]


def train_to_label_ids(train_ids):
    """trainIds 0..18 -> label ids (never trainIds, never 255, which the official script rejects)."""
    train_ids = as_numpy(train_ids)
    if train_ids.dtype.kind not in "iu":
        raise TypeError(f"predictions must be integer trainIds, got {train_ids.dtype}: take the "
                        f"argmax of the scores over classes")
    if train_ids.size and (train_ids.min() < 0 or train_ids.max() >= NUM_CLASSES):
        bad = int(train_ids.min()) if train_ids.min() < 0 else int(train_ids.max())
        raise ValueError(f"predictions must be trainIds 0..{NUM_CLASSES - 1}, got {bad}")
    return TRAIN2ID[train_ids.astype(np.int64)]


def _check_map(train_ids, what):
    """A single (H, W) map, or a one-line error naming the shape (a batch's map is (N, H, W))."""
    shape = tuple(as_numpy(train_ids).shape)
    if len(shape) != 2:
        raise ValueError(f"{what}: train_ids must be one (H, W) map, got shape {shape}: take one "
                         f"image's map from a batch (train_ids[i])")
    return shape


def write_prediction(path, train_ids):
    """Save a (H, W) trainId map as a mode-L PNG of label ids, whole or not at all (a killed
    ``predict`` leaves no truncated PNG for an evaluation to choke on)."""
    _check_map(train_ids, "write_prediction")
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"write_prediction: {path} is not a .png: label ids must be stored "
                         f"losslessly, as the official format's PNG; name the file *.png")
    _save_image(path, Image.fromarray(train_to_label_ids(train_ids), "L"))


def _save_image(path, image):
    """Save a PIL image atomically, in the format its file name's extension names."""
    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise ValueError(f"cannot tell an image format from the name {path.name}: end it in .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda handle: image.save(handle, format=image_format))


def colorize(train_ids):
    """trainIds (H, W) -> RGB uint8 in the Cityscapes colours (void black)."""
    return PALETTE[as_numpy(train_ids).astype(np.int64) % 256]


def as_rgb(image):
    """An image as RGB uint8 (H, W, 3): from grey (H, W), (1, H, W) or (H, W, 1), channels first
    (3, H, W) or channels last; integers as 0..255, floats as [0, 1]."""
    image = as_numpy(image)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[2] not in (1, 3):
        image = image.transpose(1, 2, 0)  # channels first
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:  # grey
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.dtype.kind in "iub" and image.dtype != np.uint8:  # integers: 0..255 as uint8 holds them
        image = np.clip(image, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return image


def overlay(image, train_ids, alpha=0.5):
    """The image blended with the label colours: (1 − alpha)·image + alpha·colour, uint8."""
    size, rgb = _check_map(train_ids, "overlay"), as_rgb(image)
    if rgb.shape[:2] != size:
        raise ValueError(f"overlay: the image is {rgb.shape[0]}x{rgb.shape[1]} but the prediction "
                         f"is {size[0]}x{size[1]}: resize the prediction to the image's size")
    return (rgb * (1 - alpha) + colorize(train_ids) * alpha + 0.5).astype(np.uint8)


def write_overlay(path, image, train_ids, alpha=0.5):
    """Save the image blended with the prediction in Cityscapes colours (``overlay``), whole or not
    at all."""
    _save_image(path, Image.fromarray(overlay(image, train_ids, alpha), "RGB"))
