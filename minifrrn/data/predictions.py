"""Writing predictions in the official format: single-channel 8-bit PNGs of *label ids*."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..backend import as_numpy
from .labels import NUM_CLASSES, PALETTE, TRAIN2ID

__all__ = ["write_prediction", "write_overlay", "train_to_label_ids", "colorize", "as_rgb",
           "overlay"]


def train_to_label_ids(train_ids):
    """trainIds 0..18 -> label ids (never trainIds, never 255, which the official script rejects)."""
    train_ids = as_numpy(train_ids)
    if train_ids.size and (train_ids.min() < 0 or train_ids.max() >= NUM_CLASSES):
        raise ValueError(f"predictions must be trainIds 0..{NUM_CLASSES - 1}, got values up to "
                         f"{int(train_ids.max())}")
    return TRAIN2ID[train_ids.astype(np.int64)]


def write_prediction(path, train_ids):
    """Save a (H, W) trainId map as a mode-L PNG of label ids."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(train_to_label_ids(train_ids), "L").save(path)


def colorize(train_ids):
    """trainIds (H, W) -> RGB uint8 in the Cityscapes colours (void black)."""
    return PALETTE[as_numpy(train_ids).astype(np.int64) % 256]


def as_rgb(image):
    """An image as RGB uint8 (H, W, 3): from grey (H, W), channels first (3, H, W) or channels last,
    uint8 or floats in [0, 1]."""
    image = as_numpy(image)
    if image.ndim == 2:  # grey
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[0] == 3 and image.shape[2] != 3:  # (3, H, W): channels first
        image = image.transpose(1, 2, 0)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return image


def overlay(image, train_ids, alpha=0.5):
    """The image blended with the label colours: (1 − alpha)·image + alpha·colour, uint8."""
    return (as_rgb(image) * (1 - alpha) + colorize(train_ids) * alpha + 0.5).astype(np.uint8)


def write_overlay(path, image, train_ids, alpha=0.5):
    """Save the image blended with the prediction in Cityscapes colours (``overlay``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(image, train_ids, alpha), "RGB").save(path)
