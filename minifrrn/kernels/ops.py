"""The GPU path of every op, written once against an array module ``xp`` and an executor ``ex``.

With CuPy arrays and ``CupyExecutor`` this runs on a GPU; with NumPy arrays and ``EmulatorExecutor``
the same allocation, launch arithmetic and kernels run on the CPU (that is how CI tests it). The maths
is the same as the NumPy path of each op in ``minifrrn.functional`` (see their docstrings).
"""
from __future__ import annotations

import functools

import numpy as np

from .executor import INT32_MAX, launch_config, launch_config_2d

__all__ = ["channel_sums", "im2col", "col2im", "conv2d_forward", "conv2d_backward",
           "batch_norm_statistics", "batch_norm_forward",
           "batch_norm_backward", "max_pool2d_forward", "max_pool2d_backward",
           "upsample_nearest_forward", "upsample_nearest_backward", "bilinear2x_forward",
           "bilinear2x_backward", "softmax_nll_forward", "softmax_nll_backward"]

i64, i32 = np.int64, np.int32

# channel_sums / bn_backward_sums: each thread sums at most this many pixels of a plane on its own
# (the launch asks for a thread per this many, in whole blocks of 256; more threads would only
# lengthen the partial sums that are added up afterwards)
PIXELS_PER_THREAD = 16


def _c(xp, a):
    return xp.ascontiguousarray(a)


def _sums_launch(C, HW):
    """(grid, block) of channel_sums and bn_backward_sums: blockIdx.y the channel, enough blocks in
    x that each thread sums about PIXELS_PER_THREAD pixels of a plane."""
    return launch_config_2d(-(-HW // PIXELS_PER_THREAD), C)


def channel_sums(xp, ex, x, shift=None, power=1, scale=1):
    """scale·Σ over every axis but 1, per channel c, of x (power 1) or of (x − shift[c])² (power 2):
    the kernel writes one partial sum per thread, a product with ones (scaled by ``scale``, as the
    mean's 1/M) adds them up."""
    x = _c(xp, x)
    N, C = x.shape[:2]
    HW = x.size // max(N * C, 1)
    if (power == 2) != (shift is not None):
        raise ValueError("channel_sums: a shift goes with power 2, and only with it")
    shift = x if shift is None else _c(xp, shift.astype(x.dtype, copy=False))  # unread for power 1
    grid, block = _sums_launch(C, HW)
    partial = xp.empty((C, grid[0] * block[0]), dtype=x.dtype)
    ex.launch("channel_sums", x.dtype, grid, block,
              (x, shift, partial, i64(N), i64(C), i64(HW), i64(power)))
    return _row_sums(xp, ex, partial, scale)


def _row_sums(xp, ex, partial, scale=1):
    """scale·Σ over the last axis of a (…, T) array of partial sums, as one matrix-vector product
    with ones: one cuBLAS call, where the array module's reduction (and a scaling after it) costs
    several times its host time."""
    ones = _ones(xp, partial.shape[-1], partial.dtype)
    rows = partial.reshape(-1, partial.shape[-1])
    return ex.gemm(rows, ones, alpha=scale).reshape(partial.shape[:-1])


_ones_cache: dict = {}


def _ones(xp, length, dtype):
    """A (length, 1) column of ones, made once per array module, device, length and dtype."""
    device = getattr(xp, "cuda", None) and xp.cuda.runtime.getDevice()
    key = (xp.__name__, device, length, np.dtype(dtype))
    ones = _ones_cache.get(key)
    if ones is None:
        ones = _ones_cache[key] = xp.ones((length, 1), dtype=dtype)
    return ones


@functools.lru_cache(maxsize=4096)
def _im2col_sizes(x_shape, KH, KW, SH, SW, PH, PW):
    """(OH, OW, the kernels' int32 size arguments). Both kernels index an input plane (H·W values)
    and an output plane (OH·OW) with 32-bit ints, whichever of the two their grid walks."""
    N, C, H, W = x_shape
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    if H * W > INT32_MAX or OH * OW > INT32_MAX:
        raise ValueError(f"a {H}x{W} image with a {OH}x{OW} output: the kernels index a plane in "
                         "32 bits; split the image")
    return OH, OW, tuple(i32(v) for v in (N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW))


def im2col(xp, ex, x, KH, KW, SH, SW, PH, PW):
    """cols (N, C·KH·KW, OH·OW) from x (N, C, H, W): blockIdx.y walks the rows of cols, the
    threads of x the pixels of a row."""
    x = _c(xp, x)
    N, C = x.shape[:2]
    OH, OW, sizes = _im2col_sizes(x.shape, KH, KW, SH, SW, PH, PW)
    cols = xp.empty((N, C * KH * KW, OH * OW), dtype=x.dtype)
    grid, block = launch_config_2d(OH * OW, N * C * KH * KW)
    ex.launch("im2col", x.dtype, grid, block, (x, cols) + sizes)
    return cols


def col2im(xp, ex, cols, x_shape, KH, KW, SH, SW, PH, PW):
    """The adjoint of im2col as a gather: one thread per image element (blockIdx.y walks the
    planes), no atomics."""
    cols = _c(xp, cols)
    N, C, H, W = x_shape
    _, _, sizes = _im2col_sizes(x_shape, KH, KW, SH, SW, PH, PW)
    x = xp.empty(x_shape, dtype=cols.dtype)
    grid, block = launch_config_2d(H * W, N * C)
    ex.launch("col2im", cols.dtype, grid, block, (cols, x) + sizes)
    return x


def _pointwise(KH, KW, SH, SW, PH, PW):
    """A 1×1 stride-1 convolution without padding: its cols is x itself, its col2im the identity."""
    return KH == KW == 1 and SH == SW == 1 and PH == PW == 0


def _cols(xp, ex, x, KH, KW, SH, SW, PH, PW):
    """im2col(x), or x itself as (N, C, H·W) for a pointwise convolution."""
    if _pointwise(KH, KW, SH, SW, PH, PW):
        N, C, H, W = x.shape
        return _c(xp, x).reshape(N, C, H * W)
    return im2col(xp, ex, x, KH, KW, SH, SW, PH, PW)


def conv2d_forward(xp, ex, x, W, b, SH, SW, PH, PW):
    """y = W·im2col(x) + b through the im2col kernel and one batched GEMM (cuBLAS on a GPU).

    cols is dropped at once: backward makes it again from x (see conv2d_backward)."""
    N = x.shape[0]
    OC, C, KH, KW = W.shape
    OH, OW, _ = _im2col_sizes(x.shape, KH, KW, SH, SW, PH, PW)
    if N == 0:  # an empty batch: cuBLAS would be handed the null pointer of an empty array
        return xp.empty((0, OC, OH, OW), dtype=x.dtype)
    y = ex.gemm(_c(xp, W).reshape(OC, -1), _cols(xp, ex, x, KH, KW, SH, SW, PH, PW))
    if b is not None:
        y += b.reshape(1, OC, 1)
    return y.reshape(N, OC, OH, OW)


def conv2d_backward(xp, ex, gy, x, W, x_shape, SH, SW, PH, PW, need_x, need_W, need_b):
    """(gx, gW, gb) = (col2im(Wᵀ·gy), Σₙ gy·colsᵀ, Σ gy); ``x`` is needed only for gW.

    cols is im2col'd again from x here rather than kept from the forward: a 3×3 layer's cols is
    nine times its input, and the input is usually alive anyway (the ReLU before it keeps it).
    Measured on an H200, keeping every layer's cols against making it again: a FRRN A step at
    256×512, batch 1, 7.5 → 2.7 GiB of GPU memory for 56 → 64 ms; FRRN B at 512×1024, batch 3 (the
    paper's training setting), 90.6 → 32.5 GiB for 495 → 590 ms. The memory decides: kept, FRRN B's
    cols alone outgrow an 80 GB GPU."""
    N, OC, OH, OW = gy.shape
    _, C, KH, KW = W.shape
    if N == 0:  # an empty batch: no product to run, and the weights' gradients are zero
        return (xp.empty(x_shape, dtype=gy.dtype) if need_x else None,
                xp.zeros(W.shape, dtype=gy.dtype) if need_W else None,
                xp.zeros(OC, dtype=gy.dtype) if need_b else None)
    gy = _c(xp, gy).reshape(N, OC, OH * OW)
    gx = gW = gb = None
    if need_W:
        cols = _cols(xp, ex, x, KH, KW, SH, SW, PH, PW)
        # one 2-D product per sample, each adding into gWm (β = 1): cuBLAS reads colsᵀ in place,
        # where a batched matmul with a transposed operand ran 2.7x slower on an H200 (48->48 at
        # 256x512: 0.67 vs 0.25 ms)
        gWm = ex.gemm(gy[0], cols[0], transpose_b=True)
        for n in range(1, N):
            ex.gemm(gy[n], cols[n], out=gWm, transpose_b=True, accumulate=True)
        del cols  # before gx's Wᵀ·gy, as large again, is made
        gW = gWm.reshape(W.shape)
    if need_b:
        gb = channel_sums(xp, ex, gy)
    if need_x:
        gcols = ex.gemm(_c(xp, W).reshape(OC, -1), gy, transpose_a=True)  # Wᵀ read in place
        if _pointwise(KH, KW, SH, SW, PH, PW):
            gx = gcols.reshape(x_shape)
        else:
            gx = col2im(xp, ex, gcols, x_shape, KH, KW, SH, SW, PH, PW)
    return gx, gW, gb


def batch_norm_statistics(xp, ex, x, mean, eps, momentum=None, running_mean=None,
                          running_var=None):
    """(var, invstd) of x (N, C, H, W) around its channel means ``mean``: σ² = Σ(x − μ)²/M from
    channel_sums, then one bn_statistics thread per channel for 1/√(σ² + ε) and, when the running
    arrays are given (C-contiguous, x's dtype), their update in place with ``momentum``."""
    N, C, H, W = x.shape
    dtype = x.dtype.type
    sum_sq = channel_sums(xp, ex, x, shift=mean, power=2)
    var, invstd = xp.empty_like(sum_sq), xp.empty_like(sum_sq)
    update = running_mean is not None
    if not update:  # unread
        running_mean = running_var = var
    grid, block = launch_config(C)
    ex.launch("bn_statistics", x.dtype, grid, block,
              (sum_sq, _c(xp, mean), var, invstd, running_mean, running_var, i64(C),
               i64(N * H * W), dtype(eps), dtype(0 if momentum is None else momentum),
               i64(1 if update else 0)))
    return var, invstd


def batch_norm_forward(xp, ex, x, mean, invstd, gamma, beta, relu=False):
    """y = (x − mean)·invstd·γ + β per channel (optionally fused with a ReLU)."""
    x = _c(xp, x)
    N, C, H, W = x.shape
    y = xp.empty_like(x)
    grid, block = launch_config(x.size)
    ex.launch("bn_forward", x.dtype, grid, block,
              (x, _c(xp, mean), _c(xp, invstd), _c(xp, gamma), _c(xp, beta), y, i64(N), i64(C),
               i64(H * W), i64(1 if relu else 0)))
    return y


def batch_norm_backward(xp, ex, x, gy, mean, invstd, gamma, training, y=None):
    """(gx, gγ, gβ): one pass of bn_backward_sums for Σ g and Σ g·(x − μ), one of bn_backward for
    gx. ``y``, the fused forward's output, masks gy by the ReLU inside both kernels (g = gy where
    y > 0); None for a batch norm without ReLU."""
    x, gy, mean = _c(xp, x), _c(xp, gy), _c(xp, mean)
    N, C, H, W = x.shape
    relu = i64(0 if y is None else 1)
    y = x if y is None else _c(xp, y)  # unread without the ReLU
    grid, block = _sums_launch(C, H * W)
    partials = xp.empty((2, C, grid[0] * block[0]), dtype=x.dtype)  # both summed by one product
    partial_g, partial_g_centred = partials
    ex.launch("bn_backward_sums", x.dtype, grid, block,
              (x, gy, y, mean, partial_g, partial_g_centred, i64(N), i64(C), i64(H * W), relu))
    sum_g, sum_g_centred = _row_sums(xp, ex, partials)
    sum_g_xhat = sum_g_centred * invstd  # Σ g·x̂ = (1/σ)·Σ g·(x − μ)
    gx = xp.empty_like(x)
    grid, block = launch_config(x.size)
    ex.launch("bn_backward", x.dtype, grid, block,
              (x, gy, y, mean, _c(xp, invstd), _c(xp, gamma), sum_g, sum_g_xhat, gx, i64(N),
               i64(C), i64(H * W), i64(1 if training else 0), relu))
    return gx, sum_g_xhat, sum_g


def max_pool2d_forward(xp, ex, x, KH, KW, SH, SW):
    """(y, argmax) with argmax the int32 offset p·KW + q inside each window."""
    x = _c(xp, x)
    N, C, H, W = x.shape
    OH, OW = (H - KH) // SH + 1, (W - KW) // SW + 1
    y = xp.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = xp.empty((N, C, OH, OW), dtype=np.int32)
    grid, block = launch_config(y.size)
    ex.launch("maxpool_forward", x.dtype, grid, block,
              (x, y, argmax, i64(N * C), i64(H), i64(W), i64(KH), i64(KW), i64(SH), i64(SW),
               i64(OH), i64(OW)))
    return y, argmax


def max_pool2d_backward(xp, ex, gy, argmax, x_shape, KH, KW, SH, SW):
    gy = _c(xp, gy)
    N, C, H, W = x_shape
    OH, OW = gy.shape[2:]
    gx = xp.empty(x_shape, dtype=gy.dtype)
    grid, block = launch_config(gx.size)
    ex.launch("maxpool_backward", gy.dtype, grid, block,
              (gy, _c(xp, argmax), gx, i64(N * C), i64(H), i64(W), i64(KH), i64(KW), i64(SH),
               i64(SW), i64(OH), i64(OW)))
    return gx


def upsample_nearest_forward(xp, ex, x, S):
    x = _c(xp, x)
    N, C, H, W = x.shape
    y = xp.empty((N, C, H * S, W * S), dtype=x.dtype)
    grid, block = launch_config(y.size)
    ex.launch("nearest_forward", x.dtype, grid, block, (x, y, i64(N * C), i64(H), i64(W), i64(S)))
    return y


def upsample_nearest_backward(xp, ex, gy, S):
    gy = _c(xp, gy)
    N, C, OH, OW = gy.shape
    gx = xp.empty((N, C, OH // S, OW // S), dtype=gy.dtype)
    grid, block = launch_config(gx.size)
    ex.launch("nearest_backward", gy.dtype, grid, block,
              (gy, gx, i64(N * C), i64(OH // S), i64(OW // S), i64(S)))
    return gx


def bilinear2x_forward(xp, ex, x):
    x = _c(xp, x)
    N, C, H, W = x.shape
    y = xp.empty((N, C, 2 * H, 2 * W), dtype=x.dtype)
    grid, block = launch_config(y.size)
    ex.launch("bilinear2x_forward", x.dtype, grid, block, (x, y, i64(N * C), i64(H), i64(W)))
    return y


def bilinear2x_backward(xp, ex, gy):
    gy = _c(xp, gy)
    N, C, OH, OW = gy.shape
    gx = xp.empty((N, C, OH // 2, OW // 2), dtype=gy.dtype)
    grid, block = launch_config(gx.size)
    ex.launch("bilinear2x_backward", gy.dtype, grid, block,
              (gy, gx, i64(N * C), i64(OH // 2), i64(OW // 2)))
    return gx


def softmax_nll_forward(xp, ex, logits, target, ignore_index):
    """Per-pixel losses (N, H, W): logsumexp − the target's logit; 0 at ignored pixels."""
    logits = _c(xp, logits)
    N, K, H, W = logits.shape
    target = _c(xp, target.astype(np.int64, copy=False))
    loss = xp.empty((N, H, W), dtype=logits.dtype)
    grid, block = launch_config(N * H * W)
    ex.launch("softmax_nll_forward", logits.dtype, grid, block,
              (logits, target, loss, i64(N), i64(K), i64(H * W), i64(ignore_index)))
    return loss


def softmax_nll_backward(xp, ex, logits, target, weights, upstream):
    """gf = upstream · w · (softmax(f) − onehot(t)), one thread per pixel."""
    logits = _c(xp, logits)
    N, K, H, W = logits.shape
    grad = xp.empty_like(logits)
    grid, block = launch_config(N * H * W)
    ex.launch("softmax_nll_backward", logits.dtype, grid, block,
              (logits, _c(xp, target.astype(np.int64, copy=False)), _c(xp, weights), grad, i64(N),
               i64(K), i64(H * W), logits.dtype.type(upstream)))
    return grad
