"""Predicting a list of images with a trained checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backend import as_numpy, check_device
from ..data.cityscapes import downsample_image, image_size, read_image
from ..data.predictions import write_overlay, write_prediction
from ..files import remove_stale_temporaries
from .checkpoint import load_checkpoint
from .trainer import load_model, predict_scores, resize_scores

__all__ = ["predict_images"]


def predict_images(checkpoint, images, out, device="cpu", overlays=True):
    """Write ``<stem>_labelIds.png`` (official format: label ids) and, with ``overlays``,
    ``<stem>_overlay.png`` for every image (cityscapesscripts' evaluation takes any PNG named after
    a frame as its prediction: leave the overlays out of a folder it reads). Images are downsampled
    by the factor the model was trained at, reflection-padded to a multiple of the model's pooling
    factor, and the class scores are cropped and resized back to the image's own size (bilinear)
    before the argmax. Returns the written label-id paths."""
    check_device(device)
    if isinstance(images, (str, Path)):  # one image: a string would be read letter by letter
        images = [images]
    paths = [Path(p) for p in images]
    for p in paths:
        if p.is_dir():
            raise IsADirectoryError(f"{p} is a folder, not an image: pass the image files in it "
                                    f"(e.g. {p / '*.png'})")
        if not p.is_file():
            raise FileNotFoundError(f"image {p} does not exist")
    stems = {}
    for p in paths:  # two images may not write the same outputs
        stem = _stem(p)
        if stem in stems and stems[stem] != p:
            raise ValueError(f"images {stems[stem]} and {p} would both be written as "
                             f"{stem}_labelIds.png: predict them into different --out folders")
        stems[stem] = p
    out = Path(out)
    try:  # before the model is loaded: a bad --out should not wait for it
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(f"output folder {out} cannot be made ({error.strerror}): choose "
                              f"another with --out") from None
    # what a predict killed while writing these outputs left behind (nothing else removes it);
    # a PNG is written in milliseconds, so a temporary a minute old is no other predict's
    remove_stale_temporaries(out, [f"{stem}_{kind}.png" for stem in stems
                                   for kind in ("labelIds", "overlay")], older_than_s=60)
    # every image is checked (readable, large enough) before the model is loaded and the first
    # one predicted: a bad one late in a long list should not cost the work before it
    _, _, meta = load_checkpoint(checkpoint, arrays=False)
    factor = meta.get("config", {}).get("downsample", 1)
    if not overlays:  # label ids alone, for cityscapesscripts: a stale overlay would be a second one
        stale = [out / f"{stem}_overlay.png" for stem in stems
                 if (out / f"{stem}_overlay.png").exists()]
        if stale:
            raise FileExistsError(f"{out} holds {len(stale)} overlays of an earlier run (the first: "
                                  f"{stale[0].name}), which cityscapesscripts would read as second "
                                  f"predictions: predict into an empty --out, or remove them")
    for path in paths:
        width, height = image_size(path)
        if min(width, height) < factor:
            raise ValueError(f"image {path} is {width}x{height}: the model sees images downsampled "
                             f"by {factor}, which leaves it no pixels; use images of at least "
                             f"{factor} px on each side")
    model, meta = load_model(checkpoint, device)
    written = []
    for path in paths:
        rgb = read_image(path)
        H, W = rgb.shape[:2]
        small = downsample_image(rgb, factor) if factor > 1 else rgb
        h, w = small.shape[:2]
        f = model.factor
        ph, pw = (-h) % f, (-w) % f
        padded = np.pad(small, ((0, ph), (0, pw), (0, 0)), mode="reflect" if max(ph, pw) < min(h, w)
                        else "edge")
        x = padded.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        scores = predict_scores(model, x, device)[:, :, :h, :w]
        train_ids = as_numpy(resize_scores(scores, H, W).argmax(axis=1)[0])
        stem = _stem(path)
        label_path = out / f"{stem}_labelIds.png"
        write_prediction(label_path, train_ids)
        if overlays:
            write_overlay(out / f"{stem}_overlay.png", rgb, train_ids)
        written.append(label_path)
    return written


def _stem(path):
    """The outputs' name: the image's, without ``_leftImg8bit.png`` (Cityscapes) or the suffix."""
    return (path.name[:-len("_leftImg8bit.png")] if path.name.endswith("_leftImg8bit.png")
            else path.stem)
