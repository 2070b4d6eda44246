"""Upsampling: nearest (integer scale) and FRRN's bilinear ×2.

Nearest, scale s, x (N, C, H, W) -> y (N, C, s·H, s·W):
    y[n, c, i, j] = x[n, c, i // s, j // s]
    gx[n, c, a, b] = Σ_{p, q < s} gy[n, c, s·a + p, s·b + q]      (the sum over each s×s block)

Bilinear ×2 with the authors' (Theano) semantics, separable over H and W; along one axis of length L:
    out[2m]     = x[m]
    out[2m + 1] = (x[m] + x[m + 1]) / 2        for m < L − 1
    out[2L − 1] = x[L − 1]                     (the last odd output repeats the edge)
so [0, 10, 20, 40] -> [0, 5, 10, 15, 20, 30, 40, 40] (neither PyTorch align_corners mode).
The backward is the exact adjoint, along one axis:
    gx[m] = g[2m] + g[2m − 1]/2 + g[2m + 1]/2     (terms that do not exist dropped),
    gx[L − 1] = g[2L − 2] + g[2L − 3]/2 + g[2L − 1]
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, unwrap
from ..backend import get_array_module
from ..kernels import executor_for
from ..kernels import ops as gpu
from . import cpu_parallel as par

__all__ = ["upsample_nearest2d", "upsample_bilinear2x", "bilinear2x_axis", "bilinear2x_axis_adjoint"]


def _over_channels(xp, work, big, cache_blocked=True):
    """work(c0, c1) over channel ranges: inline for CuPy, blocked and threaded for NumPy."""
    if xp is not np:
        work(0, big.shape[1])
    else:
        par.over_channels(work, big, cache_blocked)


class UpsampleNearest2dFunction(Function):
    """y = x repeated s×s;  returns gx = the sum of gy over each s×s block."""

    def __init__(self, scale):
        self.scale = scale

    def forward(self, x):
        xp = get_array_module(x)
        self.ex = executor_for(x)
        if self.ex is not None:
            return gpu.upsample_nearest_forward(xp, self.ex, x, self.scale)
        N, C, H, W = x.shape
        s = self.scale
        y = xp.empty((N, C, H, s, W, s), dtype=x.dtype)

        def repeat_channels(c0, c1):
            block = y[:, c0:c1]
            if s > 4:  # one broadcast write: NumPy's inner loop runs along the s-long last axis
                block[...] = x[:, c0:c1, :, None, :, None]
                return
            # small s: that inner loop would be only s long (2.8x slower for s = 2), so each input
            # value goes to its s columns of the block's first row (s strided copies), and that
            # row is copied down whole
            for q in range(s):
                block[:, :, :, 0, :, q] = x[:, c0:c1]
            block[:, :, :, 1:] = block[:, :, :, :1]

        # small s: cache-sized blocks, so that the copies down read the first rows from the cache;
        # large s: one block per thread (s strided copies per block would cost more calls)
        _over_channels(xp, repeat_channels, y, cache_blocked=s <= 4)
        return y.reshape(N, C, H * s, W * s)

    def backward(self, gy):
        if self.ex is not None:
            return gpu.upsample_nearest_backward(get_array_module(gy), self.ex, gy, self.scale)
        xp = get_array_module(gy)
        s = self.scale
        N, C, H, W = gy.shape
        gx = xp.empty((N, C, H // s, W // s), dtype=gy.dtype)

        def block_sums(c0, c1):
            g, out = gy[:, c0:c1], gx[:, c0:c1]
            if s >= 32:
                # large blocks: sum each row's runs of s contiguous values, then s rows at a time
                # (the additions below would take 62 passes; measured, this is then 1.3x faster,
                # and 1.6x slower for s = 16)
                row_sums = g.reshape(N, c1 - c0, H, W // s, s).sum(axis=4)
                row_sums.reshape(N, c1 - c0, H // s, s, W // s).sum(axis=3, out=out)
                return
            # small blocks: plain additions, much faster than a reduction over the short block
            # axes of a 6-D view. First the s rows of each block, whole rows at a time (contiguous
            # runs of s·W values), then the s columns of those sums: 2(s − 1) passes, where s·s
            # strided adds of output-sized blocks read every value of g with a stride
            if s == 1:
                out[...] = g
                return
            rows = np.add(g[:, :, 0::s], g[:, :, 1::s])
            for p in range(2, s):
                rows += g[:, :, p::s]
            np.add(rows[..., 0::s], rows[..., 1::s], out=out)
            for q in range(2, s):
                out += rows[..., q::s]

        _over_channels(xp, block_sums, gy, cache_blocked=s < 32)
        return gx


def _on(axis, ndim, index):
    """An index tuple that applies ``index`` (a slice or an int) to one axis and keeps the rest."""
    key = [slice(None)] * ndim
    key[axis] = index
    return tuple(key)


def bilinear2x_axis(x, axis, out=None):
    """FRRN's ×2 linear interpolation along one axis (see the module docstring), into ``out`` when
    given (x's shape with that axis doubled).

    Slices along ``axis`` in place (no moveaxis), so that the innermost loop of every pass runs
    along the last, contiguous axis whichever axis is interpolated."""
    xp = get_array_module(x)
    axis = axis % x.ndim
    L = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = 2 * L
    if out is None:
        out = xp.empty(shape, dtype=x.dtype)
    elif tuple(out.shape) != tuple(shape):
        raise ValueError(f"bilinear2x_axis: out must have shape {tuple(shape)}, got "
                         f"{tuple(out.shape)}")

    def at(index):
        return _on(axis, x.ndim, index)

    out[at(slice(0, None, 2))] = x
    # x[m]/2 + x[m + 1]/2 is (x[m] + x[m + 1])/2 to the bit (halving a normal number is exact)
    # except near the float range's ends, where it is the safer of the two (x[m] + x[m + 1] may
    # overflow; halving a subnormal rounds); and halving x first, contiguously, spares a second
    # strided pass over the odd entries of out
    half = x * x.dtype.type(0.5)
    xp.add(half[at(slice(None, -1))], half[at(slice(1, None))], out=out[at(slice(1, -1, 2))])
    out[at(-1)] = x[at(-1)]
    return out


def bilinear2x_axis_adjoint(g, axis, out=None):
    """The adjoint of ``bilinear2x_axis`` along ``axis`` (length 2L -> L), into ``out`` when given.

    Three passes: half of every odd entry, g[2m] + that half of g[2m + 1] (for every m), plus the
    half of g[2m − 1]; the edge's g[2L − 1], which the forward copied whole, gets its other half."""
    xp = get_array_module(g)
    axis = axis % g.ndim

    def at(index):
        return _on(axis, g.ndim, index)

    half_odd = g[at(slice(1, None, 2))] * g.dtype.type(0.5)   # L entries: g[2m + 1] / 2
    gx = xp.add(g[at(slice(0, None, 2))], half_odd, out=out)
    gx[at(slice(1, None))] += half_odd[at(slice(None, -1))]
    gx[at(-1)] += half_odd[at(-1)]                            # the repeated edge: g[2L − 1] whole
    return gx


class UpsampleBilinear2xFunction(Function):
    """y = FRRN bilinear ×2 over W then H;  returns its adjoint applied to gy (over H then W).

    The two axes' interpolations commute; this order puts the strided passes (along W, the
    contiguous axis) on the half-size intermediate, so that the full-size array, y in forward
    and gy in backward, is only read or written in whole rows (0.74–0.84 of the time of H first,
    fwd+bwd)."""

    def forward(self, x):
        self.ex = executor_for(x)
        if self.ex is not None:
            return gpu.bilinear2x_forward(get_array_module(x), self.ex, x)
        xp = get_array_module(x)
        N, C, H, W = x.shape
        y = xp.empty((N, C, 2 * H, 2 * W), dtype=x.dtype)

        def interpolate_channels(c0, c1):
            # the second pass (rows) writes y itself: copying a finished block in would cost one
            # more pass over the largest array
            bilinear2x_axis(bilinear2x_axis(x[:, c0:c1], 3), 2, out=y[:, c0:c1])

        _over_channels(xp, interpolate_channels, y)
        return y

    def backward(self, gy):
        xp = get_array_module(gy)
        if self.ex is not None:
            return gpu.bilinear2x_backward(xp, self.ex, gy)
        N, C, H, W = gy.shape
        gx = xp.empty((N, C, H // 2, W // 2), dtype=gy.dtype)

        def adjoint_channels(c0, c1):
            bilinear2x_axis_adjoint(bilinear2x_axis_adjoint(gy[:, c0:c1], 2), 3, out=gx[:, c0:c1])

        _over_channels(xp, adjoint_channels, gy)
        return gx


def _check(name, x):
    xd = unwrap(x)
    if xd.ndim != 4:
        raise ValueError(f"{name}: x must be 4-D (N, C, H, W), got shape {tuple(xd.shape)}")
    if xd.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: x must be float32 or float64, got {xd.dtype}")


def upsample_nearest2d(x, scale):
    """Nearest-neighbour upsampling by an integer ``scale`` (1..32): every value becomes an
    s×s block. Gradient: the sum over each block."""
    _check("upsample_nearest2d", x)
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)):
        raise TypeError(f"upsample_nearest2d: scale must be an integer, got {scale!r}")
    if not 1 <= scale <= 32:
        raise ValueError(f"upsample_nearest2d: scale must be in 1..32, got {scale}")
    return UpsampleNearest2dFunction(int(scale))(x)


def upsample_bilinear2x(x):
    """FRRN's bilinear ×2 upsampling (Theano semantics, edge repeated). Gradient: its adjoint."""
    _check("upsample_bilinear2x", x)
    return UpsampleBilinear2xFunction()(x)
