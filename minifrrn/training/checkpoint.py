"""Checkpoints: one ``.npz`` holding the model's state dict, the optimiser and schedule state, the step
and the run's configuration, written atomically (a temporary file in the same folder, then a rename),
so that a crash while saving never destroys the previous checkpoint."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..backend import as_numpy
from ..files import write_atomically

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError", "FORMAT_VERSION"]

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, from another model, or not a minifrrn file."""


def save_checkpoint(path, model_state, optimizer_state=None, meta=None, then=None):
    """Write ``path`` atomically. ``model_state``/``optimizer_state`` map names to arrays (or
    scalars for the optimiser); ``meta`` is a JSON-serialisable dict. ``then``: what a full-disk
    message says after naming the file (see ``minifrrn.files.disk_error``)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write checkpoint {path}: folder {path.parent} does not "
                                f"exist; create it first")
    arrays = {f"model/{k}": as_numpy(v) for k, v in model_state.items()}
    scalars = {}
    for k, v in (optimizer_state or {}).items():
        if isinstance(v, (int, float)):
            scalars[k] = v
        else:
            arrays[f"optim/{k}"] = as_numpy(v)
    header = {"format": FORMAT_VERSION, "optimizer_scalars": scalars, **(meta or {})}
    arrays["meta"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    write_atomically(path, lambda handle: np.savez(handle, **arrays), then=then)
    return path


def _corrupt(path, error):
    return CheckpointError(f"checkpoint {path} is corrupt or not a minifrrn checkpoint "
                           f"({type(error).__name__}): use another one")


def load_checkpoint(path, arrays=True):
    """Return (model_state, optimizer_state, meta); a corrupt file raises ``CheckpointError``. With
    ``arrays=False`` no array is read: the states hold no weights or moments (the meta alone)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {path} is a folder: give a checkpoint file in it, "
                                f"such as {path / 'best.npz'}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    unreadable = (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError)
    try:
        data = np.load(path, allow_pickle=False)
    except unreadable as error:
        raise _corrupt(path, error) from None
    if not isinstance(data, np.lib.npyio.NpzFile):  # a .npy file: one bare array
        raise CheckpointError(f"checkpoint {path} holds a single array, not a minifrrn checkpoint "
                              f"(an .npz that training writes): use another one")
    try:
        with data:
            meta = json.loads(bytes(data["meta"]).decode())
            model_state = {k[len("model/"):]: data[k] for k in data.files
                           if arrays and k.startswith("model/")}
            optimizer_state = {k[len("optim/"):]: data[k] for k in data.files
                               if arrays and k.startswith("optim/")}
    except unreadable as error:
        raise _corrupt(path, error) from None
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {meta.get('format')}, expected "
                              f"{FORMAT_VERSION}")
    optimizer_state.update(meta.pop("optimizer_scalars", {}))
    return model_state, optimizer_state, meta
