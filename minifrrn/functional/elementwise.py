"""Elementwise ops and reductions.

Notation: ``x``, ``y`` inputs, ``out`` the output, ``gy`` the upstream gradient dl/d(out); every
backward returns dl/d(input). Binary ops broadcast as NumPy does; the engine sums their gradients back
to each input's shape (``broadcasts = True``), so the formulas below are written per element.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor, check_number_fits, unwrap
from ..backend import get_array_module

__all__ = ["add", "sub", "mul", "div", "neg", "pow", "cast", "exp", "log", "relu", "sum", "mean"]


def _check_operands(name, a, b):
    """Refuse operands of different float dtypes, or of shapes that do not broadcast, naming both."""
    if a.dtype != b.dtype and (a.dtype.kind == "f" or b.dtype.kind == "f"):
        raise TypeError(f"{name}: operands have dtypes {a.dtype} and {b.dtype}; cast one with "
                        f".astype(...) so both match (minifrrn never promotes silently)")
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{name}: shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast "
                         f"(each axis, counted from the last, must match or be 1): reshape one "
                         f"operand") from None


class Add(Function):
    """out = x + y;  returns (gy, gy)."""

    broadcasts = True

    def forward(self, x, y):
        _check_operands("add", x, y)
        return x + y

    def backward(self, gy):
        return gy, gy


class Sub(Function):
    """out = x - y;  returns (gy, -gy)."""

    broadcasts = True

    def forward(self, x, y):
        _check_operands("sub", x, y)
        return x - y

    def backward(self, gy):
        return gy, -gy


class Mul(Function):
    """out = x * y;  returns (gy * y, gy * x)."""

    broadcasts = True

    def forward(self, x, y):
        _check_operands("mul", x, y)
        # each gradient needs the *other* operand: keep only what will be used
        self.x = x if self.needs_input_grad[1] else None
        self.y = y if self.needs_input_grad[0] else None
        return x * y

    def backward(self, gy):
        gx = gy * self.y if self.needs_input_grad[0] else None
        gyy = gy * self.x if self.needs_input_grad[1] else None
        return gx, gyy


class Div(Function):
    """out = x / y;  returns (gy / y, -gy * x / y²)."""

    broadcasts = True

    def forward(self, x, y):
        _check_operands("div", x, y)
        self.x, self.y = x, y
        return x / y

    def backward(self, gy):
        gx = gy / self.y
        gyy = -gx * self.x / self.y if self.needs_input_grad[1] else None
        return gx, gyy


class Neg(Function):
    """out = -x;  returns -gy."""

    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Pow(Function):
    """out = x ** c for a constant exponent c;  returns gy * c * x**(c-1)."""

    def __init__(self, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("pow: the exponent must be a Python number, got a Tensor "
                            "(use exp(c * log(x)) for a learnable exponent)")
        self.exponent = float(exponent)

    def forward(self, x):
        check_number_fits(x.dtype, self.exponent, "exponent")
        self.x = x
        return x ** x.dtype.type(self.exponent)

    def backward(self, gy):
        c = self.x.dtype.type(self.exponent)
        if c == 0:  # x ** 0 is constant: 0 · x ** −1 would be NaN at x = 0
            return get_array_module(gy).zeros_like(gy)
        return gy * c * self.x ** (c - 1)


class Cast(Function):
    """out = x cast to another floating dtype;  returns gy cast back to x's dtype."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        self.input_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.input_dtype)


class Exp(Function):
    """out = exp(x);  returns gy * out."""

    def forward(self, x):
        xp = get_array_module(x)
        self.out = xp.exp(x)
        return self.out

    def backward(self, gy):
        return gy * self.out


class Log(Function):
    """out = log(x);  returns gy / x."""

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        return xp.log(x)

    def backward(self, gy):
        return gy / self.x


class ReLU(Function):
    """out = max(x, 0);  returns gy * [x > 0] (the subgradient 0 is taken at x = 0).

    Only the boolean mask is kept for backward, not the input.
    """

    def forward(self, x):
        xp = get_array_module(x)
        self.mask = x > 0
        return xp.maximum(x, x.dtype.type(0))

    def backward(self, gy):
        return gy * self.mask


def _normalise_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    out = []
    for a in axis:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for an input with {ndim} dimensions")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axis {tuple(axis)} names one axis twice")
    return tuple(sorted(out))


class Sum(Function):
    """out = Σ_axes x;  returns gy broadcast back over the summed axes."""

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalise_axes(self.axis, x.ndim)
        self.shape = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        xp = get_array_module(gy)
        if not self.keepdims:
            gy = xp.expand_dims(gy, self.axes) if self.axes else gy
        return xp.broadcast_to(gy, self.shape).copy()


class Mean(Function):
    """out = (1/M) Σ_axes x with M the number of summed elements;  returns gy / M broadcast back."""

    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalise_axes(self.axis, x.ndim)
        self.shape = x.shape
        count = 1
        for a in self.axes:
            count *= x.shape[a]
        self.count = count
        return x.mean(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        xp = get_array_module(gy)
        if not self.keepdims:
            gy = xp.expand_dims(gy, self.axes) if self.axes else gy
        # an empty axis has no element to send a gradient to: any scale will do
        scale = gy.dtype.type(1.0 / max(self.count, 1))
        return xp.broadcast_to(gy * scale, self.shape).copy()


def add(x, y):
    """x + y with broadcasting."""
    return Add()(x, y)


def sub(x, y):
    """x - y with broadcasting."""
    return Sub()(x, y)


def mul(x, y):
    """x * y with broadcasting."""
    return Mul()(x, y)


def div(x, y):
    """x / y with broadcasting."""
    return Div()(x, y)


def neg(x):
    """-x."""
    return Neg()(x)


def pow(x, exponent):  # noqa: A001 - mirrors the operator's name
    """x ** exponent for a constant exponent."""
    return Pow(exponent)(x)


def exp(x):
    """exp(x), of a float tensor."""
    _check_float("exp", x)
    return Exp()(x)


def log(x):
    """Natural logarithm, of a float tensor."""
    _check_float("log", x)
    return Log()(x)


def _check_float(name, x):
    """Refuse inputs other than float32 and float64 to a function whose result is a float: NumPy
    would pick the result's precision from an integer's width (float16 for uint8), and float16
    overflows early (exp(12) is inf)."""
    dtype = getattr(unwrap(x), "dtype", None)  # a Python number goes through as a float would
    if dtype is not None and dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: x must be float32 or float64, got {dtype}: cast it first, "
                        f"x.astype(np.float32)")


def cast(x, dtype):
    """x as float32 or float64, differentiable (the gradient is cast back)."""
    if np.dtype(dtype).kind != "f":
        raise TypeError(f"cast: a differentiable cast is to a floating dtype, got {np.dtype(dtype)}")
    return Cast(dtype)(x)


def relu(x):
    """max(x, 0)."""
    return ReLU()(x)


def sum(x, axis=None, keepdims=False):  # noqa: A001
    """Sum over ``axis`` (all axes by default)."""
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis`` (all axes by default)."""
    return Mean(axis, keepdims)(x)
