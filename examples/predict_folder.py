"""Segment every photo in a folder with a trained checkpoint and write colourised label maps.

For each ``.png``/``.jpg``/``.jpeg`` in the input folder this writes ``<stem>_color.png``: the
predicted classes in the Cityscapes colours, at the photo's own size. ``--label-ids`` also keeps
``<stem>_labelIds.png`` (the official single-channel format, which ``minifrrn eval --predictions``
scores) and ``--overlays`` keeps ``<stem>_overlay.png`` (the photo blended with the colours).

The prediction itself is ``minifrrn.training.predict_images``, the code behind ``minifrrn predict``:
it downsamples each photo by the factor the model was trained at, pads it to the model's pooling
factor, and resizes the class scores back to the photo's size before the argmax. This script only
chooses the files and turns label ids into colours.

Run it with a checkpoint from ``minifrrn train`` or ``examples/train_cityscapes_gpu.py``::

    python examples/predict_folder.py --checkpoint runs/frrn_b/best.npz --images photos/ \\
        --out predictions/ --device gpu --label-ids
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from minifrrn.backend import GPUUnavailableError
from minifrrn.data import read_label_ids
from minifrrn.data.labels import ID_PALETTE, ID_TO_LABEL
from minifrrn.training import predict_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="predict_folder.py",
        description="Write colourised FRRN predictions for every image in a folder.")
    parser.add_argument("--checkpoint", required=True, help="a training checkpoint (.npz)")
    parser.add_argument("--images", required=True, help="folder of .png/.jpg photos")
    parser.add_argument("--out", required=True, help="folder for the <stem>_color.png maps")
    parser.add_argument("--device", default="cpu", help="cpu (default) or gpu")
    parser.add_argument("--label-ids", action="store_true",
                        help="also keep <stem>_labelIds.png (official label-id format)")
    parser.add_argument("--overlays", action="store_true",
                        help="also keep <stem>_overlay.png (photo blended with the colours)")
    return parser


def find_images(folder):
    """The photos of ``folder``, sorted; two photos with one stem would overwrite each other's
    outputs, so that is an error."""
    folder = Path(folder)
    if folder.is_file():
        raise NotADirectoryError(f"--images takes a folder, and {folder} is a file: pass its folder "
                                 f"(or predict single images with minifrrn predict)")
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    images = sorted(p for p in folder.iterdir()
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no .png/.jpg images in {folder}")
    stems = {}
    for path in images:
        if path.stem in stems:
            raise ValueError(f"{stems[path.stem].name} and {path.name} share the stem "
                             f"{path.stem!r}: their outputs would collide; rename one")
        stems[path.stem] = path
    return images


def largest_classes(label_ids, count=3):
    """'road 41%, building 30%, sky 12%': the classes covering most of a label-id map."""
    ids, pixels = np.unique(label_ids, return_counts=True)
    order = np.argsort(pixels)[::-1][:count]
    return ", ".join(f"{ID_TO_LABEL[int(ids[i])].name} {100 * pixels[i] / label_ids.size:.0f}%"
                     for i in order)


def main(argv=None):
    """Predict every image; returns the list of colour-map paths written."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        images = find_images(args.images)
        out.mkdir(parents=True, exist_ok=True)
        # predict_images writes the label ids (and the overlays, when asked for) into a scratch
        # folder; the label ids are kept only with --label-ids
        with tempfile.TemporaryDirectory(dir=out) as scratch:
            label_paths = predict_images(args.checkpoint, images, scratch, device=args.device,
                                         overlays=args.overlays)
            written = []
            for label_path in label_paths:
                stem = label_path.name[:-len("_labelIds.png")]
                label_ids = read_label_ids(label_path)
                colour_path = out / f"{stem}_color.png"
                Image.fromarray(ID_PALETTE[label_ids], "RGB").save(colour_path)
                if args.label_ids:
                    shutil.move(label_path, out / label_path.name)
                if args.overlays:
                    shutil.move(label_path.with_name(f"{stem}_overlay.png"),
                                out / f"{stem}_overlay.png")
                written.append(colour_path)
                print(f"{colour_path}: {largest_classes(label_ids)}")
    except (ValueError, OSError, GPUUnavailableError) as error:
        # errors the user can fix (a missing folder, a folder given as the checkpoint, an --out
        # that is a file, a corrupt checkpoint, no GPU): one line
        parser.exit(2, f"{parser.prog}: error: {str(error).splitlines()[0]}\n")
    print(f"wrote {len(written)} colour map{'' if len(written) == 1 else 's'} to {out}")
    return written


if __name__ == "__main__":
    main()
