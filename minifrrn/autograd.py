"""The autograd engine: ``Tensor``, ``Function``, ``no_grad`` and an iterative ``backward``.

How it works
------------
A ``Tensor`` wraps an array (NumPy or CuPy). Calling a ``Function`` on tensors runs its ``forward`` on
the raw arrays and, when some input requires a gradient, records the call in a graph:

* each tensor owns a small graph *node* (its creator, its generation, its gradient, its shape and
  dtype, but **not** its data), and the function keeps strong references to its inputs' nodes and
  weak references to its outputs' nodes. The data of an intermediate tensor is therefore freed as
  soon as nobody holds the tensor, unless the function explicitly saved it for backward
  (``save_for_backward``): functions keep only what their backward needs.
* ``generation`` orders the graph: a function's generation is the largest generation of its inputs,
  and its outputs get one more. Processing functions from the highest generation down guarantees that
  every consumer of a tensor has passed its gradient back before the tensor's creator runs. That is
  why a reused value (``b = a + a; c = b + b``) gets its gradients summed before they flow on, which a
  plain depth-first recursion gets wrong.
* ``backward`` walks the graph with a heap, never recursing, so arbitrarily deep chains work.

Gradients of leaf tensors *accumulate*: calling ``backward`` twice adds the two gradients, as in
PyTorch. Clear them between optimisation steps (``tensor.zero_grad()`` or ``optimizer.zero_grad()``).
Unlike PyTorch, a graph is not freed by its backward: calling ``backward`` again on the same result
runs it again and adds its gradients a second time. Gradients of intermediate tensors are freed as
soon as they have been passed on, unless the tensor asked for ``retain_grad()``.

Functions keep references to the arrays their backward needs, not copies, and there is no version
count: changing a tensor's values in place between a forward and its backward (an optimiser step,
``load_state_dict``, ``t.data[...] = ...``, and under ``no_grad()`` ``t -= ...`` or ``t[i] = ...``
on a leaf or on a ``detach()``-ed tensor, which shares its source's data) silently changes the
gradients that backward computes. Run the backward first, as a training step does. While gradients
are recorded nothing changes in place: ``x += y`` makes a new tensor, and ``t[i] = ...`` is refused.

One engine-level check guards every backward: the gradient a function returns for an input must have
that input's shape, dtype and device. Broadcasting is undone in one place only: for functions that
declare ``broadcasts = True`` (the elementwise binary ops), the engine sums the gradient over the
broadcast axes (``sum_to``) before that check.
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import threading
import weakref

import numpy as np

from .backend import as_numpy, get_array_module, is_gpu_array, to_device

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "tensor", "as_tensor",
           "sum_to", "recompute", "unwrap"]


class _GradMode(threading.local):
    """Whether graphs are recorded, per thread (a no_grad block in one thread, say a loader's,
    leaves the others recording); each thread starts with it on."""
    enable_backprop = True


_Config = _GradMode()


@contextlib.contextmanager
def no_grad():
    """Within this block no graph is recorded: outputs never require gradients (inference mode)."""
    previous = _Config.enable_backprop
    _Config.enable_backprop = False
    try:
        yield
    finally:
        _Config.enable_backprop = previous


@contextlib.contextmanager
def enable_grad():
    """Re-enable graph recording inside a ``no_grad`` block."""
    previous = _Config.enable_backprop
    _Config.enable_backprop = True
    try:
        yield
    finally:
        _Config.enable_backprop = previous


def is_grad_enabled() -> bool:
    return _Config.enable_backprop


def sum_to(gradient, shape):
    """Sum ``gradient`` over the axes that broadcasting added or stretched, so it gets ``shape``.

    The adjoint of broadcasting ``x`` of ``shape`` to ``gradient.shape``.
    """
    if gradient.shape == tuple(shape):
        return gradient
    lead = gradient.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, size in enumerate(shape) if size == 1 and gradient.shape[lead + i] != 1)
    out = gradient.sum(axis=axes, keepdims=True)
    if lead:
        out = out.reshape(out.shape[lead:])
    return out


class _Node:
    """The part of a tensor the graph needs: creator, generation, gradient; never the data."""

    __slots__ = ("creator", "generation", "grad", "requires_grad", "retains_grad", "shape",
                 "dtype", "on_gpu", "name", "__weakref__")

    def __init__(self, data, requires_grad, name=None):
        self.creator = None
        self.generation = 0
        self.grad = None
        self.requires_grad = requires_grad
        self.retains_grad = False
        self.shape = data.shape
        self.dtype = data.dtype
        self.on_gpu = is_gpu_array(data)
        self.name = name

    def describe(self):
        return self.name or f"tensor of shape {self.shape}"


_FLOAT_KINDS = "f"
_ARRAY_KINDS = "biuf"  # bool, signed and unsigned integers, floats: what the ops accept


class Tensor:
    """An array with an optional gradient and the function that made it.

    Attributes: ``data`` (the NumPy or CuPy array), ``grad`` (an array of the same shape, dtype and
    device, or ``None``), ``requires_grad``, ``creator`` (the ``Function`` that produced it, ``None``
    for leaves).
    """

    __array_priority__ = 1000  # make ``ndarray + Tensor`` call Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, name: str | None = None):
        if isinstance(data, Tensor):
            data = data.data
        if not (isinstance(data, np.ndarray) or is_gpu_array(data)):
            data = np.asarray(data)
        if data.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"a tensor holds bool, integer or floating-point values, got dtype "
                            f"{data.dtype}: convert it first (e.g. np.asarray(values, np.float32))")
        if requires_grad and data.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {data.dtype}")
        self.data = data
        self._node = _Node(data, bool(requires_grad), name)

    # --- graph attributes, stored on the node ----------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._node.requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool):
        if value and self.data.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        if self._node.creator is not None and not value:
            raise RuntimeError("requires_grad can only be switched off on leaf tensors; use .detach()")
        self._node.requires_grad = bool(value)

    @property
    def grad(self):
        return self._node.grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            _check_gradient(value, self._node, "assigned gradient")
        self._node.grad = value

    @property
    def creator(self):
        return self._node.creator

    @property
    def name(self):
        return self._node.name

    @name.setter
    def name(self, value):
        self._node.name = value

    @property
    def is_leaf(self) -> bool:
        return self._node.creator is None

    def retain_grad(self):
        """Keep this non-leaf tensor's gradient after ``backward`` (freed by default)."""
        self._node.retains_grad = True
        return self

    def zero_grad(self):
        """Forget the accumulated gradient (sets ``grad`` to ``None``)."""
        self._node.grad = None

    cleargrad = zero_grad

    def detach(self) -> "Tensor":
        """A new leaf tensor sharing this data, cut from the graph."""
        return Tensor(self.data, requires_grad=False)

    # --- array-like attributes ------------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> str:
        return "gpu" if is_gpu_array(self.data) else "cpu"

    def __len__(self):
        return len(self.data)

    def __bool__(self):
        # a one-element tensor is as true as its value (``if mask.sum():``); for more elements
        # "true" has no single meaning, as for NumPy arrays
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self.shape} is ambiguous: "
                             f"reduce it first (t.data.any(), t.data.all()) or test t.item()")
        return bool(self.data.item())

    def __float__(self):
        return float(self._one_value("float"))

    def __int__(self):
        return int(self._one_value("int"))

    def _one_value(self, what):
        if self.data.size != 1:
            raise TypeError(f"{what}() of a tensor needs one element, got shape {self.shape}: "
                            f"reduce it first (e.g. t.sum())")
        return self.data.item()

    def __array__(self, dtype=None, copy=None):
        # np.asarray(t), np.allclose(t, ...): the values, as a NumPy array (copied from a GPU),
        # without the graph (NumPy functions do not record gradients). NumPy asks for a copy
        # (np.array(t)) or forbids one (copy=False) and trusts the answer
        values = as_numpy(self.data)
        copied = values is not self.data
        if dtype is not None and values.dtype != np.dtype(dtype):
            values, copied = values.astype(dtype), True
        if copy and not copied:
            values = values.copy()
        elif copy is False and copied:
            raise ValueError("the tensor's values cannot be read without a copy (they are on the "
                             "GPU, or of another dtype): leave out copy=False")
        return values

    # a NumPy ufunc applied to a tensor (np.exp(t)) would return an array, silently without the
    # graph; with this it raises, and ``ndarray + Tensor`` calls Tensor.__radd__
    __array_ufunc__ = None

    def __repr__(self):
        body = repr(as_numpy(self.data)).replace("array(", "").rstrip(")")
        extra = ", requires_grad=True" if self.requires_grad else ""
        dev = ", device='gpu'" if self.device == "gpu" else ""
        return f"tensor({body}{dev}{extra})"

    def numpy(self):
        """The data as a NumPy array (copied from the GPU when needed)."""
        return as_numpy(self.data)

    def item(self):
        return self.data.item()

    def to(self, device: str) -> "Tensor":
        """Move the data (and gradient) to ``"cpu"`` or ``"gpu"`` in place; returns ``self``.

        Only leaf tensors can move (moving a graph's intermediate would cut the graph).
        """
        if not self.is_leaf:
            raise RuntimeError("only leaf tensors can be moved between devices; use .detach().to(...)")
        self.data = to_device(self.data, device)
        self._node.on_gpu = is_gpu_array(self.data)
        if self._node.grad is not None:
            self._node.grad = to_device(self._node.grad, device)
        return self

    def astype(self, dtype) -> "Tensor":
        """The data cast to ``dtype``. To a floating dtype the cast is an op of the graph (its
        gradient is cast back), so ``x.astype(np.float64)`` keeps ``x``'s gradients flowing; to an
        integer or bool dtype the result is a constant, which carries no gradient."""
        if np.dtype(dtype).kind == "f":
            return _F().cast(self, dtype)
        return Tensor(self.data.astype(dtype), name=self.name)

    # --- backward ---------------------------------------------------------------------------------
    def backward(self, grad=None):
        """Backpropagate from this tensor: accumulate d(self)/d(leaf) · grad into every leaf's ``grad``.

        ``grad`` is the upstream gradient (the same shape as ``self``); it may be omitted only for a
        tensor with one element, where it defaults to 1. Gradients accumulate across calls.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: no input of the "
                               "computation had requires_grad=True (or it ran under no_grad())")
        xp = get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a tensor with one element, got shape "
                    f"{self.shape}: reduce it first (e.g. loss.mean()) or pass grad= of shape {self.shape}")
            grad = xp.ones_like(self.data)
        elif isinstance(grad, Tensor):
            grad = grad.data
        elif not hasattr(grad, "shape"):  # a number or a list: as an array of this tensor's dtype
            grad = xp.asarray(grad, dtype=self.dtype)
        _check_gradient(grad, self._node, "upstream gradient given to backward()")
        _run_backward(self._node, grad)

    # --- operators (the ops live in minifrrn.functional) -----------------------------------------
    def __add__(self, other):
        return _F().add(self, other)

    def __radd__(self, other):
        return _F().add(other, self)

    def __sub__(self, other):
        return _F().sub(self, other)

    def __rsub__(self, other):
        return _F().sub(other, self)

    def __mul__(self, other):
        return _F().mul(self, other)

    def __rmul__(self, other):
        return _F().mul(other, self)

    def __truediv__(self, other):
        return _F().div(self, other)

    def __rtruediv__(self, other):
        return _F().div(other, self)

    def __neg__(self):
        return _F().neg(self)

    def __pow__(self, exponent):
        return _F().pow(self, exponent)

    def __rpow__(self, base):
        """base ** self for a positive number base, as exp(self · ln base): its gradient is
        gy · base ** self · ln base."""
        if isinstance(base, bool) or not isinstance(base, (int, float, np.integer, np.floating)):
            return NotImplemented
        if not base > 0:
            raise ValueError(f"base ** tensor needs a positive base (it is exp(tensor · ln base)), "
                             f"got {base!r}")
        return (self * math.log(base)).exp()

    # in place: x += y, x -= y, x *= y, x /= y. Under no_grad() (the optimiser step written by
    # hand) a leaf's data changes in place, as an array's would, and a tensor made by a recorded
    # op is refused (its graph's backward may need its values). While gradients are recorded the
    # result is a new tensor, as ``x = x + y`` would give (accumulating a loss): a tensor's data may
    # be saved for the backward of an op that used it, and a wrapped array belongs to its caller;
    # on a leaf that requires grad it is refused (the update was meant for no_grad())
    def __iadd__(self, other):
        return self._in_place("add", "+", other, Tensor.__add__)

    def __isub__(self, other):
        return self._in_place("subtract", "-", other, Tensor.__sub__)

    def __imul__(self, other):
        return self._in_place("multiply", "*", other, Tensor.__mul__)

    def __itruediv__(self, other):
        return self._in_place("true_divide", "/", other, Tensor.__truediv__)

    def _in_place(self, ufunc, symbol, other, out_of_place):
        if _Config.enable_backprop:
            if self.requires_grad and self.is_leaf:
                raise RuntimeError(
                    f"{self._node.describe()} {symbol}= ... on a leaf that requires grad while "
                    f"gradients are recorded: put a parameter update under `with mf.no_grad():` "
                    f"(or change .data)")
            return out_of_place(self, other)
        if not self.is_leaf:
            raise RuntimeError(f"{self._node.describe()} {symbol}= ... in place on a tensor made by a "
                               f"recorded op, whose backward may need its values: write "
                               f"t = t {symbol} value")
        value = _scalar_or_array(other, self.dtype)
        xp = get_array_module(self.data, value)  # one clear error when NumPy and CuPy meet
        if not getattr(self.data.flags, "writeable", True):
            raise ValueError(f"t {symbol}= value: t's data is read-only (a broadcast view, or an "
                             f"array marked so): use t = t {symbol} value for a new tensor")
        try:
            getattr(xp, ufunc)(self.data, value, out=self.data, casting="same_kind")
        except (TypeError, ValueError) as error:  # NumPy's casting and broadcasting errors
            value_shape = tuple(getattr(value, "shape", ()))
            kind = TypeError if isinstance(error, TypeError) else ValueError
            raise kind(f"t {symbol}= value changes t in place, so the result must keep t's shape "
                       f"{self.shape} and dtype {self.dtype}; the value has shape {value_shape}, "
                       f"dtype {getattr(value, 'dtype', type(value).__name__)}: use "
                       f"t = t {symbol} value for a new tensor") from None
        return self

    def __matmul__(self, other):
        return _F().matmul(self, other)

    def __rmatmul__(self, other):
        return _F().matmul(other, self)

    def __getitem__(self, index):
        return _F().getitem(self, index)

    def __setitem__(self, index, value):
        """t[index] = value, in t's data, on a leaf under no_grad() (``p[0] = 0``, and what
        ``t[1:3] += 1`` ends with). Item assignment is not an op of the graph: while gradients are
        recorded it is refused (an op may have saved t's values for its backward, and a value that
        requires grad would lose its gradient), and so is a tensor made by a recorded op."""
        if not self.is_leaf:
            raise RuntimeError(f"t[...] = value on {self._node.describe()}, made by a recorded op "
                               f"whose backward may need its values: build a new tensor "
                               f"(F.concat, a mask product)")
        if _Config.enable_backprop:
            raise RuntimeError(f"t[...] = value on {self._node.describe()} while gradients are "
                               f"recorded, which the graph would not see: do it under "
                               f"`with mf.no_grad():`, or build a new tensor (F.concat, a mask "
                               f"product)")
        value = _scalar_or_array(value, self.dtype)
        get_array_module(self.data, value)  # one clear error when NumPy and CuPy meet
        self.data[unwrap_index(index)] = value

    def exp(self):
        return _F().exp(self)

    def log(self):
        return _F().log(self)

    def relu(self):
        return _F().relu(self)

    def sum(self, axis=None, keepdims=False):
        return _F().sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _F().mean(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _F().reshape(self, shape)

    def transpose(self, *axes):
        """``t.transpose()``: the axes reversed; ``t.transpose(a, b)``: axes a and b swapped (as in
        PyTorch; on a matrix, ``t.transpose(0, 1)`` is its transpose); ``t.transpose(p)`` with a
        tuple, or with one axis per dimension of a tensor of three or more: the permutation ``p``
        (as NumPy's)."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            return _F().transpose(self, tuple(axes[0]))
        if len(axes) == 2:
            a, b = axes
            for axis in axes:
                if not is_whole_number(axis) or not -self.ndim <= axis < self.ndim:
                    raise ValueError(f"transpose({a!r}, {b!r}): axes of a {self.ndim}-D tensor "
                                     f"are integers from {-self.ndim} to {self.ndim - 1}")
            order = list(range(self.ndim))
            order[a], order[b] = order[b], order[a]
            return _F().transpose(self, tuple(order))
        return _F().transpose(self, axes or None)

    def permute(self, *axes):
        """The axes in the order ``axes`` (one per dimension), as PyTorch's ``permute``."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _F().transpose(self, axes)

    @property
    def T(self):
        return _F().transpose(self, None)


def unwrap_index(index):
    """An index with its tensors (integer or boolean index arrays) as their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _scalar_or_array(value, dtype):
    """An in-place op's or an assignment's value: a tensor's array, an array, or a number that
    ``dtype`` can hold (NumPy numbers as Python ones, so they pass to a GPU array too)."""
    value = unwrap(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (int, float, bool)):
        check_number_fits(dtype, value)
    return value


def _F():
    # The engine does not import the ops at module load (functional imports the engine); this lazy
    # lookup is the only place the operators reach up into minifrrn.functional.
    from . import functional
    return functional


def tensor(data, requires_grad: bool = False, dtype=None, device: str | None = None) -> Tensor:
    """Make a leaf ``Tensor`` from an array, a nested list or a scalar.

    Python floats become float32 (the training dtype) unless ``dtype`` says otherwise; NumPy and CuPy
    arrays keep their dtype and device unless ``dtype``/``device`` are given. An array of the right
    dtype and device is wrapped, not copied: the tensor and the array share memory (an optimiser
    step on such a parameter changes the array too; pass ``array.copy()`` to keep it).
    """
    if isinstance(data, Tensor):
        data = data.data
    if not (isinstance(data, np.ndarray) or is_gpu_array(data)):
        data = np.asarray(data)
        if dtype is None and data.dtype == np.float64:
            data = data.astype(np.float32)
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if device is not None:
        data = to_device(data, device)
    return Tensor(data, requires_grad=requires_grad)


def unwrap(x):
    """The raw array of a ``Tensor``; anything else unchanged (for argument checks before an op)."""
    return x.data if isinstance(x, Tensor) else x


def is_whole_number(value) -> bool:
    """An int or a NumPy integer, not a bool: what a size, a count or a step may be."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def int_pair(value, what):
    """An int or a pair of ints (a kernel size, a stride, a padding) as a pair of ints, or a
    one-line error naming ``what`` ("conv2d: stride"): 2.9 is refused, never rounded down."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{what} must be an int or a pair, got {value!r}")
        first, second = value
    else:
        first = second = value
    if not (is_whole_number(first) and is_whole_number(second)):
        raise TypeError(f"{what} must be integers, got {value!r}")
    return int(first), int(second)


def check_positive_number(value, what):
    """A finite real number > 0, or a one-line ValueError naming ``what``."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not real or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive finite number, got {value!r}")


def check_number_fits(dtype, number, what="number"):
    """Refuse a Python number that an integer (or bool) ``dtype`` cannot hold exactly (2.5, 300 for
    uint8): ops keep a tensor's dtype, and would otherwise truncate it silently."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biu":
        return
    try:
        fits = np.asarray(number, dtype=dtype).item() == number
    except OverflowError:
        fits = False
    if not fits:
        raise TypeError(f"a {dtype} tensor and the {what} {number!r}, which {dtype} cannot hold: "
                        f"make the tensor floating (or wider) first, e.g. "
                        f"mf.tensor(t.data.astype(np.float32))")


def as_tensor(x, like=None) -> Tensor:
    """Return ``x`` if it is a ``Tensor``; wrap arrays; turn Python scalars into constants of ``like``'s
    dtype and device (so ``x * 2`` keeps ``x``'s dtype)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (int, float, bool, np.integer, np.floating, np.bool_)) and like is not None:
        check_number_fits(like.dtype, x)
        return Tensor(get_array_module(like.data).asarray(x, dtype=like.dtype))
    if isinstance(x, (np.ndarray, np.generic)) or is_gpu_array(x):
        return Tensor(x if not isinstance(x, np.generic) else np.asarray(x))
    return Tensor(np.asarray(x))


class Function:
    """One differentiable operation.

    Subclasses implement ``forward(*arrays)`` and ``backward(*grads)`` on raw arrays (NumPy or CuPy,
    found with the ``xp`` idiom). ``forward`` returns an array or a tuple of arrays; ``backward`` gets
    one upstream gradient per output and returns one gradient per input (a tuple, or a single array
    for one input); ``None`` is allowed for inputs that do not need a gradient
    (``self.needs_input_grad[i]`` is False). Whatever backward needs is stored on ``self`` during
    forward (or with ``save_for_backward``), and nothing else: the engine does not keep the inputs'
    data alive.

    Set ``broadcasts = True`` in subclasses whose inputs broadcast (``x + b``): the engine then undoes
    broadcasting on the gradients. Any other shape mismatch in a gradient is an error.
    """

    broadcasts = False

    def __call__(self, *inputs):
        if "_called" in self.__dict__:
            # a Function holds one call's inputs and saved arrays: a second call would overwrite
            # them, and the graph would silently lose the first call's gradients
            raise RuntimeError(f"this {type(self).__name__} was already called: a Function object "
                               f"is used once; make a new one for each call "
                               f"({type(self).__name__}(...)(x))")
        like = next((x for x in inputs if isinstance(x, Tensor)), None)
        tensors = [as_tensor(x, like) for x in inputs]
        arrays = [t.data for t in tensors]
        get_array_module(*arrays)  # one clear error when NumPy and CuPy arrays meet
        record = _Config.enable_backprop and any(t.requires_grad for t in tensors)
        # known before forward, so forward can skip saving what no gradient will need
        self.needs_input_grad = tuple(record and t.requires_grad for t in tensors)
        outputs = self.forward(*arrays)
        single = not isinstance(outputs, tuple)
        if single:
            outputs = (outputs,)
        results = tuple(Tensor(y, requires_grad=record) for y in outputs)
        if record:
            self.generation = max(t._node.generation for t in tensors)
            self.inputs = tuple(t._node for t in tensors)
            self.outputs = tuple(weakref.ref(r._node) for r in results)
            self.output_meta = tuple((y.shape, y.dtype) for y in outputs)
            for r in results:
                r._node.creator = self
                r._node.generation = self.generation + 1
        else:
            self.release()
        self._called = True
        return results[0] if single else results

    def save_for_backward(self, *arrays):
        self.saved = arrays

    def release(self):
        """Drop what was saved for backward (called when no graph is recorded)."""
        self.__dict__.clear()

    def forward(self, *arrays):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *grads):  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__}>"

    def __lt__(self, other):  # heap tie-break never compares functions, but be safe
        return id(self) < id(other)


def _check_gradient(gradient, node: _Node, what: str):
    """The engine-level check: a gradient has its tensor's shape, dtype and device."""
    if gradient.shape != node.shape:
        raise RuntimeError(f"{what} has shape {tuple(gradient.shape)} but its tensor "
                           f"({node.describe()}) has shape {tuple(node.shape)}")
    if gradient.dtype != node.dtype:
        raise RuntimeError(f"{what} has dtype {gradient.dtype} but its tensor ({node.describe()}) "
                           f"has dtype {node.dtype}")
    if is_gpu_array(gradient) != node.on_gpu:
        raise RuntimeError(f"{what} is on the {'gpu' if is_gpu_array(gradient) else 'cpu'} but its "
                           f"tensor is on the {'gpu' if node.on_gpu else 'cpu'}")


def _accumulate(store: dict, node: _Node, gradient):
    previous = store.get(node)
    store[node] = gradient if previous is None else previous + gradient


def _run_backward(root: _Node, root_grad):
    pending = {root: root_grad}          # gradients not yet handed to their creator, by node
    heap: list = []                      # (-generation, tie, function): highest generation first
    queued = set()
    tie = itertools.count()

    if root.creator is None:
        root.grad = _array(root_grad).copy() if root.grad is None else _array(root.grad + root_grad)
        return
    heapq.heappush(heap, (-root.creator.generation, next(tie), root.creator))
    queued.add(root.creator)
    while heap:
        _, _, f = heapq.heappop(heap)
        upstream = []
        for ref, (shape, dtype) in zip(f.outputs, f.output_meta):
            node = ref()
            gradient = pending.pop(node, None) if node is not None else None
            if gradient is not None and node.retains_grad:
                # a copy: the array flows on, and may be the caller's or another tensor's too
                total = gradient.copy() if node.grad is None else node.grad + gradient
                node.grad = _array(total)
            if gradient is None:
                like = next(iter(pending.values()), root_grad)
                xp = get_array_module(like)
                gradient = xp.zeros(shape, dtype=dtype)
            upstream.append(gradient)
        input_grads = f.backward(*upstream)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(f.inputs):
            raise RuntimeError(f"{type(f).__name__}.backward returned {len(input_grads)} gradients "
                               f"for {len(f.inputs)} inputs")
        for i, (node, gradient) in enumerate(zip(f.inputs, input_grads)):
            if not node.requires_grad:
                continue
            if gradient is None:
                why = ("requires_grad was turned on after the op ran, which chose its gradients "
                       "then: run the op again" if not f.needs_input_grad[i] else
                       "its backward must return one for every input in needs_input_grad")
                raise RuntimeError(f"{type(f).__name__}.backward returned no gradient for input {i} "
                                   f"({node.describe()}), which requires one: {why}")
            if f.broadcasts and gradient.shape != node.shape:
                gradient = sum_to(gradient, node.shape)
            _check_gradient(gradient, node, f"gradient returned by {type(f).__name__}.backward "
                                            f"for input {i}")
            _accumulate(pending, node, gradient)
            if node.creator is not None and node.creator not in queued:
                queued.add(node.creator)
                heapq.heappush(heap, (-node.creator.generation, next(tie), node.creator))
    # every function that could add to a leaf has run: its gradient is complete. A backward may
    # hand one array to several inputs (an addition passes gy to both) or pass the caller's
    # upstream gradient straight through: each leaf gets a gradient of its own, so that changing
    # one in place (an optimiser's clipping, say) never changes another or the caller's array
    handed = {id(_base(root_grad))}
    for node, gradient in pending.items():
        if node.creator is None:
            if node.grad is not None:
                node.grad = _array(node.grad + gradient)
                continue
            if id(_base(gradient)) in handed:
                gradient = gradient.copy()
            handed.add(id(_base(gradient)))
            node.grad = _array(gradient)


def _array(gradient):
    """An array, where NumPy's arithmetic on 0-d arrays returns a scalar (which cannot be
    changed in place, as a gradient may be)."""
    return np.asarray(gradient) if isinstance(gradient, np.generic) else gradient


def _base(array):
    """The array that owns ``array``'s memory (itself, or the array it is a view of)."""
    while getattr(array, "base", None) is not None:
        array = array.base
    return array


class _Recompute(Function):
    """Gradient checkpointing: run ``fn`` without recording, and run it again in backward.

    forward: out = fn(*inputs), keeping only the inputs (no intermediate activations).
    backward: re-run fn on the saved inputs with recording on, backpropagate gy through that fresh
    graph, and return the gradients of the inputs and of fn's parameters. Buffers (batch-norm running
    statistics) are restored after the re-run, so the statistics are updated once per step, as without
    checkpointing.
    """

    def __init__(self, fn, params, buffers):
        self.fn, self.params, self.buffers = fn, params, buffers

    def forward(self, *arrays):
        n = len(arrays) - len(self.params)
        self.arrays = arrays[:n]
        with no_grad():
            out = self.fn(*(Tensor(a) for a in self.arrays))
        self.multiple = isinstance(out, tuple)
        outs = out if self.multiple else (out,)
        return tuple(o.data for o in outs) if self.multiple else outs[0].data

    def backward(self, *grads):
        snapshot = [(b, b.data.copy()) for b in self.buffers]
        saved_grads = [p.grad for p in self.params]
        for p in self.params:
            p.zero_grad()
        inputs = [Tensor(a, requires_grad=need and a.dtype.kind == "f")
                  for a, need in zip(self.arrays, self.needs_input_grad)]
        with enable_grad():
            out = self.fn(*inputs)
        outs = out if self.multiple else (out,)
        for o, g in zip(outs, grads):
            if o.requires_grad:
                o.backward(g)
        for b, data in snapshot:
            b.data[...] = data
        # an input fn did not use gets zeros, as it would from the engine without recompute's
        # wrapper in between (it needs a gradient: it requires one)
        input_grads = [None if not t.requires_grad else t.grad if t.grad is not None
                       else get_array_module(t.data).zeros_like(t.data) for t in inputs]
        param_grads = []
        for p, previous in zip(self.params, saved_grads):
            g = p.grad
            if g is None:
                g = get_array_module(p.data).zeros_like(p.data)
            param_grads.append(g)
            p._node.grad = previous  # the engine adds the returned gradient on top
        return tuple(input_grads) + tuple(param_grads)


def recompute(fn, *inputs):
    """``fn(*inputs)`` with gradient checkpointing: activations inside ``fn`` are not stored but
    recomputed during backward, trading one extra forward of ``fn`` for memory.

    ``fn`` is a module (anything with ``parameters()``; its ``buffers()`` are restored after the
    re-run, so batch-norm statistics move once) or a plain function of tensors. The result equals
    ``fn(*inputs)``'s, and the gradients equal its gradients up to rounding (a gradient's
    contributions may be added in another order: FRRN A's gradients differ by about 1e-6 relative
    in float32, and Adam's steps carry that on), on three conditions:

    * parameters are found through ``fn`` only: a plain function (a lambda) that calls a module
      hides the module's parameters, which then get no gradient, and its buffers, which then move
      twice; pass the module itself;
    * ``fn`` computes the same thing when it runs again (no randomness of its own);
    * tensors and arrays among ``inputs`` are the differentiable inputs; anything else (an int, a
      slice, None) is passed to ``fn`` as it is, on both runs.
    """
    params = list(fn.parameters()) if hasattr(fn, "parameters") else []
    buffers = list(fn.buffers()) if hasattr(fn, "buffers") else []
    if not is_grad_enabled():
        return fn(*inputs)
    at = [i for i, a in enumerate(inputs)
          if isinstance(a, (Tensor, np.ndarray)) or is_gpu_array(a)]
    def with_constants(*tensors):  # constants go to fn by closure, not through the graph
        arguments = list(inputs)
        for i, t in zip(at, tensors):
            arguments[i] = t
        return fn(*arguments)

    run = fn if len(at) == len(inputs) else with_constants
    return _Recompute(run, params, buffers)(*(inputs[i] for i in at), *params)
