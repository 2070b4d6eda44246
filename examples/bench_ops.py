"""Time conv2d at FRRN A's shapes against its GEMM floor: how far the convolution is from the
matrix multiplications it cannot avoid.

An im2col convolution's forward and backward are three GEMMs (W·cols, gy·colsᵀ, Wᵀ·gy) plus the data
movement around them (im2col, col2im, reshapes). ``minifrrn.bench.conv_gemm_step`` runs those three
GEMMs alone on operands of the same shapes, timed in turn with the convolution, so the ratio
``conv time / floor`` says how much the rest costs, whatever the machine: 1.0 would be perfect.
(On the CPU, stride-1 convolutions build cols one cache-sized band of output rows at a time, so
that it is never written to memory whole; the floor stays the im2col GEMMs on whole operands.)
``minifrrn bench`` prints the same measure for every op and the whole model; this script is the few
lines to adapt when you want your own shapes.

    python examples/bench_ops.py                         # FRRN A's shapes at 256x512, CPU: ~1 min
    python examples/bench_ops.py --device gpu --repeats 20
    python examples/bench_ops.py --scale 8 --repeats 1   # 1/8 of the channels and sides: seconds

Timings are medians after one warm-up call, the convolution and its GEMMs timed in turn; on the GPU
each one is bracketed by CUDA events.
"""
from __future__ import annotations

import argparse

import numpy as np

import minifrrn as mf
import minifrrn.functional as F
from minifrrn.backend import GPUUnavailableError, check_device, cupy_or_none, to_device
from minifrrn.bench import Context, conv_gemm_step, median_times

# (label, N, C, OC, H, W, k): convolutions FRRN A runs on one 256x512 image
FRRN_A_CONVS = [
    ("stem CBR(5, 48)", 1, 3, 48, 256, 512, 5),
    ("RU(48) 3x3, full resolution", 1, 48, 48, 256, 512, 3),
    ("FRRU(2, 96) 3x3, 1/2", 1, 96 + 32, 96, 128, 256, 3),
    ("FRRU(4, 192) 3x3, 1/4", 1, 192 + 32, 192, 64, 128, 3),
    ("FRRU(2, 96) to z, 1x1", 1, 96, 32, 128, 256, 1),
]


def conv_step(N, C, OC, H, W, k, device):
    """One conv2d forward + backward (gradients for x and W) at one shape, as a callable."""
    rng = np.random.default_rng(0)
    x = mf.tensor(to_device(rng.standard_normal((N, C, H, W), dtype=np.float32), device),
                  requires_grad=True)
    weight = mf.tensor(to_device(rng.standard_normal((OC, C, k, k), dtype=np.float32), device),
                       requires_grad=True)
    upstream = to_device(rng.standard_normal((N, OC, H, W), dtype=np.float32), device)

    def step():
        # gradients accumulate: clear them so every repeat does the same work
        x.zero_grad()
        weight.zero_grad()
        F.conv2d(x, weight, pad=(k - 1) // 2).backward(upstream)

    return step


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bench_ops.py", description="conv2d at FRRN A's shapes against its GEMM floor.")
    parser.add_argument("--device", default="cpu", help="cpu (default) or gpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    parser.add_argument("--scale", type=int, default=1, choices=(1, 2, 4, 8),
                        help="divide channels and image sides by this (8: a quick look)")
    return parser


def main(argv=None):
    """Time every shape; print the table and return its rows as dicts."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.repeats < 1:
            raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
        check_device(args.device)
    except (ValueError, GPUUnavailableError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    xp = cupy_or_none() if args.device == "gpu" else np
    # conv_gemm_step reads the device and the array module from a bench Context
    context = Context(args.device, args.repeats, xp)
    s = args.scale
    rows = []
    for label, N, C, OC, H, W, k in FRRN_A_CONVS:
        # the stem's 3 input channels are the image's: they do not scale
        C, OC, H, W = (C if C == 3 else max(1, C // s)), max(1, OC // s), H // s, W // s
        gemms, flops = conv_gemm_step(context, N, C, OC, H, W, k)
        # the convolution and its floor timed in turn (conv, GEMMs, conv, ...), so that a slow
        # stretch of the machine falls on both and their ratio stays fair
        conv_s, floor_s = median_times([conv_step(N, C, OC, H, W, k, args.device), gemms],
                                       args.device, args.repeats)
        rows.append({"conv": label, "shape": f"{N}x{C}->{OC} {H}x{W} k{k}", "ms": conv_s * 1e3,
                     "floor_ms": floor_s * 1e3, "ratio": conv_s / floor_s,
                     "gflops": flops / conv_s / 1e9})

    print(f"conv2d forward+backward on {args.device}, median of {args.repeats}; floor: the same "
          f"three GEMMs alone")
    header = f"{'conv':<30}{'shape':<26}{'ms':>10}{'floor ms':>10}{'ratio':>7}{'GFLOP/s':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['conv']:<30}{r['shape']:<26}{r['ms']:>10.2f}{r['floor_ms']:>10.2f}"
              f"{r['ratio']:>7.2f}{r['gflops']:>9.1f}")
    return rows


if __name__ == "__main__":
    main()
