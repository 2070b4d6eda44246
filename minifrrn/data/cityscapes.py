"""Reading Cityscapes (and anything in its layout), with FRRN's preprocessing.

    root/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png     RGB
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png      L, ids 0..33
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png   16-bit

A sample is a dict: ``image`` float32 (3, H, W) in [0, 1], ``target`` uint8 (H, W) trainIds with 255
for void, ``name`` ``<city>_<seq>_<frame>``. Downsampling by an integer factor f uses Pillow's Lanczos
filter for images and a majority vote per f×f cell for labels (void where the winner holds at most half
of the cell), as FRRN's training data is prepared.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..autograd import is_whole_number
from ..seeding import AUGMENTATION, stream
from .augment import check_seed, default_max_shift, random_gamma, random_translate
from .labels import ID2TRAIN, VOID

__all__ = ["Cityscapes", "Frame", "find_frames", "require_instance_files", "read_image",
           "read_label_ids", "read_instance_ids", "downsample_labels", "downsample_image"]


@dataclass(frozen=True)
class Frame:
    name: str
    image_path: Path
    label_path: Path
    instance_path: Path


def find_frames(root, split):
    """Every frame of ``split`` under ``root``, sorted by name; errors name the missing path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist (expected a folder with "
                                f"leftImg8bit/ and gtFine/)")
    image_dir = root / "leftImg8bit" / split
    label_dir = root / "gtFine" / split
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            # a common slip: the root given one level too deep, at leftImg8bit/ or gtFine/
            hint = (f": the dataset root is the folder holding leftImg8bit/ and gtFine/, here "
                    f"probably {root.parent}" if root.name in ("leftImg8bit", "gtFine") else "")
            raise FileNotFoundError(f"split folder {folder} does not exist{hint}")
    frames = []
    for image_path in sorted(image_dir.glob("*/*_leftImg8bit.png")):
        stem = image_path.name[:-len("_leftImg8bit.png")]
        city = image_path.parent.name
        label_path = label_dir / city / f"{stem}_gtFine_labelIds.png"
        if not label_path.exists():
            raise FileNotFoundError(f"image {image_path} has no labels: {label_path} is missing")
        frames.append(Frame(stem, image_path, label_path,
                            label_dir / city / f"{stem}_gtFine_instanceIds.png"))
    if not frames:
        raise FileNotFoundError(f"no *_leftImg8bit.png images under {image_dir}")
    return frames


def require_instance_files(frames):
    """Refuse frames of which one has no instanceIds file, as the official evaluation does: its
    instance-level scores (iIoU) need one next to every labelIds file."""
    missing = [frame.instance_path for frame in frames if not frame.instance_path.exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(frames)} frames have no instanceIds file "
                                f"(the first: {missing[0]}): the official iIoU scores need one "
                                f"next to every labelIds file, as gtFine_trainvaltest.zip provides")


def _open(path, decode=True):
    """The image at path, decoded (``decode``) or only checked: its header read and, for a PNG,
    every chunk's checksum verified (a truncated or damaged file fails) without decompressing the
    pixels. Any failure is one line naming the file."""
    try:
        image = Image.open(path)
        if decode:
            image.load()
        else:
            size = image.size
            image.verify()
            return size
        return image
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path} is not a readable image ({error})") from None


def image_size(path):
    """(width, height) of the image at path, checked as far as reading it without decoding allows
    (a cheap test of many files before long work on them)."""
    return _open(path, decode=False)


def read_image(path):
    """RGB uint8 (H, W, 3), upright. 16-bit grey images are scaled to 8 bits (Pillow's conversion to
    RGB would clip them: every value above 255 white). A photo whose EXIF orientation says it was
    taken turned (as phone cameras store them) is turned the way image viewers show it, so that its
    prediction and overlay are upright too; Cityscapes' PNGs carry no EXIF and are read as stored."""
    image = _open(path)
    if image.getexif().get(0x0112, 1) != 1:  # 0x0112: the EXIF Orientation tag, 1 = as stored
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(image).astype(np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or grey.max() > 255 else 255.0
        grey = np.clip(grey / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def read_label_ids(path):
    """Label ids uint8 (H, W); a multi-channel file or an id outside 0..33 is an error naming it."""
    image = _open(path)
    if image.mode not in ("L", "P", "I;16", "I"):
        bands = len(image.getbands())
        raise ValueError(f"{path} is a mode {image.mode!r} image ({bands} channel"
                         f"{'' if bands == 1 else 's'}): label files must be single-channel 8-bit "
                         f"label ids (mode 'L')")
    ids = np.asarray(image)
    if ids.ndim != 2:
        raise ValueError(f"{path} has {ids.shape[-1]} channels: label ids must be single-channel")
    if ids.size and (ids.max() > 33 or ids.min() < 0):
        raise ValueError(f"{path} holds label id {int(ids.max())}, outside 0..33: label files "
                         f"hold label ids, not trainIds (void 255); map trainIds to label ids "
                         f"with minifrrn.data.labels.TRAIN2ID, giving every pixel a class")
    return ids.astype(np.uint8)


def read_instance_ids(path):
    """Instance ids as int32 (H, W), read as 16-bit (8-bit reading would destroy the ids)."""
    image = _open(path)
    return np.asarray(image).astype(np.int32)


def downsample_image(image, factor):
    """Lanczos downsampling of an RGB uint8 image by an integer factor."""
    if factor == 1:
        return image
    H, W = image.shape[:2]
    pil = Image.fromarray(image).resize((W // factor, H // factor), Image.LANCZOS)
    return np.asarray(pil)


def downsample_labels(train_ids, factor, num_values=256):
    """Majority vote per factor×factor cell; void (255) where the winner holds ≤ half the cell.

    ``train_ids`` is an (H, W) map of integer ids in 0..num_values − 1 (trainIds and void 255 by
    default): the counts of all cells share one array, so an id outside that range would be counted
    in a neighbouring cell."""
    train_ids = np.asarray(train_ids)
    if train_ids.ndim != 2 or not np.issubdtype(train_ids.dtype, np.integer):
        raise ValueError(f"downsample_labels: train_ids must be an (H, W) map of integer ids, got "
                         f"{train_ids.dtype} of shape {train_ids.shape}")
    if not isinstance(factor, (int, np.integer)) or isinstance(factor, bool) or factor < 1:
        raise ValueError(f"downsample_labels: factor must be a positive integer, got {factor!r}")
    if not 1 <= num_values <= 256:
        raise ValueError(f"downsample_labels: num_values must be in 1..256 (the result is uint8, "
                         f"void 255), got {num_values}")
    if train_ids.size and (train_ids.min() < 0 or train_ids.max() >= num_values):
        raise ValueError(f"downsample_labels: ids must lie in 0..{num_values - 1}, got "
                         f"{train_ids.min()}..{train_ids.max()}; map label ids to trainIds first "
                         f"(labels.ID2TRAIN) or pass num_values")
    if factor == 1:
        return train_ids.astype(np.uint8, copy=False)  # uint8 as for any other factor
    H, W = train_ids.shape
    h, w = H // factor, W // factor
    cells = train_ids[:h * factor, :w * factor].reshape(h, factor, w, factor)
    cells = cells.transpose(0, 2, 1, 3).reshape(h * w, factor * factor).astype(np.int64)
    # one bincount over (cell, value) pairs counts every value in every cell at once
    flat = (np.arange(h * w)[:, None] * num_values + cells).ravel()
    counts = np.bincount(flat, minlength=h * w * num_values).reshape(h * w, num_values)
    winner = counts.argmax(axis=1)
    held = counts[np.arange(h * w), winner]
    out = np.where(held * 2 > factor * factor, winner, VOID).astype(np.uint8)
    return out.reshape(h, w)


class Cityscapes:
    """A Cityscapes-format split: ``len(ds)``, ``ds[i]``, ``ds.load(i, epoch)``, ``ds.frames``.

    Args:
        root: dataset folder with ``leftImg8bit/`` and ``gtFine/``.
        split: ``train``, ``val`` (``test`` is refused for training: its labels are empty).
        downsample: integer factor (FRRN A trains at 4, B at 2).
        augment: random translation by up to ``max_shift`` pixels of the downsampled images
            (default: FRRN's range for their width, ``default_max_shift``: 30 px at FRRN A's 512,
            40 at B's 1024, 8 at 128) with reflection-padded images and void-filled labels, and
            random gamma.
        seed: augmentation is a pure function of (seed, epoch, index).
        cache_mb: decoded, downsampled frames (uint8 image and trainIds) are kept in memory up to
            this many MB, so that later epochs skip the PNG decoding and the downsampling, nearly
            all of a sample's loading time (3.3 of 3.4 ms for a synthetic scene); augmentation
            still runs on every load. The default holds the synthetic scenes whole and about a
            sixth of Cityscapes' train split at ×4 (0.5 MB a frame); 0 turns it off.
    """

    def __init__(self, root, split="train", downsample=1, augment=False, max_shift=None, gamma=True,
                 seed=0, for_training=True, cache_mb=256):
        if split == "test" and for_training:
            raise ValueError("split 'test' has no usable labels in Cityscapes (ids 0-3 only): train "
                             "and evaluate on 'train' and 'val'")
        if not is_whole_number(downsample) or downsample < 1:
            raise ValueError(f"downsample must be a positive integer, got {downsample!r}")
        if max_shift is not None and max_shift < 0:
            raise ValueError(f"max_shift must be >= 0 pixels (or None for the default), got "
                             f"{max_shift}")
        downsample = int(downsample)
        seed = check_seed(seed, "Cityscapes: seed")
        self.root, self.split, self.downsample = Path(root), split, downsample
        self.augment, self.gamma, self.seed = augment, gamma, seed
        self.frames = find_frames(root, split)
        if max_shift is None:  # the width from the first image's header, no decoding
            max_shift = default_max_shift(image_size(self.frames[0].image_path)[0] // downsample)
        self.max_shift = max_shift
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
        self._cache, self._cache_left = {}, int(cache_mb * 2 ** 20)
        self._cache_lock = threading.Lock()  # loader threads fill it together

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index):
        return self.load(index, epoch=0)

    def _decoded(self, index):
        """(image uint8 (h, w, 3), trainIds uint8 (h, w)) of a frame at the working resolution: from
        the cache, or read, checked, downsampled and cached while the budget lasts."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        frame = self.frames[index]
        image = read_image(frame.image_path)
        ids = read_label_ids(frame.label_path)
        if image.shape[:2] != ids.shape:
            raise ValueError(f"{frame.label_path} is {ids.shape[1]}x{ids.shape[0]} but its image is "
                             f"{image.shape[1]}x{image.shape[0]}")
        decoded = (downsample_image(image, self.downsample),
                   downsample_labels(ID2TRAIN[ids], self.downsample))
        size = decoded[0].nbytes + decoded[1].nbytes
        with self._cache_lock:
            if index not in self._cache and size <= self._cache_left:
                for array in decoded:
                    array.flags.writeable = False  # shared by every later load of this frame
                self._cache[index] = decoded
                self._cache_left -= size
        return decoded

    def load(self, index, epoch=0):
        if not -len(self.frames) <= index < len(self.frames):
            raise IndexError(f"frame {index} of a split of {len(self.frames)} frames")
        index = int(index) % len(self.frames)  # ds[-1] is ds[n − 1]: one cache entry, one seed
        image, target = self._decoded(index)
        target = target.copy()  # the caller's own, whatever the augmentation does
        image = image.astype(np.float32) / 255.0
        if self.augment:
            rng = stream(self.seed, AUGMENTATION, epoch, index)
            image, target = random_translate(image, target, self.max_shift, rng)
            if self.gamma:
                image = random_gamma(image, rng)
        return {"image": np.ascontiguousarray(image.transpose(2, 0, 1)), "target": target,
                "name": self.frames[index].name}
