"""Max pooling with the argmax saved for backward.

Notation: x (N, C, H, W), window (KH, KW), stride (SH, SW), output (N, C, OH, OW) with the floor size
OH = (H − KH) // SH + 1 (rows and columns that do not fill a window are dropped).

    y[n, c, i, j] = max_{p < KH, q < KW} x[n, c, i·SH + p, j·SW + q]

Backward sends each upstream gradient to the one input that won its window:
gx[n, c, i·SH + p*, j·SW + q*] += gy[n, c, i, j] with (p*, q*) the argmax. Ties go to the *first*
maximum in row-major window order (smallest p, then smallest q), as ``argmax`` returns it. Only the
argmax (a small integer per output) is kept for backward, not the input.

On the CPU, non-overlapping windows (stride = kernel, all that FRRN uses) are reduced separably:
each window row's columns first, then the rows, with plain ufunc passes (``maximum``, ``greater``
and integer arithmetic for the argmax) per cache-sized block of channels, on several threads.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, unwrap
from ..backend import get_array_module
from ..kernels import executor_for
from ..kernels import ops as gpu
from . import cpu_parallel as par

__all__ = ["max_pool2d", "MaxPool2dFunction"]


def _windows(x, KH, KW, SH, SW, OH, OW):
    """(N, C, OH, OW, KH·KW): every window's values, row-major inside the window."""
    xp = get_array_module(x)
    N, C = x.shape[:2]
    if (SH, SW) == (KH, KW):
        # non-overlapping: a reshape of the cropped input, no strided tricks needed
        v = x[:, :, :OH * KH, :OW * KW].reshape(N, C, OH, KH, OW, KW)
        return v.transpose(0, 1, 2, 4, 3, 5).reshape(N, C, OH, OW, KH * KW)
    sN, sC, sH, sW = x.strides
    v = xp.lib.stride_tricks.as_strided(
        x, shape=(N, C, OH, OW, KH, KW), strides=(sN, sC, sH * SH, sW * SW, sH, sW))
    return v.reshape(N, C, OH, OW, KH * KW)


def _over_channel_blocks(xp, work, big, passes):
    """Run work(c0, c1) over channel blocks of ``big``: inline for CuPy arrays; for NumPy arrays
    on several threads, in cache-sized blocks when there are few passes per block (small windows),
    otherwise one block per thread so that NumPy's per-call cost does not multiply."""
    if xp is not np:
        work(0, big.shape[1])
    else:
        par.over_channels(work, big, cache_blocked=passes <= 16)


def _select(index, better, value):
    """index[better] = value, in place, with integer arithmetic on uint8 indices:
    index += better·(value − index), which wraps modulo 256 and lands exactly on value where better
    is 1 and on index where it is 0. Three plain ufunc passes (the boolean mask is read as 0/1
    bytes in place); ``np.where`` and ``np.copyto(where=)`` run about ten times slower per element."""
    change = np.subtract(value, index, dtype=index.dtype)
    change *= better.view(np.uint8)
    index += change


def _column_maxima(x, KW, index_dtype):
    """(row_max, row_arg): the maximum of every row of every window of x (N, C, OH·KH, OW·KW),
    (N, C, OH·KH, OW), and the column q of its first occurrence, with plain ufunc passes.

    For KW a power of two, a tournament: neighbouring columns meet in pairs, the winners of pairs
    in pairs of pairs, and so on; the right one wins only when strictly greater, so a tie keeps the
    earlier column. Each round reads its input with stride 2 and halves it: 2·(1/2 + 1/4 + …)
    float passes over x's size in all, where comparing every column with the running maximum in
    turn reads x with stride KW, 2(KW − 1) times. Measured on the whole forward: 0.64–0.71 of the
    time for 8×8 windows, 0.80 for 4×4 and 2×2. Other widths take that column-by-column route."""
    if KW > 1 and KW & (KW - 1) == 0:
        left, right = x[..., 0::2], x[..., 1::2]
        row_arg = np.greater(right, left).view(index_dtype)  # 0 or 1: the mask itself
        row_max = np.maximum(left, right)
        width = 2
        while width < KW:
            left, right = row_max[..., 0::2], row_max[..., 1::2]
            better = right > left
            row_max = np.maximum(left, right)
            winner = row_arg[..., 0::2].copy()
            _select(winner, better, row_arg[..., 1::2] + index_dtype.type(width))
            row_arg, width = winner, 2 * width
        return row_max, row_arg
    row_max = x[..., 0::KW].copy()
    row_arg = np.zeros(row_max.shape, dtype=index_dtype)
    for q in range(1, KW):
        column = x[..., q::KW]
        better = column > row_max
        np.maximum(row_max, column, out=row_max)
        _select(row_arg, better, index_dtype.type(q))
    return row_max, row_arg


def _separable_forward_block(x, y, argmax, KH, KW):
    """Non-overlapping max pooling of one NumPy block, a window's columns first, then its rows.

    max over a window = max over its rows of (max over the row's columns). Resolving the columns of
    each row first (first q wins a tie), then the rows (first p wins, strictly greater replaces)
    yields the first maximum in row-major window order, as the per-offset definition does. Every
    pass is a plain ufunc (maximum, greater): the column passes (``_column_maxima``) read strided
    views of x, the row passes whole rows of the (OH·KH, OW) column maxima."""
    OH, OW = y.shape[2:]
    x = x[:, :, :OH * KH, :OW * KW]
    row_max, row_arg = _column_maxima(x, KW, argmax.dtype)
    y[...] = row_max[:, :, 0::KH]
    argmax[...] = row_arg[:, :, 0::KH]
    for p in range(1, KH):
        row = row_max[:, :, p::KH]
        better = row > y
        np.maximum(y, row, out=y)
        _select(argmax, better, row_arg[:, :, p::KH] + argmax.dtype.type(p * KW))


def _separable_backward_block(gy, argmax, gx, KH, KW):
    """gx of non-overlapping max pooling for one NumPy block, rows of windows first: every element
    of gx is written once, gy where it won its window and 0 elsewhere (including the cropped edge).

    The winner of a window sits at row p* and column q* (argmax = p*·KW + q*). First each gy goes to
    its column q* of a row of KW·OW values (KW strided writes of output-sized arrays); then that
    row goes to row p* of its windows, zeros to the other KH − 1 rows (KH writes of whole rows of
    gx). Measured against what it replaced: 0.88–0.92 of the time of one multiply by a hit mask
    per window offset for 4×4 (each writes every value of gx with a stride, KH·KW times in all),
    0.70–0.76 of one broadcast pass over a 6-D view of gx for 8×8. Windows of up to 4 values keep
    the per-offset multiply, which took under half the time for 2×2."""
    N, C, OH, OW = gy.shape
    gx[:, :, OH * KH:] = 0
    gx[:, :, :OH * KH, OW * KW:] = 0
    if KH * KW <= 4:
        for p in range(KH):
            for q in range(KW):
                np.multiply(gy, argmax == p * KW + q, out=gx[:, :, p:OH * KH:KH, q:OW * KW:KW])
        return
    p_star, q_star = np.divmod(argmax, argmax.dtype.type(KW))
    winner_rows = np.empty((N, C, OH, OW * KW), dtype=gy.dtype)
    for q in range(KW):
        np.multiply(gy, q_star == q, out=winner_rows[..., q::KW])
    p_star = np.repeat(p_star, KW, axis=-1)  # the winning row, for each of the window's columns
    for p in range(KH):
        np.multiply(winner_rows, p_star == p, out=gx[:, :, p:OH * KH:KH, :OW * KW])


class MaxPool2dFunction(Function):
    """y = max over each window; returns gx with gy placed at each window's argmax."""

    def __init__(self, kernel, stride):
        (self.KH, self.KW), (self.SH, self.SW) = kernel, stride

    def forward(self, x):
        xp = get_array_module(x)
        N, C, H, W = x.shape
        OH, OW = (H - self.KH) // self.SH + 1, (W - self.KW) // self.SW + 1
        self.x_shape = x.shape
        self.ex = executor_for(x)
        if self.ex is not None:  # the GPU path: value and argmax from one kernel
            y, self.argmax = gpu.max_pool2d_forward(xp, self.ex, x, self.KH, self.KW, self.SH,
                                                    self.SW)
            return y
        index_dtype = np.uint8 if self.KH * self.KW <= 256 else np.int16
        # non-overlapping windows (all that FRRN uses): columns, then rows, on NumPy arrays. Up to
        # 8×8 in forward (for 16×16, even with the column tournament, it measured 1.3× slower than
        # an argmax over the windows);
        # up to 256 values in backward, whose offsets fit its uint8 index arithmetic (16×16 took
        # 0.43 of the time of a scatter into a windows array)
        self.separable = (self.SH, self.SW) == (self.KH, self.KW) and self.KH * self.KW <= 64
        self.separable_backward = ((self.SH, self.SW) == (self.KH, self.KW)
                                   and self.KH * self.KW <= 256)
        if self.separable:
            y = np.empty((N, C, OH, OW), dtype=x.dtype)
            argmax = np.empty((N, C, OH, OW), dtype=index_dtype)

            def pool_channels(c0, c1):
                _separable_forward_block(x[:, c0:c1], y[:, c0:c1], argmax[:, c0:c1], self.KH,
                                         self.KW)

            par.over_channels(pool_channels, x)
            self.argmax = argmax
            return y
        if self.KH * self.KW <= 64:
            # overlapping windows: one strided view per window offset, KH·KW passes over
            # output-sized arrays, which read the input once in total instead of copying it into
            # a windows array first; per cache-sized block of channels, on several threads.
            y = xp.empty((N, C, OH, OW), dtype=x.dtype)
            argmax = xp.zeros((N, C, OH, OW), dtype=index_dtype)

            def pool_channels(c0, c1):
                y_block, argmax_block = y[:, c0:c1], argmax[:, c0:c1]
                for p in range(self.KH):
                    for q in range(self.KW):
                        view = x[:, c0:c1, p:p + self.SH * OH:self.SH, q:q + self.SW * OW:self.SW]
                        if p == q == 0:
                            y_block[...] = view
                            continue
                        better = view > y_block  # strictly greater: ties keep the first index
                        xp.copyto(y_block, view, where=better)
                        xp.copyto(argmax_block, index_dtype(p * self.KW + q), where=better)

            _over_channel_blocks(xp, pool_channels, x, self.KH * self.KW)
            self.argmax = argmax
            return y
        windows = _windows(x, self.KH, self.KW, self.SH, self.SW, OH, OW)
        argmax = windows.argmax(axis=-1)
        y = xp.take_along_axis(windows, argmax[..., None], axis=-1)[..., 0]
        self.argmax = argmax.astype(index_dtype)
        return y

    def backward(self, gy):
        xp = get_array_module(gy)
        N, C, H, W = self.x_shape
        _, _, OH, OW = gy.shape
        KH, KW, SH, SW = self.KH, self.KW, self.SH, self.SW
        if self.ex is not None:
            return gpu.max_pool2d_backward(xp, self.ex, gy, self.argmax, self.x_shape, KH, KW, SH, SW)
        if self.separable_backward:
            gx = np.empty(self.x_shape, dtype=gy.dtype)

            def gradient_channels(c0, c1):
                _separable_backward_block(gy[:, c0:c1], self.argmax[:, c0:c1], gx[:, c0:c1], KH, KW)

            par.over_channels(gradient_channels, gx)
            return gx
        gx = xp.zeros(self.x_shape, dtype=gy.dtype)
        argmax = self.argmax.astype(np.int64)
        if (SH, SW) == (KH, KW):
            g = xp.zeros((N, C, OH, OW, KH * KW), dtype=gy.dtype)
            xp.put_along_axis(g, argmax[..., None], gy[..., None], axis=-1)
            gx[:, :, :OH * KH, :OW * KW] = g.reshape(N, C, OH, OW, KH, KW).transpose(
                0, 1, 2, 4, 3, 5).reshape(N, C, OH * KH, OW * KW)
            return gx
        # overlapping windows: one masked, vectorised add per window offset (no np.add.at)
        for p in range(KH):
            for q in range(KW):
                hit = argmax == p * KW + q
                gx[:, :, p:p + SH * OH:SH, q:q + SW * OW:SW] += gy * hit
        return gx


def _pair(v, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"max_pool2d: {name} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    if not isinstance(v, (int, np.integer)):
        raise TypeError(f"max_pool2d: {name} must be an integer, got {v!r}")
    return int(v), int(v)


def max_pool2d(x, kernel, stride=None):
    """Max pooling of x (N, C, H, W) over ``kernel`` windows (stride defaults to the kernel).

    Floor output size; backward routes gy to the first maximum of each window.
    """
    kernel = _pair(kernel, "kernel")
    stride = kernel if stride is None else _pair(stride, "stride")
    xd = unwrap(x)
    if xd.ndim != 4:
        raise ValueError(f"max_pool2d: x must be 4-D (N, C, H, W), got shape {tuple(xd.shape)}")
    if min(kernel) < 1 or min(stride) < 1:
        raise ValueError(f"max_pool2d: kernel and stride must be >= 1, got {kernel}, {stride}")
    if kernel[0] > xd.shape[2] or kernel[1] > xd.shape[3]:
        raise ValueError(f"max_pool2d: kernel {kernel[0]}x{kernel[1]} is larger than the input "
                         f"{xd.shape[2]}x{xd.shape[3]}")
    if xd.dtype not in (np.float32, np.float64):
        raise TypeError(f"max_pool2d: x must be float32 or float64, got {xd.dtype}")
    return MaxPool2dFunction(kernel, stride)(x)
