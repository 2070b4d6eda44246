"""Shape ops: reshape, transpose, concat, indexing/slicing, and matmul.

Each moves or selects elements without changing them, so each backward moves the upstream gradient
``gy`` back to where the elements came from (the adjoint of the forward's data movement).
"""
from __future__ import annotations

from ..autograd import Function, Tensor, as_tensor, is_whole_number, unwrap_index
from ..backend import get_array_module

__all__ = ["reshape", "transpose", "concat", "getitem", "matmul"]


class Reshape(Function):
    """out = x viewed with ``shape``;  returns gy reshaped to x's shape."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape an input of shape {x.shape} "
                             f"({x.size} elements) to {self.shape}") from None

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Transpose(Function):
    """out = x with axes permuted by ``axes`` (reversed when None);  returns gy permuted back."""

    def __init__(self, axes=None):
        self.axes = None if axes is None else tuple(axes)

    def forward(self, x):
        axes = tuple(reversed(range(x.ndim))) if self.axes is None else self.axes
        if (len(axes) != x.ndim or not all(is_whole_number(a) for a in axes)
                or sorted(a % x.ndim for a in axes) != list(range(x.ndim))):
            raise ValueError(f"transpose: axes {axes} are not a permutation of the "
                             f"{x.ndim} axes of the input")
        self.inverse = tuple(sorted(range(x.ndim), key=lambda i: axes[i] % x.ndim))
        return x.transpose(axes)

    def backward(self, gy):
        return gy.transpose(self.inverse)


class Concat(Function):
    """out = [x_1, x_2, ...] joined along ``axis``;  returns gy split at the same boundaries."""

    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *xs):
        xp = get_array_module(*xs)
        if not xs:
            raise ValueError("concat: needs at least one input")
        ref = xs[0]
        if ref.ndim == 0 or not -ref.ndim <= self.axis < ref.ndim:
            raise ValueError(f"concat: axis {self.axis} is out of range for inputs of "
                             f"{ref.ndim} axes (shape {tuple(ref.shape)})")
        axis = self.axis % ref.ndim
        for i, x in enumerate(xs):
            if x.ndim != ref.ndim or any(x.shape[d] != ref.shape[d] for d in range(ref.ndim) if d != axis):
                raise ValueError(f"concat: input {i} has shape {x.shape}, which does not match input "
                                 f"0's shape {ref.shape} outside axis {axis}")
            if x.dtype != ref.dtype:
                raise TypeError(f"concat: input {i} has dtype {x.dtype}, input 0 has {ref.dtype}")
        self.axis_ = axis
        self.sizes = [x.shape[axis] for x in xs]
        return xp.concatenate(xs, axis=axis)

    def backward(self, gy):
        grads, start = [], 0
        index = [slice(None)] * gy.ndim
        for size in self.sizes:
            index[self.axis_] = slice(start, start + size)
            grads.append(gy[tuple(index)])
            start += size
        return tuple(grads)


class GetItem(Function):
    """out = x[index] (basic slicing or advanced integer/boolean indexing);
    returns a zero array of x's shape with gy scattered back (added, so repeated indices sum)."""

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.in_shape, self.in_dtype = x.shape, x.dtype
        return x[self.index]

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.in_shape, dtype=self.in_dtype)
        if _is_basic_index(self.index):
            gx[self.index] = gy  # basic slices never repeat an element: plain assignment
        else:
            xp.add.at(gx, self.index, gy)  # integer arrays may repeat an element: add, not assign
        return gx


def _is_basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, slice)) or i is None or i is Ellipsis for i in items)


class MatMul(Function):
    """out = a @ b (batched over leading axes, which broadcast);
    returns (gy @ bᵀ, aᵀ @ gy) over the last two axes."""

    broadcasts = True

    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul: both operands need at least 2 dimensions, got shapes "
                             f"{a.shape} and {b.shape} (reshape a vector to (1, n) or (n, 1))")
        if a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: inner dimensions differ: {a.shape} @ {b.shape}")
        if a.dtype != b.dtype:
            raise TypeError(f"matmul: operands have dtypes {a.dtype} and {b.dtype}; cast one to match")
        self.a = a if self.needs_input_grad[1] else None
        self.b = b if self.needs_input_grad[0] else None
        return a @ b

    def backward(self, gy):
        ga = gy @ self.b.swapaxes(-1, -2) if self.needs_input_grad[0] else None
        gb = self.a.swapaxes(-1, -2) @ gy if self.needs_input_grad[1] else None
        return ga, gb


def reshape(x, shape):
    """x with a new shape (same number of elements)."""
    return Reshape(shape)(x)


def transpose(x, axes=None):
    """Permute the axes of x (reverse them when ``axes`` is None)."""
    return Transpose(axes)(x)


def concat(xs, axis=0):
    """Join a sequence of tensors along ``axis``."""
    if isinstance(xs, Tensor) or hasattr(xs, "ndim"):
        # iterating one tensor or array would join its rows
        raise TypeError("concat: xs must be a list of tensors, got one tensor: pass [a, b]")
    return Concat(axis)(*xs)


def getitem(x, index):
    """x[index]: slicing or integer/boolean indexing, differentiable."""
    return GetItem(unwrap_index(index))(as_tensor(x))


def matmul(a, b):
    """Matrix product over the last two axes, batched (and broadcast) over the leading ones."""
    return MatMul()(a, b)
