"""Which array module holds an array, moving arrays between devices, and whether a GPU is usable.

minifrrn never switches ``numpy`` for ``cupy`` globally. Every op asks its inputs which module they
live in (the ``xp`` idiom)::

    xp = get_array_module(x, W)      # numpy for NumPy arrays, cupy for CuPy arrays
    y = xp.maximum(x, 0)

so the CPU and the GPU can be used side by side in one program. Mixing a NumPy and a CuPy array in
one op is a mistake that NumPy would otherwise turn into a slow implicit copy or a cryptic error;
``get_array_module`` raises one clear ``TypeError`` instead.

Devices are named ``"cpu"`` (NumPy) and ``"gpu"`` (CuPy, the current CUDA device).

The *GPU path* of every op (the hand-written CUDA kernels and their launch arithmetic) can also run on
the CPU, with NumPy arrays and a C++ emulator of the kernels (``minifrrn.kernels``). That is how the
tests and the lessons exercise GPU code on machines without a GPU. It is switched on by the
environment variable ``MINIFRRN_EMULATE_GPU=1`` or, in code, by ``with emulate_gpu(): ...``.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading

import numpy as np

__all__ = [
    "GPUUnavailableError", "cupy_or_none", "gpu_available", "get_array_module", "is_gpu_array",
    "device_of", "to_device", "as_numpy", "check_device", "emulate_gpu", "emulation_enabled",
]

DEVICES = ("cpu", "gpu")
_INSTALL_HINT = ('install the GPU extra with: pip install "minifrrn[gpu]" (CUDA 12) or '
                 '"minifrrn[gpu-cuda13]" (CUDA 13)')


class GPUUnavailableError(RuntimeError):
    """Raised when the GPU is asked for but CuPy or a CUDA device is missing."""


_cupy_cache: list = []


def cupy_or_none():
    """Return the ``cupy`` module, or ``None`` when it cannot be imported (never raises)."""
    if not _cupy_cache:
        try:
            import cupy  # noqa: F401  (optional dependency)
            _cupy_cache.append(cupy)
        except Exception:  # ImportError, or a broken CUDA install raising at import time
            _cupy_cache.append(None)
    return _cupy_cache[0]


def gpu_available() -> bool:
    """True when CuPy imports and at least one CUDA device answers. Never raises."""
    cp = cupy_or_none()
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _why_no_gpu() -> str:
    if cupy_or_none() is None:
        return f"CuPy is not installed: {_INSTALL_HINT}"
    return "CuPy is installed but no CUDA device answers: check the driver with nvidia-smi"


def require_gpu() -> None:
    """Raise ``GPUUnavailableError`` (one line: what is missing and how to fix it) unless a GPU works."""
    if not gpu_available():
        raise GPUUnavailableError(f"device 'gpu' requested but {_why_no_gpu()}")


_GPU_TYPES: dict = {}  # type -> whether it is CuPy's: asked thousands of times per training step


def is_gpu_array(x) -> bool:
    """True for a CuPy ndarray (checked without importing CuPy when it was never imported)."""
    kind = type(x)
    on_gpu = _GPU_TYPES.get(kind)
    if on_gpu is None:
        on_gpu = _GPU_TYPES[kind] = kind.__module__.split(".")[0] == "cupy"
    return on_gpu


def get_array_module(*arrays):
    """Return ``numpy`` or ``cupy``: the module that holds ``arrays``.

    Non-array arguments (Python scalars, ``None``) are ignored. Raises ``TypeError`` when NumPy and
    CuPy arrays are mixed, naming both and the fix.
    """
    on_gpu = on_cpu = False
    for a in arrays:
        if a is None or isinstance(a, (int, float, bool, complex)):
            continue
        if is_gpu_array(a):
            on_gpu = True
        elif isinstance(a, (np.ndarray, np.generic)):
            on_cpu = True
    if on_gpu and on_cpu:
        kinds = ", ".join(type(a).__module__.split(".")[0] + "." + type(a).__name__
                          for a in arrays if a is not None)
        raise TypeError(
            f"arrays on different devices in one op ({kinds}): move them to one device first "
            "with tensor.to('cpu') or tensor.to('gpu')")
    if on_gpu:
        return cupy_or_none()
    return np


def device_of(x) -> str:
    """``"gpu"`` for a CuPy array, else ``"cpu"``."""
    return "gpu" if is_gpu_array(x) else "cpu"


def check_device(device: str) -> str:
    """Validate a device name; return it. ``"gpu"`` also checks that a GPU is usable."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "gpu":
        require_gpu()
    return device


def to_device(x, device: str):
    """Return ``x`` as an array on ``device`` (a no-op when it is already there)."""
    check_device(device)
    if device == "cpu":
        return as_numpy(x)
    cp = cupy_or_none()
    return cp.asarray(x)


def as_numpy(x):
    """Return a NumPy array for a NumPy or CuPy array (copying from the GPU when needed)."""
    if is_gpu_array(x):
        return x.get()
    return np.asarray(x)


# --- the GPU path on the CPU ---------------------------------------------------------------------

_emulation = threading.local()


def emulation_enabled() -> bool:
    """True when ops on NumPy arrays must take their GPU path through the kernel emulator."""
    value = getattr(_emulation, "enabled", None)
    if value is None:
        return os.environ.get("MINIFRRN_EMULATE_GPU", "0") not in ("", "0", "false", "False")
    return value


@contextlib.contextmanager
def emulate_gpu(enabled: bool = True):
    """Run the GPU path of every op on NumPy arrays through the CPU kernel emulator, in this block."""
    previous = getattr(_emulation, "enabled", None)
    _emulation.enabled = enabled
    try:
        yield
    finally:
        _emulation.enabled = previous


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4


def tune_cpu_allocator(mmap_threshold=32 << 20, trim_threshold=None, mmap=False) -> bool:
    """Let the C allocator keep and reuse freed memory, instead of giving it back to the kernel.

    By default glibc returns large freed blocks to the operating system, so every op that makes a
    new activation or gradient of a few MB gets fresh pages, and the kernel zero-fills them on first
    touch: an extra pass over memory for nearly every op of a training step. Keeping freed memory
    removes that pass.

    * ``trim_threshold`` (bytes of free memory at the top of the heap before glibc gives it back)
      defaults to never: a training step frees its activations in backward and needs them again in
      the next forward, so a trimmed heap faults the whole forward in again.
    * ``mmap=False`` (the default) serves every allocation from the heap. glibc maps blocks above
      ``mmap_threshold`` (32 MB at most) separately and unmaps them on free, so FRRN A's 64 MB
      activations and gradients would land on fresh pages every time; on the two-core machine the
      figures below come from, a first touch of such pages cost up to ten times a pass over warm
      memory (one 64 MB gradient addition: 180 ms instead of 17 ms). With ``mmap=True`` only
      blocks up to ``mmap_threshold`` come from the heap.

    Measured on two cores: a frrn_tiny step about 20% faster than glibc's defaults; a frrn_a step
    (2 GiB of activations) 7% faster with a never-trimmed heap than with a 1 GiB trim threshold, and
    5% faster again with every block on the heap, at the same peak memory. The cost: the process
    keeps its peak memory until it exits. Process-wide, so the ``minifrrn`` command does it and a
    library user may choose to. Returns False where the C library has no ``mallopt`` (not glibc).
    """
    import ctypes
    import ctypes.util
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim = -1 if trim_threshold is None else int(trim_threshold)  # -1: never trim (mallopt(3))
    # M_MMAP_MAX = 0: no block is mapped on its own; glibc still maps memory if the heap cannot grow
    mapped_blocks = 1 << 16 if mmap else 0  # glibc's default maximum, or none
    return bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) and mallopt(_M_TRIM_THRESHOLD, trim)
                and mallopt(_M_MMAP_MAX, mapped_blocks))
