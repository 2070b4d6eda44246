"""Files written whole or not at all: the content goes to a temporary file beside the target, is
flushed to disk, and is then renamed over the target in one step. A crash, a kill or a full disk
while writing leaves the file that was there before (or none) instead of a truncated one.

Checkpoints, a run's log, config and results, predicted label maps and overlays, figures, the JSON
that ``eval`` and ``bench`` write, and the emulator's compiled kernels all go through
``write_atomically``.
"""
from __future__ import annotations

import errno
import os
import tempfile
import time
from pathlib import Path

__all__ = ["write_atomically", "atomic_write_text", "disk_error", "remove_stale_temporaries",
           "DISK_FULL"]


def atomic_write_text(path, text, exclusive=False):
    """Write ``text`` to ``path`` as checkpoints are written: a crash while writing leaves the file
    that was there before whole (a run's log, config.json and results.json are written so).
    ``exclusive``: only if ``path`` does not exist yet, else FileExistsError (the check and the
    creation are one step, so two processes cannot both succeed)."""
    path = Path(path)
    write_atomically(path, lambda handle: handle.write(text.encode()), exclusive)
    return path


def write_atomically(path, write, exclusive=False, then=None):
    """Call ``write(handle)`` on a temporary binary file beside ``path``, flush it to disk, then
    rename it over ``path``. A full disk or a file-size limit becomes one line that names the file;
    ``then`` says what is kept and what to do (see ``disk_error``). ``exclusive``: only if ``path``
    does not exist yet (FileExistsError otherwise)."""
    path = Path(path)
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


def remove_stale_temporaries(folder, names, older_than_s=0.0):
    """Remove the temporary files that a process killed while writing one of ``names`` in
    ``folder`` left behind (``<name>.<random>.tmp``): nothing else would ever remove them.
    ``older_than_s``: only those last written that many seconds ago, where another process may be
    writing the same names at this moment."""
    names = set(names)
    now = time.time()
    for leftover in Path(folder).glob("*.tmp"):  # one listing of the folder, however many names
        if leftover.name[:-len(".tmp")].rpartition(".")[0] not in names:
            continue
        try:
            if older_than_s <= 0 or now - leftover.stat().st_mtime >= older_than_s:
                leftover.unlink()
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            pass


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
