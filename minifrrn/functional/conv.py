"""2-D convolution (cross-correlation) through im2col + GEMM, and col2im for the backward.

Notation: x (N, C, H, W), W (OC, C, KH, KW), b (OC,), stride (SH, SW), zero padding (PH, PW),
output y (N, OC, OH, OW) with OH = (H + 2·PH − KH) // SH + 1 and OW likewise.

    y[n, o, i, j] = b[o] + Σ_{c, p, q} W[o, c, p, q] · x_pad[n, c, i·SH + p, j·SW + q]

im2col gathers, for every output position, the C·KH·KW input values it sees into one column:
cols (N, C·KH·KW, OH·OW). The convolution is then one matrix product per image,
``y[n] = W.reshape(OC, C·KH·KW) @ cols[n]``, which lands directly in the (OC, OH·OW) = NCHW layout:
no transpose of the output is needed, and BLAS does the work. The gradients are matrix products too:

    gW  = Σ_n gy[n] @ cols[n]ᵀ                    (OC, C·KH·KW)
    gb  = Σ_{n, i, j} gy[n, :, i, j]
    gcols[n] = Wᵀ @ gy[n]                          (C·KH·KW, OH·OW), and gx = col2im(gcols)

col2im is the adjoint of im2col: every column entry is added back to the input pixel it came from.
A 1×1 convolution with stride 1 and no padding needs no im2col at all (cols is x itself).
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, unwrap as _data
from ..backend import get_array_module
from ..kernels import executor_for
from ..kernels import ops as gpu
from . import cpu_parallel as par

__all__ = ["conv2d", "Conv2dFunction", "im2col", "col2im", "conv_output_size"]

_FLOATS = (np.float32, np.float64)


def _pair(value, name):
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"conv2d: {name} must be an int or a pair, got {value!r}")
        a, b = value
    else:
        a = b = value
    if not all(isinstance(v, (int, np.integer)) for v in (a, b)):
        raise TypeError(f"conv2d: {name} must be integers, got {value!r}")
    return int(a), int(b)


def conv_output_size(size, kernel, stride, pad):
    return (size + 2 * pad - kernel) // stride + 1


def im2col(x, KH, KW, SH, SW, PH, PW):
    """Gather x (N, C, H, W) into cols (N, C·KH·KW, OH·OW), rows ordered (c, p, q)."""
    xp = get_array_module(x)
    N, C, H, W = x.shape
    OH, OW = conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)
    if PH or PW:
        x = xp.pad(x, ((0, 0), (0, 0), (PH, PH), (PW, PW)))
    sN, sC, sH, sW = x.strides
    # a strided view (N, C, KH, KW, OH, OW) of the padded input; copying it out is the one pass
    windows = xp.lib.stride_tricks.as_strided(
        x, shape=(N, C, KH, KW, OH, OW), strides=(sN, sC, sH, sW, sH * SH, sW * SW))
    cols = xp.empty((N, C, KH, KW, OH, OW), dtype=x.dtype)
    if xp is not np:
        cols[...] = windows
    else:
        def copy_channels(c0, c1):
            cols[:, c0:c1] = windows[:, c0:c1]
        par.over_channels(copy_channels, cols, cache_blocked=False)
    return cols.reshape(N, C * KH * KW, OH * OW)


def col2im(cols, x_shape, KH, KW, SH, SW, PH, PW):
    """Adjoint of im2col: add every entry of cols (N, C·KH·KW, OH·OW) back into its input pixel."""
    xp = get_array_module(cols)
    N, C, H, W = x_shape
    OH, OW = conv_output_size(H, KH, SH, PH), conv_output_size(W, KW, SW, PW)
    cols = cols.reshape(N, C, KH, KW, OH, OW)
    gx = xp.zeros((N, C, H + 2 * PH + SH - 1, W + 2 * PW + SW - 1), dtype=cols.dtype)

    def add_channels(c0, c1):
        # the KH·KW additions into gx[:, c0:c1] run back to back while that block is in cache
        block = gx[:, c0:c1]
        for p in range(KH):
            for q in range(KW):
                block[:, :, p:p + SH * OH:SH, q:q + SW * OW:SW] += cols[:, c0:c1, p, q]

    if xp is not np:
        add_channels(0, C)
    else:
        par.over_channels(add_channels, gx, elements=cols.size)
    return gx[:, :, PH:PH + H, PW:PW + W]


class Conv2dFunction(Function):
    """y = conv2d(x, W, b) (see the module docstring); returns (gx, gW, gb)."""

    def __init__(self, stride, pad):
        self.SH, self.SW = stride
        self.PH, self.PW = pad

    def forward(self, x, W, b=None):
        xp = get_array_module(x, W)
        N, C, H, Wd = x.shape
        OC, _, KH, KW = W.shape
        OH = conv_output_size(H, KH, self.SH, self.PH)
        OW = conv_output_size(Wd, KW, self.SW, self.PW)
        self.x_shape, self.KH, self.KW = x.shape, KH, KW
        self.ex = executor_for(x, W)
        if self.ex is not None:  # the GPU path: im2col kernel + one batched GEMM
            y, cols = gpu.conv2d_forward(xp, self.ex, x, W, b, self.SH, self.SW, self.PH, self.PW,
                                         keep_cols=self.needs_input_grad[1])
            self.cols = cols
            self.W = W if self.needs_input_grad[0] else None
            self.W_shape = W.shape
            return y
        pointwise = KH == KW == 1 and self.SH == self.SW == 1 and self.PH == self.PW == 0
        cols = (xp.ascontiguousarray(x).reshape(N, C, H * Wd) if pointwise
                else im2col(x, KH, KW, self.SH, self.SW, self.PH, self.PW))
        Wm = W.reshape(OC, -1)
        y = xp.matmul(Wm, cols)  # (N, OC, OH·OW): already NCHW
        if b is not None:
            y += b.reshape(1, OC, 1)
        # keep only what the gradients need: cols for gW, W for gx
        self.cols = cols if self.needs_input_grad[1] else None
        self.Wm = Wm if self.needs_input_grad[0] else None
        self.W_shape = W.shape
        return y.reshape(N, OC, OH, OW)

    def backward(self, gy):
        xp = get_array_module(gy)
        N, OC, OH, OW = gy.shape
        has_bias = len(self.needs_input_grad) > 2
        if self.ex is not None:
            W = self.W if self.W is not None else xp.empty(self.W_shape, gy.dtype)
            gx, gW, gb = gpu.conv2d_backward(
                xp, self.ex, gy, self.cols, W, self.x_shape, self.SH, self.SW, self.PH, self.PW,
                self.needs_input_grad[0], self.needs_input_grad[1],
                has_bias and self.needs_input_grad[2])
            return (gx, gW, gb) if has_bias else (gx, gW)
        gy = gy.reshape(N, OC, OH * OW)
        gx = gW = gb = None
        if self.needs_input_grad[1]:
            gWm = xp.zeros((OC, self.cols.shape[1]), dtype=gy.dtype)
            for n in range(N):  # BLAS reads the transposed operand in place: no copy
                gWm += gy[n] @ self.cols[n].T
            gW = gWm.reshape(self.W_shape)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            gb = gy.sum(axis=(0, 2))
        if self.needs_input_grad[0]:
            gcols = xp.matmul(self.Wm.T, gy)  # (N, C·KH·KW, OH·OW)
            if self.KH == self.KW == 1 and self.SH == self.SW == 1 and self.PH == self.PW == 0:
                gx = gcols.reshape(self.x_shape)
            else:
                gx = col2im(gcols, self.x_shape, self.KH, self.KW, self.SH, self.SW, self.PH,
                            self.PW)
                gx = xp.ascontiguousarray(gx)
        return (gx, gW) if len(self.needs_input_grad) == 2 else (gx, gW, gb)


def conv2d(x, W, b=None, stride=1, pad=0):
    """2-D cross-correlation of x (N, C, H, W) with W (OC, C, KH, KW), optional bias b (OC,).

    ``stride`` and ``pad`` are ints or (vertical, horizontal) pairs; padding is with zeros.
    Returns y (N, OC, OH, OW). Gradients: gx = col2im(Wᵀ·gy), gW = Σ_n gy·colsᵀ, gb = Σ gy.
    """
    stride, pad = _pair(stride, "stride"), _pair(pad, "pad")
    xd, Wd = _data(x), _data(W)
    if xd.ndim != 4:
        raise ValueError(f"conv2d: x must be 4-D (N, C, H, W), got shape {tuple(xd.shape)}")
    if Wd.ndim != 4:
        raise ValueError(f"conv2d: W must be 4-D (OC, C, KH, KW), got shape {tuple(Wd.shape)}")
    if xd.shape[1] != Wd.shape[1]:
        raise ValueError(f"conv2d: x has {xd.shape[1]} channels but W expects {Wd.shape[1]} "
                         f"(W shape {tuple(Wd.shape)})")
    for name, arr in (("x", xd), ("W", Wd)) + ((("b", _data(b)),) if b is not None else ()):
        if arr.dtype not in _FLOATS:
            raise TypeError(f"conv2d: {name} must be float32 or float64, got {arr.dtype}")
    if xd.dtype != Wd.dtype or (b is not None and _data(b).dtype != Wd.dtype):
        raise TypeError(f"conv2d: x is {xd.dtype} but the weights are {Wd.dtype}: cast the input "
                        f"(x.astype(...)) or the model (model.astype(...)) so they match")
    if b is not None and tuple(_data(b).shape) != (Wd.shape[0],):
        raise ValueError(f"conv2d: b must have shape ({Wd.shape[0]},), got {tuple(_data(b).shape)}")
    if min(stride) < 1 or min(pad) < 0:
        raise ValueError(f"conv2d: stride must be >= 1 and pad >= 0, got stride={stride}, pad={pad}")
    OH = conv_output_size(xd.shape[2], Wd.shape[2], stride[0], pad[0])
    OW = conv_output_size(xd.shape[3], Wd.shape[3], stride[1], pad[1])
    if OH < 1 or OW < 1:
        raise ValueError(f"conv2d: kernel {Wd.shape[2]}x{Wd.shape[3]} is larger than the padded "
                         f"input {xd.shape[2]}x{xd.shape[3]} (pad {pad})")
    fn = Conv2dFunction(stride, pad)
    return fn(x, W) if b is None else fn(x, W, b)
