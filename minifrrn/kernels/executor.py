"""Executors: how a kernel of the ``.cu`` sources is launched.

``executor.launch(name, dtype, grid, block, args)`` runs the kernel ``name`` instantiated for
``dtype`` (``im2col`` + float32 -> ``im2col_f32``) over a launch configuration. Arguments are arrays
(NumPy or CuPy, C-contiguous) and NumPy scalars with explicit dtypes: CuPy passes a Python ``int`` as
``long long`` and checks nothing, so every scalar is typed where it is made.

``executor.gemm(a, b, out, transpose_a, transpose_b, accumulate, alpha)`` is the matrix product the
kernels are combined with (``out = α·op(a) @ op(b)``, or ``out += ...``; batched when either operand
is 3-D, a 2-D operand shared by the whole batch).

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
import functools
import hashlib
import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..backend import cupy_or_none, emulation_enabled, is_gpu_array
from ..files import write_atomically

__all__ = ["CupyExecutor", "EmulatorExecutor", "executor_for", "kernel_source", "KERNEL_FILES",
           "launch_config", "launch_config_2d", "KernelBuildError", "gemm_shape"]

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


# launch configurations and kernel sizes are cached: a training step asks for the same few hundred
# again and again, and working them out in Python costs host time the GPU waits for
INT32_MAX = 2 ** 31 - 1


@functools.lru_cache(maxsize=4096)
def launch_config(total, threads=THREADS_PER_BLOCK, max_blocks=65_535):
    """(grid, block) for ``total`` elements: one thread each, the grid-stride loop covering the rest."""
    blocks = max(1, min(-(-int(total) // threads), max_blocks))
    return (blocks,), (threads,)


@functools.lru_cache(maxsize=4096)
def launch_config_2d(pixels, rows, threads=THREADS_PER_BLOCK, max_blocks=65_535):
    """(grid, block) for kernels that walk ``rows`` with blockIdx.y and the ``pixels`` of a row with
    blockIdx.x·blockDim.x + threadIdx.x (grid-stride loops in both directions). The kernels count
    both, and step past the last of each, in 32-bit ints: a loop's index reaches the count plus one
    stride (the threads of the grid in x, its blocks in y) before it stops, so that must fit."""
    x_blocks = max(1, min(-(-int(pixels) // threads), max_blocks))
    y_blocks = max(1, min(int(rows), max_blocks))
    if int(pixels) + x_blocks * threads > INT32_MAX or int(rows) + y_blocks > INT32_MAX:
        raise ValueError(f"{pixels} pixels x {rows} rows: the kernels count pixels and rows in "
                         "32 bits; split the batch or the image")
    return (x_blocks, y_blocks), (threads,)


def _full_name(name, dtype):
    dtype = np.dtype(dtype)
    if dtype not in SUFFIX:
        raise TypeError(f"kernel {name}: dtype {dtype} has no instance (float32 and float64 do)")
    return f"{name}_{SUFFIX[dtype]}"


def gemm_shape(a, b, transpose_a=False, transpose_b=False):
    """(batch, m, n, k) of op(a) @ op(b), with op(a) (m, k) and op(b) (k, n), for 2-D or 3-D
    C-contiguous operands of one dtype; batch is 0 when both are 2-D, else the leading size of the
    3-D one(s)."""
    for name, v in (("a", a), ("b", b)):
        if v.ndim not in (2, 3):
            raise ValueError(f"gemm: {name} must be 2-D or 3-D, got shape {tuple(v.shape)}")
        if not v.flags.c_contiguous:
            raise ValueError(f"gemm: {name} must be C-contiguous (transpose with transpose_{name})")
    if a.dtype != b.dtype or a.dtype not in SUFFIX:
        raise TypeError(f"gemm: operands must be both float32 or both float64, got {a.dtype} and "
                        f"{b.dtype}")
    m, k = a.shape[-2:][::-1] if transpose_a else a.shape[-2:]
    kb, n = b.shape[-2:][::-1] if transpose_b else b.shape[-2:]
    batches = {v.shape[0] for v in (a, b) if v.ndim == 3}
    if k != kb or len(batches) > 1:
        raise ValueError(f"gemm: shapes {tuple(a.shape)} and {tuple(b.shape)} do not multiply "
                         f"(transpose_a={transpose_a}, transpose_b={transpose_b})")
    return (batches.pop() if batches else 0), m, n, k


def _check_out(out, batch, m, n, dtype):
    shape = ((batch,) if batch else ()) + (m, n)
    if tuple(out.shape) != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"gemm: out must be a C-contiguous {dtype} array of shape {shape}, got "
                         f"{out.dtype} {tuple(out.shape)}")


def _matmul_gemm(xp, a, b, out, transpose_a, transpose_b, accumulate, alpha):
    """The ``gemm`` contract with the array module's matmul: the emulator's product, and CuPy's
    where it has no cuBLAS binding by the expected name."""
    batch, m, n, k = gemm_shape(a, b, transpose_a, transpose_b)
    if accumulate and out is None:
        raise ValueError("gemm: accumulate needs out")
    product = xp.matmul(a.swapaxes(-1, -2) if transpose_a else a,
                        b.swapaxes(-1, -2) if transpose_b else b)
    if alpha != 1:
        product *= a.dtype.type(alpha)
    if out is None:
        return product
    _check_out(out, batch, m, n, a.dtype)
    if accumulate:
        out += product
    else:
        out[...] = product
    return out


def _pad3(dims):
    dims = tuple(int(d) for d in dims)
    return dims + (1,) * (3 - len(dims))


# --- CuPy on a GPU --------------------------------------------------------------------------------

_cublas_binding: list = []


def _cublas():
    """CuPy's thin cuBLAS binding (looked up once), or None where this CuPy has none by the
    expected name."""
    if not _cublas_binding:
        try:
            from cupy_backends.cuda.libs import cublas
        except ImportError:
            try:
                from cupy.cuda import cublas
            except ImportError:
                cublas = None
        _cublas_binding.append(cublas if hasattr(cublas, "sgemmStridedBatched") else None)
    return _cublas_binding[0]


class CupyExecutor:
    """Launches on the GPU. Every call's host time counts: a FRRN A step at 256×512 issues about
    500 kernels and 200 matrix products, and through CuPy's general-purpose calls Python issued
    them more slowly than the GPU ran them. So compiled kernels are looked up once per (name,
    dtype, device), and ``gemm`` calls cuBLAS directly rather than through ``cupy.matmul``, whose
    checks, broadcasting and copies of transposed operands cost more host time than the call
    itself."""

    _modules: dict = {}
    _functions: dict = {}
    _lock = threading.Lock()
    # α = 1 and β = 0 or 1, as host scalars (cuBLAS's default pointer mode): their addresses
    _ZERO_ONE = {np.dtype(t): np.array([0, 1], t) for t in (np.float32, np.float64)}

    def _function(self, filename, full_name):
        cp = cupy_or_none()
        with self._lock:
            module = self._modules.get(filename)
            if module is None:
                module = cp.RawModule(code=kernel_source(filename), options=("--std=c++14",))
                self._modules[filename] = module
        return module.get_function(full_name)

    def launch(self, name, dtype, grid, block, args):
        key = (name, dtype, cupy_or_none().cuda.runtime.getDevice())  # modules load per device
        function = self._functions.get(key)
        if function is None:
            function = self._function(KERNEL_FILES[name], _full_name(name, dtype))
            self._functions[key] = function
        function(tuple(map(int, grid)), tuple(map(int, block)), tuple(args))

    def gemm(self, a, b, out=None, transpose_a=False, transpose_b=False, accumulate=False,
             alpha=1):
        """out = α·op(a) @ op(b) (``accumulate``: out += ...) as one cuBLAS strided-batched
        GEMM. cuBLAS is column-major and a row-major matrix read column-major is its transpose, so
        it computes outᵀ = op(b)ᵀ·op(a)ᵀ: b first, a second, each transposed in place by a flag; a
        2-D operand of a batched product has batch stride 0."""
        cp = cupy_or_none()
        cublas = _cublas()
        if cublas is None:  # no binding by that name: the array module's product
            return _matmul_gemm(cp, a, b, out, transpose_a, transpose_b, accumulate, alpha)
        batch, m, n, k = gemm_shape(a, b, transpose_a, transpose_b)
        if out is None:
            if accumulate:
                raise ValueError("gemm: accumulate needs out")
            out = cp.empty(((batch,) if batch else ()) + (m, n), dtype=a.dtype)
        _check_out(out, batch, m, n, a.dtype)
        scalars = self._ZERO_ONE[a.dtype]
        zero, one = scalars.ctypes.data, scalars.ctypes.data + scalars.itemsize
        scale = np.array(alpha, a.dtype) if alpha != 1 else None  # read by cuBLAS during the call
        call = cublas.sgemmStridedBatched if a.dtype == np.float32 else cublas.dgemmStridedBatched
        call(cp.cuda.device.get_cublas_handle(),
             1 if transpose_b else 0, 1 if transpose_a else 0, n, m, k,
             one if scale is None else scale.ctypes.data,
             b.data.ptr, b.shape[-1], k * n if b.ndim == 3 else 0,
             a.data.ptr, a.shape[-1], m * k if a.ndim == 3 else 0,
             one if accumulate else zero, out.data.ptr, n, m * n, max(batch, 1))
        return out


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
        lines.append("            threadIdx = {emu_tx, emu_ty, emu_tz};")
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
                    # atomic: a concurrent build never sees half a file, and an interrupted copy
                    # leaves no temporary behind
                    write_atomically(target, lambda handle: handle.write(out.read_bytes()))
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

    def gemm(self, a, b, out=None, transpose_a=False, transpose_b=False, accumulate=False,
             alpha=1):
        """out = α·op(a) @ op(b) (or out += ...) with NumPy, under the GPU path's contract: the
        same shape, dtype and contiguity checks as ``CupyExecutor.gemm``."""
        return _matmul_gemm(np, a, b, out, transpose_a, transpose_b, accumulate, alpha)


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
