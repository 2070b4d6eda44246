"""Small Cityscapes-format data sets written by the tests."""
from pathlib import Path

import numpy as np
from PIL import Image


def write_frame(root, split, city, stem, labels, instances=None, image=None):
    root = Path(root)
    (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
    (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
    H, W = labels.shape
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(image, "RGB").save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
    Image.fromarray(labels.astype(np.uint8), "L").save(
        root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
    inst = labels.astype(np.uint16) if instances is None else instances.astype(np.uint16)
    Image.fromarray(inst).save(root / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png")
