"""Executors: how a kernel of the ``.cu`` sources is launched.

``executor.launch(name, dtype, grid, block, args)`` runs the kernel ``name`` instantiated for
``dtype`` (``im2col`` + float32 -> ``im2col_f32``) over a launch configuration. Arguments are arrays
(NumPy or CuPy, C-contiguous) and NumPy scalars with explicit dtypes: CuPy passes a Python ``int`` as
``long long`` and checks nothing, so every scalar is typed where it is made.

* ``CupyExecutor`` compiles each source once per process with NVRTC (``cupy.RawModule``) and runs on
  the GPU.
* ``EmulatorExecutor`` compiles the *same* source with g++, together with ``cuda_emulation.h`` and
  a generated launcher per kernel that loops over every block and thread of the launch configuration,
  loads the shared library with ctypes and runs it on NumPy buffers. Built libraries are cached on
  disk by source hash. It also checks each argument against the kernel's declared parameter type,
  which catches on the CPU the mistakes CuPy would let through on the GPU.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..backend import cupy_or_none, emulation_enabled, is_gpu_array

__all__ = ["CupyExecutor", "EmulatorExecutor", "executor_for", "kernel_source", "KERNEL_FILES",
           "launch_config", "launch_config_2d", "KernelBuildError"]

HERE = Path(__file__).parent
KERNEL_FILES = {"im2col": "im2col.cu", "col2im": "im2col.cu", "bn_forward": "batchnorm.cu",
                "bn_backward": "batchnorm.cu", "bn_backward_sums": "batchnorm.cu",
                "bn_statistics": "batchnorm.cu",
                "channel_sums": "reduce.cu", "maxpool_forward": "pooling.cu",
                "maxpool_backward": "pooling.cu", "nearest_forward": "upsample.cu",
                "nearest_backward": "upsample.cu", "bilinear2x_forward": "upsample.cu",
                "bilinear2x_backward": "upsample.cu", "softmax_nll_forward": "softmax_loss.cu",
                "softmax_nll_backward": "softmax_loss.cu"}
SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
THREADS_PER_BLOCK = 256


class KernelBuildError(RuntimeError):
    """A kernel source failed to compile."""


def kernel_source(filename):
    return (HERE / filename).read_text()


def launch_config(total, threads=THREADS_PER_BLOCK, max_blocks=65_535):
    """(grid, block) for ``total`` elements: one thread each, the grid-stride loop covering the rest."""
    blocks = max(1, min(-(-int(total) // threads), max_blocks))
    return (blocks,), (threads,)


def launch_config_2d(pixels, rows, threads=THREADS_PER_BLOCK, max_blocks=65_535):
    """(grid, block) for kernels that walk ``rows`` with blockIdx.y and the ``pixels`` of a row with
    blockIdx.x·blockDim.x + threadIdx.x (grid-stride loops in both directions)."""
    if int(pixels) >= 2 ** 31 or int(rows) >= 2 ** 31:
        raise ValueError(f"{pixels} pixels x {rows} rows: the kernels count pixels and rows in "
                         "32 bits; split the batch or the image")
    x_blocks = max(1, min(-(-int(pixels) // threads), max_blocks))
    return (x_blocks, max(1, min(int(rows), max_blocks))), (threads,)


def _full_name(name, dtype):
    dtype = np.dtype(dtype)
    if dtype not in SUFFIX:
        raise TypeError(f"kernel {name}: dtype {dtype} has no instance (float32 and float64 do)")
    return f"{name}_{SUFFIX[dtype]}"


def _pad3(dims):
    dims = tuple(int(d) for d in dims)
    return dims + (1,) * (3 - len(dims))


# --- CuPy on a GPU --------------------------------------------------------------------------------

class CupyExecutor:
    _modules: dict = {}
    _lock = threading.Lock()

    def _function(self, filename, full_name):
        cp = cupy_or_none()
        with self._lock:
            module = self._modules.get(filename)
            if module is None:
                module = cp.RawModule(code=kernel_source(filename), options=("--std=c++14",))
                self._modules[filename] = module
        return module.get_function(full_name)

    def launch(self, name, dtype, grid, block, args):
        function = self._function(KERNEL_FILES[name], _full_name(name, dtype))
        function(tuple(int(g) for g in grid), tuple(int(b) for b in block), tuple(args))


# --- g++ on the CPU --------------------------------------------------------------------------------

_SIGNATURE = re.compile(r'extern "C" __global__ void (\w+)\(([^)]*)\)', re.S)
_CTYPES = {"float": ctypes.c_float, "double": ctypes.c_double, "long long": ctypes.c_longlong,
           "int": ctypes.c_int}
_NUMPY = {"float": np.float32, "double": np.float64, "long long": np.int64, "int": np.int32}


def _parse_kernels(source):
    """{kernel: [(type, name, is_pointer), ...]} from the extern "C" __global__ signatures."""
    kernels = {}
    for name, params in _SIGNATURE.findall(source):
        parsed = []
        for param in params.split(","):
            param = " ".join(param.replace("const", " ").split())
            is_pointer = "*" in param
            declared, pname = param.replace("*", " ").rsplit(None, 1)
            parsed.append((" ".join(declared.split()), pname, is_pointer))
        kernels[name] = parsed
    return kernels


def _launcher_source(filename, kernels):
    lines = ['#include "cuda_emulation.h"', "dim3 threadIdx, blockIdx, blockDim, gridDim;",
             f'#include "{filename}"', ""]
    for name, params in kernels.items():
        decl = ", ".join(f"{t}{'*' if p else ''} {n}" for t, n, p in params)
        call = ", ".join(n for _, n, _ in params)
        # the launcher's own names carry a prefix so that they never shadow a kernel parameter
        lines.append(f'extern "C" void launch_{name}(unsigned emu_gx, unsigned emu_gy, '
                     f"unsigned emu_gz, unsigned emu_bx, unsigned emu_by, unsigned emu_bz, {decl}) {{")
        lines.append("    gridDim = {emu_gx, emu_gy, emu_gz}; blockDim = {emu_bx, emu_by, emu_bz};")
        lines.append("    for (unsigned emu_z = 0; emu_z < emu_gz; ++emu_z)")
        lines.append("    for (unsigned emu_y = 0; emu_y < emu_gy; ++emu_y)")
        lines.append("    for (unsigned emu_x = 0; emu_x < emu_gx; ++emu_x) {")
        lines.append("        blockIdx = {emu_x, emu_y, emu_z};")
        lines.append("        for (unsigned emu_tz = 0; emu_tz < emu_bz; ++emu_tz)")
        lines.append("        for (unsigned emu_ty = 0; emu_ty < emu_by; ++emu_ty)")
        lines.append("        for (unsigned emu_tx = 0; emu_tx < emu_bx; ++emu_tx) {")
        lines.append(f"            threadIdx = {{emu_tx, emu_ty, emu_tz}};")
        lines.append(f"            {name}({call});")
        lines.append("        }")
        lines.append("    }")
        lines.append("}")
    return "\n".join(lines) + "\n"


def _cache_dir():
    base = os.environ.get("MINIFRRN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                            "minifrrn")
    return Path(base) / "kernels"


class EmulatorExecutor:
    _libraries: dict = {}
    _lock = threading.Lock()

    def __init__(self, compiler=None):
        self.compiler = compiler or os.environ.get("CXX", "g++")

    def _library(self, filename):
        with self._lock:
            if filename in self._libraries:
                return self._libraries[filename]
            source = kernel_source(filename)
            kernels = _parse_kernels(source)
            launcher = _launcher_source(filename, kernels)
            digest = hashlib.sha256((launcher + source + kernel_source_header()).encode()).hexdigest()
            cache = _cache_dir()
            cache.mkdir(parents=True, exist_ok=True)
            target = cache / f"{Path(filename).stem}-{digest[:16]}.so"
            if not target.exists():
                with tempfile.TemporaryDirectory() as tmp:
                    cpp = Path(tmp) / "launcher.cpp"
                    cpp.write_text(launcher)
                    out = Path(tmp) / "kernels.so"
                    command = [self.compiler, "-O2", "-shared", "-fPIC", "-std=c++14", "-I",
                               str(HERE), str(cpp), "-o", str(out)]
                    try:
                        result = subprocess.run(command, capture_output=True, text=True)
                    except FileNotFoundError:
                        raise KernelBuildError(f"the kernel emulator needs a C++ compiler: "
                                               f"{self.compiler} was not found (install g++)") from None
                    if result.returncode != 0:
                        raise KernelBuildError(f"g++ failed on {filename}:\n{result.stderr}")
                    staged = cache / f".{target.name}.{os.getpid()}.tmp"
                    staged.write_bytes(out.read_bytes())
                    os.replace(staged, target)  # atomic: a concurrent build never sees half a file
            library = ctypes.CDLL(str(target))
            functions = {}
            for name, params in kernels.items():
                function = getattr(library, f"launch_{name}")
                function.restype = None
                function.argtypes = [ctypes.c_uint] * 6 + [
                    ctypes.c_void_p if p else _CTYPES[t] for t, _, p in params]
                functions[name] = (function, params)
            self._libraries[filename] = functions
            return functions

    def launch(self, name, dtype, grid, block, args):
        full = _full_name(name, dtype)
        function, params = self._library(KERNEL_FILES[name])[full]
        if len(args) != len(params):
            raise TypeError(f"kernel {full} takes {len(params)} arguments, got {len(args)}")
        converted = []
        for arg, (declared, pname, is_pointer) in zip(args, params):
            if is_pointer:
                if not isinstance(arg, np.ndarray):
                    raise TypeError(f"kernel {full}: argument {pname} must be a NumPy array")
                if arg.dtype != _NUMPY[declared]:
                    raise TypeError(f"kernel {full}: argument {pname} is {arg.dtype}, the kernel "
                                    f"declares {declared}*")
                if not arg.flags.c_contiguous:
                    raise ValueError(f"kernel {full}: argument {pname} must be C-contiguous")
                converted.append(arg.ctypes.data)
            else:
                if not isinstance(arg, np.generic) or arg.dtype != _NUMPY[declared]:
                    raise TypeError(f"kernel {full}: argument {pname} must be a numpy "
                                    f"{np.dtype(_NUMPY[declared])} scalar (got {type(arg).__name__})")
                converted.append(arg.item())
        function(*_pad3(grid), *_pad3(block), *converted)


def kernel_source_header():
    return (HERE / "cuda_emulation.h").read_text()


_emulator = []
_cupy_executor = []


def executor_for(*arrays):
    """The executor for these arrays: CuPy for GPU arrays, the emulator for NumPy arrays when the
    GPU path is emulated (``MINIFRRN_EMULATE_GPU=1`` or ``with mf.emulate_gpu():``), else ``None``
    (the op takes its NumPy path)."""
    if any(is_gpu_array(a) for a in arrays if a is not None):
        if not _cupy_executor:
            _cupy_executor.append(CupyExecutor())
        return _cupy_executor[0]
    if emulation_enabled():
        if not _emulator:
            _emulator.append(EmulatorExecutor())
        return _emulator[0]
    return None
