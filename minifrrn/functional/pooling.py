"""Max pooling with the argmax saved for backward.

Notation: x (N, C, H, W), window (KH, KW), stride (SH, SW), output (N, C, OH, OW) with the floor size
OH = (H − KH) // SH + 1 (rows and columns that do not fill a window are dropped).

    y[n, c, i, j] = max_{p < KH, q < KW} x[n, c, i·SH + p, j·SW + q]

Backward sends each upstream gradient to the one input that won its window:
gx[n, c, i·SH + p*, j·SW + q*] += gy[n, c, i, j] with (p*, q*) the argmax. Ties go to the *first*
maximum in row-major window order (smallest p, then smallest q), as ``argmax`` returns it. A window
holding NaN gives y = NaN on every route and device, so that a diverging activation is not hidden;
which of its inputs then receives the gradient is left open. Only the argmax (a small integer per
output) is kept for backward, not the input.

On the CPU, non-overlapping windows (stride = kernel, all that FRRN uses) take whole-array ufunc
passes per cache-sized block of channels, on several threads. Forward, for windows of up to 64
values: 4×4, 8×8 and other windows of 16 values or more whose sides are powers of two up to 8
find the maximum first (rows, then columns) and then the first input equal to it, through bit masks
of the comparison (``_equality_forward_block``); smaller windows reduce each window row's columns in
a tournament, then the rows, carrying the argmax along (``_separable_forward_block``). Backward,
windows of 16 values or more write each gradient at its winner's flat index into a zeroed gx
(``_scatter_backward_block``); smaller ones go to the winning column of a row of windows, then to
the winning row (``_separable_backward_block``).
"""
from __future__ import annotations

import sys

import numpy as np

from ..autograd import Function, int_pair, unwrap
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
    if KH == 1:
        y[...], argmax[...] = row_max, row_arg
        return
    # rows 0 and 1 straight into y and argmax, with no copy of row 0 first:
    # argmax = arg0 + better·(arg1 + KW − arg0), in uint8 arithmetic that wraps and lands exactly
    first, second = row_max[:, :, 0::KH], row_max[:, :, 1::KH]
    better = np.greater(second, first)
    np.maximum(first, second, out=y)
    np.subtract(row_arg[:, :, 1::KH], row_arg[:, :, 0::KH], out=argmax)
    argmax += argmax.dtype.type(KW)
    argmax *= better.view(np.uint8)
    argmax += row_arg[:, :, 0::KH]
    for p in range(2, KH):
        row = row_max[:, :, p::KH]
        better = row > y
        np.maximum(y, row, out=y)
        _select(argmax, better, row_arg[:, :, p::KH] + argmax.dtype.type(p * KW))


# the bits of a row of KW window values, one byte each (0 or 1) read as one little-endian integer,
# gathered into its top byte by one multiplication: byte q times 2^(8(KW−1) − 7q) lands on bit
# 8(KW−1) + q; every other product of a byte and a term falls below bit 8(KW−1) on its own bit, or
# beyond the word, so nothing carries into the top byte
_ROW_BITS = {KW: (np.dtype(f"<u{KW}").type(sum(1 << (8 * (KW - 1) - 7 * q) for q in range(KW))),
                  np.dtype(f"<u{KW}").type(8 * (KW - 1))) for KW in (2, 4, 8)}
_WORDS = {1: np.uint8, 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}


def _by_equality(KH, KW):
    """Whether non-overlapping KH×KW windows take ``_equality_forward_block``: its row masks fit
    in a byte and a window's KH of them in one word, and there are enough values per window for
    its fixed number of passes to beat the tournament (measured per block of channels: 0.85–0.87
    of the tournament's time for 4×4, 0.57–0.59 for 8×8; for 2×2 it took twice as long)."""
    return (KW in _ROW_BITS and KH in _WORDS and KH * KW >= 16
            and sys.byteorder == "little")


def _first_bit_table(KW):
    """256 entries: for the exponent byte e of a float32 2^k (k = 8p + q, the lowest set bit of a
    window word), the window offset p·KW + q; 0 where e is no such exponent (a window with no
    match: NaN)."""
    table = np.zeros(256, dtype=np.uint8)
    k = np.arange(64)
    p, q = k // 8, k % 8
    table[127 + k] = np.where(q < KW, p * KW + q, 0)
    return table


_FIRST_BIT = {KW: _first_bit_table(KW) for KW in _ROW_BITS}


def _equality_forward_block(x, y, argmax, KH, KW):
    """Non-overlapping max pooling of one NumPy block by the maximum first, the argmax after.

    y: every window's rows reduced together (``maximum.reduce`` over the KH rows, whole rows at a
    time), then their columns (a tournament of pairs, as in ``_column_maxima``, without indices).
    argmax: the first value equal to y in row-major window order. One comparison of x with y
    repeated over each window's columns gives a byte per value (1 where x = y); a row of KW bytes,
    read as one integer, is packed into KW bits (``_ROW_BITS``); the KH row masks of a window, row
    p in byte p, form one little-endian word whose lowest set bit is 8p + q with p the first row
    holding a maximum and q its first column in that row. word & −word isolates that bit, 2^(8p + q),
    whose float32 exponent byte indexes a table of p·KW + q. Every pass is a whole-array ufunc: two
    over x's size (the row reduction and the comparison), the rest over the windows' rows or
    fewer. A window holding NaN has y = NaN and no match; its argmax is 0."""
    N, C, OH, OW = y.shape
    rows = x[:, :, :OH * KH, :OW * KW].reshape(N, C, OH, KH, OW * KW)
    maxima = np.maximum.reduce(rows, axis=3)  # (N, C, OH, OW·KW)
    while maxima.shape[-1] > 2 * OW:
        maxima = np.maximum(maxima[..., 0::2], maxima[..., 1::2])
    np.maximum(maxima[..., 0::2], maxima[..., 1::2], out=y)
    is_max = np.equal(rows, np.repeat(y, KW, axis=-1)[:, :, :, None, :])  # (N, C, OH, KH, OW·KW)
    magic, shift = _ROW_BITS[KW]
    row_bits = np.multiply(is_max.view(magic.dtype), magic)  # (N, C, OH, KH, OW)
    words = np.empty((N, C, OH, OW, KH), dtype=np.uint8)
    np.right_shift(row_bits, shift, out=words.transpose(0, 1, 2, 4, 3), casting="unsafe")
    words = words.view(_WORDS[KH])[..., 0]  # (N, C, OH, OW)
    lowest = np.subtract(0, words, dtype=words.dtype)
    lowest &= words
    exponent = np.right_shift(lowest.astype(np.float32).view(np.uint32), 23)
    np.take(_FIRST_BIT[KW], exponent, out=argmax, mode="clip")  # e < 256: clip is only a fast path


def _separable_backward_block(gy, argmax, gx, KH, KW):
    """gx of non-overlapping max pooling for one NumPy block, rows of windows first: every element
    of gx is written once, gy where it won its window and 0 elsewhere (including the cropped edge).

    The winner of a window sits at row p* and column q* (argmax = p*·KW + q*). First each gy goes to
    its column q* of a row of KW·OW values (KW strided writes of output-sized arrays); then that
    row goes to row p* of its windows, zeros to the other KH − 1 rows (KH writes of whole rows of
    gx). Measured against what it replaced: 0.88–0.92 of the time of one multiply by a hit mask
    per window offset for 4×4 (each writes every value of gx with a stride, KH·KW times in all).
    Windows of up to 4 values keep the per-offset multiply, which took under half the time for 2×2;
    windows of 16 values or more are scattered (``_scatter_backward_block``), faster still."""
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


# windows of at least this many values take the scattering backward (``_scatter_backward_block``)
SCATTER_MIN_VALUES = 16


def _scatter_backward_block(gy, argmax, gx, c0, c1, KH, KW, corners):
    """gx[:, c0:c1] of non-overlapping max pooling: zeros, then each gy written at the input its
    window's winner came from (``gx.flat[index] = gy``, one write per window). ``corners`` (OH, OW):
    the flat offset of every window's top-left value in a channel. Each input belongs to at most one
    window, so plain assignment is right (no ``np.add.at``). Measured per block of channels against
    the rows-of-windows backward: 0.48–0.53 of its time for 4×4, 0.34–0.35 for 8×8, 0.18–0.25 for
    16×16; for 2×2 windows, whose index array is a quarter of gx, 1.5–2× slower than the per-offset
    multiply."""
    N, C, H, W = gx.shape
    gx[:, c0:c1] = 0
    p, q = np.divmod(np.arange(KH * KW), KW)
    index = np.take(p * W + q, argmax[:, c0:c1])  # the winner's offset from its window's corner
    index += corners
    index += ((np.arange(N)[:, None] * C + np.arange(c0, c1)) * (H * W))[:, :, None, None]
    gx.reshape(-1)[index] = gy[:, c0:c1]


def _block_bytes(large_windows):
    """Channel blocks of twice the usual size for windows of 16 values or more: after their first
    passes over x (or gx), most of their NumPy calls work on arrays of one value per window, whose
    per-call cost fewer, larger blocks spread thinner. Measured fwd+bwd at 48x256x512 against 2 MiB
    blocks, interleaved: 4x4 0.89–0.91, 8x8 0.88–0.89, 16x16 (whose forward is not blocked)
    0.92–0.97 of the time; 8 or 16 MiB were no better than 4."""
    return 2 * par.CACHE_BLOCK_BYTES if large_windows else par.CACHE_BLOCK_BYTES


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
        # the equality route reads the comparison bytes of a window row as one integer, which needs
        # rows laid out contiguously: other layouts (Fortran order, transposed views) are copied
        x = np.ascontiguousarray(x)
        # the window offset of the argmax: one byte, two up to 65,536 values, else 64 bits
        window = self.KH * self.KW
        index_dtype = np.uint8 if window <= 256 else np.uint16 if window <= 65536 else np.int64
        non_overlapping = (self.SH, self.SW) == (self.KH, self.KW)
        # non-overlapping windows (all that FRRN uses) of up to 64 values on NumPy arrays: the
        # maximum, then the first value equal to it, for 4×4 and larger powers of two; a tournament
        # of columns, then rows, for the others. Larger windows (16×16) take an argmax over the
        # windows, where the tournament measured 1.3× slower. Backward scatters gy for windows of
        # 16 values or more, and goes by rows of windows for smaller ones
        self.separable = non_overlapping and self.KH * self.KW <= 64
        self.scatter_backward = non_overlapping and self.KH * self.KW >= SCATTER_MIN_VALUES
        self.separable_backward = non_overlapping and not self.scatter_backward
        if self.separable:
            y = np.empty((N, C, OH, OW), dtype=x.dtype)
            argmax = np.empty((N, C, OH, OW), dtype=index_dtype)
            by_equality = _by_equality(self.KH, self.KW)
            block_forward = _equality_forward_block if by_equality else _separable_forward_block

            def pool_channels(c0, c1):
                block_forward(x[:, c0:c1], y[:, c0:c1], argmax[:, c0:c1], self.KH, self.KW)

            par.over_channels(pool_channels, x, block_bytes=_block_bytes(by_equality))
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
                        # strictly greater: ties keep the first index; a NaN takes the window, as
                        # np.maximum lets it through on the non-overlapping route
                        better = view > y_block
                        better |= xp.isnan(view) & ~xp.isnan(y_block)
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
        if self.scatter_backward:
            gx = np.empty(self.x_shape, dtype=gy.dtype)
            corners = (np.arange(OH) * (KH * W))[:, None] + np.arange(OW) * KW

            def scatter_channels(c0, c1):
                _scatter_backward_block(gy, self.argmax, gx, c0, c1, KH, KW, corners)

            par.over_channels(scatter_channels, gx, block_bytes=_block_bytes(True))
            return gx
        if self.separable_backward:
            gx = np.empty(self.x_shape, dtype=gy.dtype)

            def gradient_channels(c0, c1):
                _separable_backward_block(gy[:, c0:c1], self.argmax[:, c0:c1], gx[:, c0:c1], KH, KW)

            par.over_channels(gradient_channels, gx)
            return gx
        gx = xp.zeros(self.x_shape, dtype=gy.dtype)
        argmax = self.argmax.astype(np.int64)
        # overlapping windows: one masked, vectorised add per window offset (no np.add.at)
        for p in range(KH):
            for q in range(KW):
                hit = argmax == p * KW + q
                gx[:, :, p:p + SH * OH:SH, q:q + SW * OW:SW] += gy * hit
        return gx


def max_pool2d(x, kernel, stride=None):
    """Max pooling of x (N, C, H, W) over ``kernel`` windows (stride defaults to the kernel).

    Floor output size; backward routes gy to the first maximum of each window.
    """
    kernel = int_pair(kernel, "max_pool2d: kernel")
    stride = kernel if stride is None else int_pair(stride, "max_pool2d: stride")
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
