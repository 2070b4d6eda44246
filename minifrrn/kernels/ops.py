"""The GPU path of every op, written once against an array module ``xp`` and an executor ``ex``.

With CuPy arrays and ``CupyExecutor`` this runs on a GPU; with NumPy arrays and ``EmulatorExecutor``
the same allocation, launch arithmetic and kernels run on the CPU (that is how CI tests it). The maths
is the same as the NumPy path of each op in ``minifrrn.functional`` (see their docstrings).
"""
from __future__ import annotations

import numpy as np

from .executor import launch_config

__all__ = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "batch_norm_forward",
           "batch_norm_backward", "max_pool2d_forward", "max_pool2d_backward",
           "upsample_nearest_forward", "upsample_nearest_backward", "bilinear2x_forward",
           "bilinear2x_backward", "softmax_nll_forward", "softmax_nll_backward"]

i64 = np.int64


def _c(xp, a):
    return xp.ascontiguousarray(a)


def im2col(xp, ex, x, KH, KW, SH, SW, PH, PW):
    """cols (N, C·KH·KW, OH·OW) from x (N, C, H, W), one thread per cols element."""
    x = _c(xp, x)
    N, C, H, W = x.shape
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    cols = xp.empty((N, C * KH * KW, OH * OW), dtype=x.dtype)
    grid, block = launch_config(cols.size)
    ex.launch("im2col", x.dtype, grid, block, (x, cols, i64(N), i64(C), i64(H), i64(W), i64(KH),
                                               i64(KW), i64(SH), i64(SW), i64(PH), i64(PW),
                                               i64(OH), i64(OW)))
    return cols


def col2im(xp, ex, cols, x_shape, KH, KW, SH, SW, PH, PW):
    """The adjoint of im2col as a gather: one thread per image element, no atomics."""
    cols = _c(xp, cols)
    N, C, H, W = x_shape
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    x = xp.empty(x_shape, dtype=cols.dtype)
    grid, block = launch_config(x.size)
    ex.launch("col2im", cols.dtype, grid, block, (cols, x, i64(N), i64(C), i64(H), i64(W), i64(KH),
                                                  i64(KW), i64(SH), i64(SW), i64(PH), i64(PW),
                                                  i64(OH), i64(OW)))
    return x


def conv2d_forward(xp, ex, x, W, b, SH, SW, PH, PW, keep_cols=True):
    """y = W·im2col(x) + b through the im2col kernel and one batched GEMM (cuBLAS on a GPU)."""
    N = x.shape[0]
    OC, C, KH, KW = W.shape
    H, Wd = x.shape[2:]
    OH, OW = (H + 2 * PH - KH) // SH + 1, (Wd + 2 * PW - KW) // SW + 1
    if KH == KW == 1 and SH == SW == 1 and PH == PW == 0:
        cols = _c(xp, x).reshape(N, C, H * Wd)
    else:
        cols = im2col(xp, ex, x, KH, KW, SH, SW, PH, PW)
    y = xp.matmul(W.reshape(OC, -1), cols)
    if b is not None:
        y += b.reshape(1, OC, 1)
    return y.reshape(N, OC, OH, OW), (cols if keep_cols else None)


def conv2d_backward(xp, ex, gy, cols, W, x_shape, SH, SW, PH, PW, need_x, need_W, need_b):
    N, OC, OH, OW = gy.shape
    _, C, KH, KW = W.shape
    gy = _c(xp, gy).reshape(N, OC, OH * OW)
    gx = gW = gb = None
    if need_W:
        gW = xp.matmul(gy, cols.transpose(0, 2, 1)).sum(axis=0).reshape(W.shape)
    if need_b:
        gb = gy.sum(axis=(0, 2))
    if need_x:
        gcols = xp.matmul(W.reshape(OC, -1).T, gy)
        if KH == KW == 1 and SH == SW == 1 and PH == PW == 0:
            gx = gcols.reshape(x_shape)
        else:
            gx = col2im(xp, ex, gcols, x_shape, KH, KW, SH, SW, PH, PW)
    return gx, gW, gb


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


def batch_norm_backward(xp, ex, x, gy, mean, invstd, gamma, training):
    """(gx, gγ, gβ); the per-channel sums use the array module's reductions."""
    x, gy = _c(xp, x), _c(xp, gy)
    N, C, H, W = x.shape
    shape = (1, C, 1, 1)
    xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    sum_gy = gy.sum(axis=(0, 2, 3))
    sum_gy_xhat = (gy * xhat).sum(axis=(0, 2, 3))
    del xhat
    gx = xp.empty_like(x)
    grid, block = launch_config(x.size)
    ex.launch("bn_backward", x.dtype, grid, block,
              (x, gy, _c(xp, mean), _c(xp, invstd), _c(xp, gamma), _c(xp, sum_gy),
               _c(xp, sum_gy_xhat), gx, i64(N), i64(C), i64(H * W), i64(1 if training else 0)))
    return gx, sum_gy_xhat, sum_gy


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
