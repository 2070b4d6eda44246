"""Cityscapes data: the label table, the reader, FRRN's augmentations, a prefetching loader, the
synthetic street-scene generator, and prediction writers."""
from . import labels, synth
from .cityscapes import Cityscapes, Frame, downsample_labels, find_frames, read_image, read_label_ids
from .loader import DataLoader, collate
from .predictions import train_to_label_ids, write_overlay, write_prediction
from .synth import default_synthetic_root, ensure_synthetic

__all__ = ["labels", "synth", "Cityscapes", "Frame", "find_frames", "read_image", "read_label_ids",
           "downsample_labels", "DataLoader", "collate", "write_prediction", "write_overlay",
           "train_to_label_ids", "ensure_synthetic", "default_synthetic_root"]
