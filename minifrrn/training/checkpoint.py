"""Checkpoints: one ``.npz`` holding the model's state dict, the optimiser and schedule state, the step
and the run's configuration, written atomically (a temporary file in the same folder, then a rename),
so that a crash while saving never destroys the previous checkpoint."""
from __future__ import annotations

import errno
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..backend import as_numpy

__all__ = ["save_checkpoint", "load_checkpoint", "atomic_write_text", "remove_stale_temporaries",
           "disk_error", "CheckpointError", "FORMAT_VERSION"]

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, from another model, or not a minifrrn file."""


def save_checkpoint(path, model_state, optimizer_state=None, meta=None, then=None):
    """Write ``path`` atomically. ``model_state``/``optimizer_state`` map names to arrays (or
    scalars for the optimiser); ``meta`` is a JSON-serialisable dict. ``then``: what a full-disk
    message says after naming the file (see ``disk_error``)."""
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
    _write_atomically(path, lambda handle: np.savez(handle, **arrays), then=then)
    return path


def atomic_write_text(path, text, exclusive=False):
    """Write ``text`` to ``path`` as checkpoints are written: a crash while writing leaves the file
    that was there before whole (a run's log, config.json and results.json are written so).
    ``exclusive``: only if ``path`` does not exist yet, else FileExistsError (the check and the
    creation are one step, so two processes cannot both succeed)."""
    path = Path(path)
    _write_atomically(path, lambda handle: handle.write(text.encode()), exclusive)
    return path


def _write_atomically(path, write, exclusive=False, then=None):
    """Call ``write(handle)`` on a temporary file beside ``path``, flush it to disk, then rename it
    over ``path``. A full disk or a file-size limit becomes one line that names the file."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file readable by its owner only; a checkpoint gets the permissions of
        # any other file the process writes (0666 less the umask)
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            _create_exclusively(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            then = then or (f"the {path.name} that was there, if any, is unchanged: {{fix}} and "
                            f"run again")
            raise disk_error(path, error, then) from None
        raise


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK)


def _create_exclusively(tmp, path):
    """Give the complete file ``tmp`` the name ``path`` only if no file has it (FileExistsError
    otherwise). A hard link does it in one step and never replaces a file; where the file system
    has no hard links (FAT, some network and FUSE mounts), ``path`` is created with O_EXCL and
    the content copied in, which keeps the one-step check but not the all-or-nothing write."""
    try:
        os.link(tmp, path)
    except OSError as error:
        if error.errno not in NO_HARD_LINKS:
            raise
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as handle, open(tmp, "rb") as source:
            handle.write(source.read())
    os.unlink(tmp)


def disk_error(path, error, then):
    """A one-line OSError for a write of ``path`` that failed with ``error``; ``then`` says what
    is kept and what to do, with ``{fix}`` standing for the remedy of that error. An error other
    than a full disk or a file-size limit is returned as it is."""
    if error.errno not in DISK_FULL:
        return error
    fix = ("raise the file-size limit (ulimit -f)" if error.errno == errno.EFBIG
           else "free some space")
    disk = OSError(f"cannot write {path} ({error.strerror}); {then.format(fix=fix)}")
    disk.errno = error.errno  # str() stays the message alone, without an [Errno N] prefix
    return disk


def remove_stale_temporaries(folder, names):
    """Remove the temporary files that a process killed while writing one of ``names`` in
    ``folder`` left behind (``<name>.<random>.tmp``): nothing else would ever remove them."""
    for name in names:
        for leftover in Path(folder).glob(f"{name}.*.tmp"):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass


def _corrupt(path, error):
    return CheckpointError(f"checkpoint {path} is corrupt or not a minifrrn checkpoint "
                           f"({type(error).__name__}): use another one")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
