"""Honest performance figures: medians over repeats after warm-up, each compared with a floor measured
in the same run, as a ratio.

* A convolution's floor is the time of the GEMMs an im2col design cannot avoid: the same ``matmul``
  calls (forward W·cols, backward gy·colsᵀ and Wᵀ·gy) on operands of the same shapes, into outputs
  allocated beforehand.
* Batch norm, pooling and upsampling are memory-bound: their floor is one pass of memory traffic over
  their inputs and outputs (forward and backward), as the time of a copy that moves as many bytes,
  timed in turn with the op.
* A whole training step (forward + backward, no optimiser) is compared with the sum of the GEMM floors
  of every convolution it runs: each repeat runs the step, then each distinct convolution's floor
  GEMMs once, and that repeat's floor is their times weighted by how often the step runs them.
* ``every_conv`` (``minifrrn bench --every-conv [frrn_a|frrn_b]``) times instead every distinct
  convolution of a FRRN A or B training step, at the size the model is trained at, against its
  floor, and their total weighted by how often the step runs each.

The ``spread`` column is (max − min)/median over the repeats: of each repeat's ratio for the rows
timed in turn with their floors (every row with a floor), of the time otherwise. A
large spread marks a figure that the machine's load moved; rerun before reading much into it.

On a GPU every timing synchronises and uses CUDA events. Peak memory is the peak of NumPy allocations
(tracemalloc) on the CPU and the CuPy memory pool's size on the GPU.
"""
from __future__ import annotations

import collections
import json
import os
import platform
import statistics
import subprocess
import time
import tracemalloc
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from . import functional as F
from .autograd import is_grad_enabled, tensor
from .functional import cpu_parallel as par
from .backend import check_device, cupy_or_none, get_array_module

__all__ = ["Row", "Context", "run_benchmarks", "format_rows", "conv_gemm_floor", "conv_gemm_step",
           "median_time",
           "median_times", "timed_runs", "spread_pct", "load_json", "format_comparison"]


@dataclass
class Row:
    name: str
    shape: str
    ms: float
    floor_ms: float | None = None
    ratio: float | None = None
    gflops: float | None = None
    peak_mib: float | None = None
    note: str = ""
    spread_pct: float | None = None  # (max − min)/median over the repeats, of the ratio if paired
    count: int | None = None  # how many times a training step runs it (``every_conv`` rows)


@dataclass
class Context:
    device: str
    repeats: int
    xp: object
    gemm_gflops: float = 0.0
    bandwidth_gbs: float = 0.0
    rows: list = field(default_factory=list)


def median_time(fn, device="cpu", repeats=5, warmup=1):
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls after ``warmup`` calls.

    On the GPU each call is timed with CUDA events after a synchronisation: work is asynchronous
    there, and a host clock would time the launch, not the kernels."""
    return median_times([fn], device, repeats, warmup)[0]


def median_times(fns, device="cpu", repeats=5, warmup=1):
    """Median wall times of several functions, timed in turn (a, b, a, b, ...) so that a slow
    stretch of a shared machine falls on all of them alike and their ratio stays fair."""
    return [statistics.median(record) for record in timed_runs(fns, device, repeats, warmup)]


def timed_runs(fns, device="cpu", repeats=5, warmup=1):
    """Every timed call of ``median_times``: one list of ``repeats`` seconds per function."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times):
            record.append(_time_once(fn, device))
    return times


def spread_pct(values):
    """(max − min)/median of ``values``, in percent: how far apart the repeats landed; None for a
    single repeat, whose spread is unknown (not 0)."""
    if len(values) < 2:
        return None
    return 100.0 * (max(values) - min(values)) / statistics.median(values)


def _time_once(fn, device):
    if device == "gpu":
        cp = cupy_or_none()
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        cp.cuda.Device().synchronize()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return cp.cuda.get_elapsed_time(start, stop) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _timer(ctx, fn, repeats=None, warmup=1):
    return median_time(fn, ctx.device, repeats or ctx.repeats, warmup)


def _timer_with_spread(ctx, fn, repeats=None):
    """(median seconds, spread %) of ``fn`` over the context's repeats."""
    (record,) = timed_runs([fn], ctx.device, repeats or ctx.repeats)
    return statistics.median(record), spread_pct(record)


def _peak_mib(ctx, fn):
    if ctx.device == "gpu":
        pool = cupy_or_none().get_default_memory_pool()
        pool.free_all_blocks()
        fn()
        return pool.total_bytes() / 2 ** 20
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()


def _rand(ctx, shape, seed=0):
    return ctx.xp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _measure_machine(ctx, tiny):
    xp = ctx.xp
    n = 256 if tiny else 2048
    a, b = _rand(ctx, (n, n)), _rand(ctx, (n, n), 1)
    t = _timer(ctx, lambda: a @ b, repeats=3)
    ctx.gemm_gflops = 2 * n ** 3 / t / 1e9
    src = _rand(ctx, (4 * 2 ** 20 if tiny else 32 * 2 ** 20,))
    dst = xp.empty_like(src)
    t = _timer(ctx, lambda: copy_pass(dst, src), repeats=5)
    ctx.bandwidth_gbs = 2 * src.nbytes / t / 1e9  # read + write


# how the memory-bound rows' floor is measured, recorded with every --json run: a comparison of
# runs whose floors were measured differently compares their times, not their ratios (runs made
# before this was recorded used one core's copy of 128 MB, measured once at the start)
MEMORY_FLOOR = "copy of the op's traffic on the ops' threads, in turn with the op"
MEMORY_BOUND_NOTE = "floor: one pass of memory traffic"  # marks those rows, in --json files too
EARLIER_MEMORY_FLOOR = "one copy measured once at the start, on one core on the CPU"


def copy_pass(dst, src):
    """Copy the 1-D array ``src`` into ``dst`` as fast as the machine's memory allows, the memory-
    bound ops' floor: on the CPU in cache-sized pieces on the threads those ops use (one core's
    ``np.copyto`` of arrays larger than the cache moved 13 GB/s on a 2-core Xeon, where both
    cores moved 24), on the GPU as one copy."""
    xp = get_array_module(dst)
    if xp is not np:
        xp.copyto(dst, src)
        return
    piece = par.CACHE_BLOCK_BYTES // src.itemsize
    par.run_ranges(lambda a, b: np.copyto(dst[a:b], src[a:b]), par.ranges(src.size, piece),
                   src.size)


def conv_gemm_floor(ctx, N, C, OC, H, W, k, stride=1, input_grad=True):
    """Median time of the GEMMs of an im2col conv forward+backward on same-sized operands: three,
    or two when no gradient flows to the input (Wᵀ·gy is then never computed)."""
    gemms, flops = conv_gemm_step(ctx, N, C, OC, H, W, k, stride, input_grad)
    return _timer(ctx, gemms), flops


def conv_gemm_step(ctx, N, C, OC, H, W, k, stride=1, input_grad=True):
    """(gemms, flops): the GEMMs that ``conv_gemm_floor`` times, as one callable, to be timed in
    turn with the convolution (``median_times``) as ``minifrrn bench`` does."""
    return _conv_gemms(ctx, N, C, OC, H, W, k, stride, input_grad)


def _output_size(H, W, k, stride):
    """(OH, OW) of a k×k convolution with 'same' padding (k − 1) // 2."""
    pad = (k - 1) // 2
    return (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1


def _gemm_operand_shapes(N, C, OC, H, W, k, stride=1, input_grad=True):
    """The shapes of the floor GEMMs' operands and outputs for one convolution (no gcols when no
    gradient flows to the input)."""
    OH, OW = _output_size(H, W, k, stride)
    ckk, hw = C * k * k, OH * OW
    shapes = {"Wm": (OC, ckk), "cols": (N, ckk, hw), "gy": (N, OC, hw), "y": (N, OC, hw),
              "gW": (OC, ckk)}
    if input_grad:
        shapes["gcols"] = (N, ckk, hw)
    return shapes


def _gemm_buffers(ctx, shapes):
    """Flat float32 buffers large enough for every operand (and output) in ``shapes`` (a list of
    ``_gemm_operand_shapes`` results): the inputs random, the outputs allocated once, so that the
    floor is GEMM time alone, whatever the allocator does (a fresh 200 MB result can cost as much
    again in first-touch page faults). Several convolutions' floors take views of one set."""
    names = {name for s in shapes for name in s}
    sizes = {name: max(int(np.prod(s[name])) for s in shapes if name in s) for name in names}
    inputs = ("Wm", "cols", "gy")
    buffers = {name: _rand(ctx, (sizes[name],), seed) for seed, name in enumerate(inputs)}
    buffers.update((name, ctx.xp.empty(size, np.float32)) for name, size in sizes.items()
                   if name not in inputs)
    return buffers


def _conv_gemms(ctx, N, C, OC, H, W, k, stride=1, input_grad=True, buffers=None):
    """The GEMMs of an im2col conv forward+backward, as a function to time, and their flops; the
    operands are views of ``buffers`` (``_gemm_buffers``), made for this convolution if None."""
    xp = ctx.xp
    shapes = _gemm_operand_shapes(N, C, OC, H, W, k, stride, input_grad)
    buffers = buffers or _gemm_buffers(ctx, [shapes])
    Wm, cols, gy, y, gW = (buffers[name][:int(np.prod(shapes[name]))].reshape(shapes[name])
                           for name in ("Wm", "cols", "gy", "y", "gW"))
    gcols = (buffers["gcols"][:int(np.prod(shapes["gcols"]))].reshape(shapes["gcols"])
             if input_grad else None)

    def gemms():
        xp.matmul(Wm, cols, out=y)
        for n in range(N):
            xp.matmul(gy[n], cols[n].T, out=gW)
        if input_grad:
            xp.matmul(Wm.T, gy, out=gcols)

    return gemms, conv_gemm_floor_flops((N, C, OC, *_output_size(H, W, k, stride), k, input_grad))


def _append_paired(ctx, row, times, floors, flops):
    """Fill ``row`` from times and floors (seconds) measured in turn, repeat by repeat: the
    medians, their ratio, the spread of the per-repeat ratios and the GFLOP/s of ``flops`` at the
    median time (none for ``flops=None``); append it to the context's rows."""
    t, floor = statistics.median(times), statistics.median(floors)
    row.ms, row.floor_ms, row.ratio = t * 1e3, floor * 1e3, t / floor
    row.gflops = None if flops is None else flops / t / 1e9
    row.spread_pct = spread_pct([a / b for a, b in zip(times, floors)])
    ctx.rows.append(row)


def _bench_conv(ctx, N, C, OC, H, W, k, input_grad=True, name="conv2d fwd+bwd", count=None):
    x = tensor(_rand(ctx, (N, C, H, W)), requires_grad=input_grad)
    Wt = tensor(_rand(ctx, (OC, C, k, k), 1), requires_grad=True)
    gy = _rand(ctx, (N, OC, H, W), 2)

    def step():
        x.zero_grad()
        Wt.zero_grad()
        F.conv2d(x, Wt, pad=(k - 1) // 2).backward(gy)

    gemms, flops = _conv_gemms(ctx, N, C, OC, H, W, k, input_grad=input_grad)
    conv_times, floor_times = timed_runs([step, gemms], ctx.device, ctx.repeats)  # interleaved
    shape = f"{N}x{C}->{OC} {H}x{W} k{k}" + ("" if input_grad else " no gx")
    _append_paired(ctx, Row(name, shape, 0.0, peak_mib=_peak_mib(ctx, step), count=count),
                   conv_times, floor_times, flops)


def _bench_memory_bound(ctx, name, shape, fn, traffic_bytes):
    """Time ``fn`` forward+backward in turn with its floor: a copy that moves the op's memory
    traffic (``traffic_bytes(x bytes, y bytes)``, half of it read and half written), so that a
    slow stretch of the machine falls on the op and its floor alike, as for the convolutions."""
    x = tensor(_rand(ctx, shape), requires_grad=True)
    out = fn(x)
    gy = _rand(ctx, out.shape, 3)

    def step():
        x.zero_grad()
        fn(x).backward(gy)

    half = traffic_bytes(x.data.nbytes, out.data.nbytes) // 2
    src = ctx.xp.full(half // 4, 1.5, np.float32)  # filled: every page is touched before timing
    dst = ctx.xp.empty_like(src)
    times, floors = timed_runs([step, lambda: copy_pass(dst, src)], ctx.device, ctx.repeats)
    _append_paired(ctx, Row(name, "x".join(map(str, shape)), 0.0, note=MEMORY_BOUND_NOTE),
                   times, floors, None)


def _conv_shapes_of(model, x):
    """Record (N, C, OC, H, W, k, input_grad) of every conv2d a training forward runs; input_grad
    says whether backward computes its gx (not for the first layer, whose input is the image).
    The convolutions are not computed: each returns zeros of its output's shape, which is all the
    record needs (FRRN B's forward at 512×1024 takes 22 s on two cores, almost all of it in them)."""
    from .functional import conv as conv_module
    shapes, original = [], conv_module.Conv2dFunction.forward

    def recording(self, xa, Wa, b=None):
        # inside a checkpointed block the first forward records nothing; its re-run in backward
        # computes every gx, so count one there
        input_grad = bool(self.needs_input_grad[0]) or not is_grad_enabled()
        (N, C, H, W), (OC, _, KH, KW) = xa.shape, Wa.shape
        shapes.append((N, C, OC, H, W, KH, input_grad))
        OH = conv_module.conv_output_size(H, KH, self.SH, self.PH)
        OW = conv_module.conv_output_size(W, KW, self.SW, self.PW)
        return get_array_module(xa).zeros((N, OC, OH, OW), dtype=xa.dtype)

    conv_module.Conv2dFunction.forward = recording
    try:
        model(x)  # recording a graph, as training does, so that needs_input_grad is the real one
    finally:
        conv_module.Conv2dFunction.forward = original
    return shapes


def _bench_model(ctx, name, builder, H, W, checkpoint=False, repeats=None):
    model = builder(seed=0, checkpoint=checkpoint).to(ctx.device)
    x = tensor(_rand(ctx, (1, 3, H, W)))
    target = ctx.xp.asarray(np.random.default_rng(4).integers(0, 19, (1, H, W)))

    def step():
        model.zero_grad()
        F.bootstrapped_cross_entropy(model(x), target).backward()

    counts = collections.Counter(_conv_shapes_of(model, x))
    # the floor GEMMs of every distinct conv shape, timed in turn with the step (step, then each
    # shape once, every repeat), on views of one set of buffers sized for the largest
    buffers = _gemm_buffers(ctx, [_gemm_operand_shapes(*shape[:6], input_grad=shape[6])
                                  for shape in counts])
    gemms = [_conv_gemms(ctx, *shape[:6], input_grad=shape[6], buffers=buffers)[0]
             for shape in counts]
    step_times, *gemm_times = timed_runs([step] + gemms, ctx.device, repeats or ctx.repeats)
    del buffers, gemms
    floors = [sum(count * times[r] for count, times in zip(counts.values(), gemm_times))
              for r in range(len(step_times))]
    flops = sum(conv_gemm_floor_flops(shape) * count for shape, count in counts.items())
    label = f"{name} train step" + (" (checkpointing)" if checkpoint else "")
    row = Row(label, f"1x3x{H}x{W}", 0.0, peak_mib=_peak_mib(ctx, step),
              note="floor: sum of its conv GEMM floors")
    _append_paired(ctx, row, step_times, floors, flops)


def _bench_model_convs(ctx, name, builder, H, W):
    """Every distinct convolution of a training step of ``builder``'s model on one H×W image, each
    against its GEMM floor (one row per shape, with how often the step runs it), then one row of
    their sum weighted by those counts: the step's convolutions against their floors."""
    model = builder(seed=0)
    counts = collections.Counter(_conv_shapes_of(model, tensor(np.zeros((1, 3, H, W), np.float32))))
    first = len(ctx.rows)
    # largest images first, then by channels
    for shape, count in sorted(counts.items(), key=lambda item: (-item[0][3] * item[0][4],
                                                                 item[0][1:3], item[0][5])):
        N, C, OC, h, w, k, input_grad = shape
        _bench_conv(ctx, N, C, OC, h, w, k, input_grad=input_grad, name=f"{name} conv x{count}",
                    count=count)
    rows = ctx.rows[first:]
    ms = sum(r.count * r.ms for r in rows)
    floor_ms = sum(r.count * r.floor_ms for r in rows)
    flops = sum(conv_gemm_floor_flops(shape) * count for shape, count in counts.items())
    ctx.rows.append(Row(f"{name} convs, weighted", f"{sum(counts.values())} convs, {len(counts)} "
                        f"shapes", ms, floor_ms, ms / floor_ms, gflops=flops / ms / 1e6,
                        note="sum over the rows above, each times its count",
                        count=sum(counts.values())))


def conv_gemm_floor_flops(shape):
    """Flops of the floor GEMMs of (N, C, OC, OH, OW, k[, input_grad])."""
    N, C, OC, H, W, k = shape[:6]
    input_grad = shape[6] if len(shape) > 6 else True
    return (3 if input_grad else 2) * 2 * OC * C * k * k * H * W * N


# the image size each model's convolutions are timed at by ``every_conv``: the size it is trained
# at (Cityscapes downsampled 4x for FRRN A, 2x for FRRN B)
EVERY_CONV_SIZES = {"frrn_a": (256, 512), "frrn_b": (512, 1024)}


def run_benchmarks(device="cpu", quick=False, tiny=False, repeats=None, checkpointing=True,
                   every_conv=None):
    """Run every benchmark and return (rows, machine dict). ``every_conv`` ("frrn_a", "frrn_b", or
    True for FRRN A): instead, every distinct convolution of that model's training step on one
    image of its training size (``EVERY_CONV_SIZES``; frrn_tiny at 32×64 with ``tiny``), each
    against its GEMM floor, and their total weighted by how often the step runs each."""
    check_device(device)
    if repeats is not None and repeats < 1:
        raise ValueError(f"--repeats must be >= 1 (or left out for the default), got {repeats}")
    if every_conv is True:
        every_conv = "frrn_a"
    if every_conv and every_conv not in EVERY_CONV_SIZES:
        raise ValueError(f"--every-conv takes one of {', '.join(EVERY_CONV_SIZES)}, "
                         f"got {every_conv!r}")
    xp = cupy_or_none() if device == "gpu" else np
    ctx = Context(device, repeats or (3 if quick or tiny else 5), xp)
    _measure_machine(ctx, tiny)
    from . import models
    from .models import FRRU, frrn_a, frrn_tiny
    if every_conv:
        if tiny:
            _bench_model_convs(ctx, "frrn_tiny", frrn_tiny, 32, 64)
        else:
            _bench_model_convs(ctx, every_conv, getattr(models, every_conv),
                               *EVERY_CONV_SIZES[every_conv])
        return ctx.rows, _machine(ctx)
    s = 8 if tiny else 1
    convs = [(1, 128, 96, 64, 128, 3), (1, 224, 192, 32, 64, 3), (1, 96, 48, 128, 256, 3),
             (1, 96, 32, 128, 256, 1), (1, 3, 48, 256, 512, 5)]
    if not quick and not tiny:
        # the full-resolution stream's 3x3 conv, and the deepest stages' (FRRN A at 1/8 and 1/16:
        # 384 channels of y, plus the 32 of the pooled residual stream on a stage's first unit)
        convs += [(1, 48, 48, 256, 512, 3), (1, 384, 384, 32, 64, 3), (1, 416, 384, 16, 32, 3)]
    for N, C, OC, H, W, k in convs:
        # the stem's input is the image: FRRN never computes its gx
        _bench_conv(ctx, N, max(1, C // s), max(1, OC // s), H // s, W // s, k, input_grad=C != 3)
    act = (1, 48 // s if tiny else 48, 256 // s, 512 // s)
    gamma, beta = tensor(xp.ones(act[1], np.float32)), tensor(xp.full(act[1], 0.1, np.float32))
    for label, relu in (("batch_norm fwd+bwd", False), ("batch_norm+relu (fused) fwd+bwd", True)):
        # forward reads x, writes y; backward reads gy and x, writes gx
        _bench_memory_bound(ctx, label, act,
                            lambda x, relu=relu: F.batch_norm(x, gamma, beta, None, None, True,
                                                              relu=relu),
                            lambda xb, yb: 2 * xb + yb + 2 * yb)
    for k in (2, 8):
        _bench_memory_bound(ctx, f"max_pool2d {k}x{k} fwd+bwd", act,
                            lambda x, k=k: F.max_pool2d(x, k), lambda xb, yb: 2 * xb + 2 * yb)
    small = (1, act[1], act[2] // 2, act[3] // 2)
    _bench_memory_bound(ctx, "upsample_nearest2d x2 fwd+bwd", small,
                        lambda x: F.upsample_nearest2d(x, 2), lambda xb, yb: 2 * xb + 2 * yb)
    _bench_memory_bound(ctx, "upsample_bilinear2x fwd+bwd", small, F.upsample_bilinear2x,
                        lambda xb, yb: 2 * xb + 2 * yb)
    # one FRRU of FRRN A's second stage: y 96->192 channels at 1/4, z 32 channels at full resolution
    Hz, Wz = (32, 64) if tiny else (128, 256)
    unit = FRRU(4, 192 // s, 96 // s, z_channels=32 // s).to(device)
    y = tensor(_rand(ctx, (1, 96 // s, Hz // 4, Wz // 4)), requires_grad=True)
    z = tensor(_rand(ctx, (1, 32 // s, Hz, Wz)), requires_grad=True)

    def frru_step():
        y_out, z_out = unit(y, z)
        (y_out.sum() + z_out.sum()).backward()

    t, spread = _timer_with_spread(ctx, frru_step)
    ctx.rows.append(Row("FRRU(4, 192) fwd+bwd", f"y 1/4, z 32x{Hz}x{Wz}", t * 1e3,
                        peak_mib=_peak_mib(ctx, frru_step), spread_pct=spread))
    if tiny:
        _bench_model(ctx, "frrn_tiny", frrn_tiny, 32, 64)
    else:
        _bench_model(ctx, "frrn_tiny", frrn_tiny, 128, 256)
        if not quick:
            _bench_model(ctx, "frrn_a", frrn_a, 256, 512, repeats=3)
            if checkpointing:
                _bench_model(ctx, "frrn_a", frrn_a, 256, 512, checkpoint=True, repeats=3)
    return ctx.rows, _machine(ctx)


def _machine(ctx):
    """What the figures were measured on: device, GEMM rate, copy bandwidth, versions, commit."""
    machine = {"device": ctx.device, "gemm_gflops": ctx.gemm_gflops,
               "copy_bandwidth_gbs": ctx.bandwidth_gbs, "memory_floor": MEMORY_FLOOR,
               "platform": platform.platform(),
               "numpy": np.__version__, "commit": _commit()}
    if ctx.device == "gpu":
        cp = cupy_or_none()
        machine["gpu"] = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
        machine["cupy"] = cp.__version__
    return machine


def _commit():
    """The commit of minifrrn's source tree (not of the working directory), or None outside git."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _fmt(v, spec):
    return "" if v is None else format(v, spec)


def format_rows(rows, machine):
    header = (f"{'benchmark':<34}{'shape':<26}{'median ms':>11}{'floor ms':>10}{'ratio':>7}"
              f"{'spread':>8}{'GFLOP/s':>9}{'peak MiB':>10}")
    lines = [f"device {machine['device']}"
             + (f" ({machine['gpu']})" if machine.get("gpu") else "")
             + f": large GEMM {machine['gemm_gflops']:.0f} GFLOP/s, copy "
             f"{machine['copy_bandwidth_gbs']:.1f} GB/s (read+write)", header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.name:<34}{r.shape:<26}{r.ms:>11.2f}{_fmt(r.floor_ms, '.2f'):>10}"
                     f"{_fmt(r.ratio, '.2f'):>7}"
                     f"{'' if r.spread_pct is None else format(r.spread_pct, '.0f') + '%':>8}"
                     f"{_fmt(r.gflops, '.0f'):>9}"
                     f"{_fmt(r.peak_mib, '.0f'):>10}")
    return "\n".join(lines)


def to_json(rows, machine):
    return json.dumps({"machine": machine, "rows": [asdict(r) for r in rows]}, indent=1)


def load_json(path):
    """(rows, machine) from a file ``minifrrn bench --json`` wrote; a missing, unreadable or
    foreign file raises ValueError (FileNotFoundError if missing) naming it."""
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: give a file written by "
                                f"minifrrn bench --json") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not JSON ({error}): give a file written by "
                         f"minifrrn bench --json") from None
    known = {f.name for f in fields(Row)}
    try:
        machine = data["machine"]
        machine["device"], machine["gemm_gflops"], machine["copy_bandwidth_gbs"]
        # fields a later version may add are left out; name, shape and ms are required
        rows = [Row(**{key: value for key, value in row.items() if key in known})
                for row in data["rows"]]
    except (TypeError, KeyError, AttributeError):
        raise ValueError(f"{path} is not a minifrrn bench --json file (it needs 'machine' and "
                         f"'rows' as the bench writes them): give a file written by "
                         f"minifrrn bench --json") from None
    return rows, machine


def _describe_run(label, machine):
    return (f"{label}: {machine['device']}" + (f" ({machine['gpu']})" if machine.get("gpu") else "")
            + f", commit {machine.get('commit') or 'unknown'}, large GEMM "
            f"{machine['gemm_gflops']:.0f} GFLOP/s, copy {machine['copy_bandwidth_gbs']:.1f} GB/s")


def format_comparison(old, new):
    """Two bench runs side by side, from ``load_json``'s (rows, machine) of each: per benchmark
    (matched by name and shape) both ratios to their floors, both median times and new/old time.
    Each ratio carries its own run's floor, so it stands up better to a change of the machine's
    state between the runs than the times do; rows found in one run only are listed last."""
    (old_rows, old_machine), (new_rows, new_machine) = old, new
    header = (f"{'benchmark':<34}{'shape':<26}{'old ratio':>10}{'new ratio':>10}{'old ms':>10}"
              f"{'new ms':>10}{'new/old ms':>11}")
    lines = [_describe_run("old", old_machine), _describe_run("new", new_machine), header,
             "-" * len(header)]
    old_by_key = {(r.name, r.shape): r for r in old_rows}
    new_keys = {(r.name, r.shape) for r in new_rows}
    for r in new_rows:
        before = old_by_key.get((r.name, r.shape))
        if before is None:
            continue
        lines.append(f"{r.name:<34}{r.shape:<26}{_fmt(before.ratio, '.2f'):>10}"
                     f"{_fmt(r.ratio, '.2f'):>10}{before.ms:>10.2f}{r.ms:>10.2f}"
                     f"{r.ms / before.ms if before.ms > 0 else float('nan'):>11.2f}")
    only = ([f"only in old: {r.name}  {r.shape}" for r in old_rows
             if (r.name, r.shape) not in new_keys]
            + [f"only in new: {r.name}  {r.shape}" for r in new_rows
               if (r.name, r.shape) not in old_by_key])
    floors = [machine.get("memory_floor", EARLIER_MEMORY_FLOOR)
              for machine in (old_machine, new_machine)]
    memory_bound = [any(r.note == MEMORY_BOUND_NOTE for r in rows) for rows in (old_rows, new_rows)]
    if floors[0] != floors[1] and all(memory_bound):
        only.append(f"note: the memory-bound rows' floors were measured differently (old: "
                    f"{floors[0]}; new: {floors[1]}): compare their times, not their ratios")
    return "\n".join(lines + only)
