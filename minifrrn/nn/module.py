"""``Module`` and ``Parameter``: containers for learnable state.

A module registers what it owns by attribute assignment: a ``Parameter`` (a tensor that requires a
gradient and is updated by optimisers), a sub-``Module``, or a *buffer* registered with
``register_buffer`` (state that is saved and moved with the module but never trained, such as batch
norm's running statistics). ``state_dict()`` holds parameters and buffers under dotted names.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from ..autograd import Tensor, unwrap
from ..backend import as_numpy, check_device, get_array_module

__all__ = ["Module", "Parameter"]


class Parameter(Tensor):
    """A leaf tensor that requires a gradient and belongs to a module."""

    def __init__(self, data, name=None):
        super().__init__(data, requires_grad=True, name=name)

    def __repr__(self):
        return f"Parameter(shape={tuple(self.shape)}, dtype={self.dtype}, device='{self.device}')"


def _like(t, value):
    """``value`` (an array, a tensor or a list) as an array of tensor ``t``'s dtype and device."""
    xp = get_array_module(t.data)
    value = unwrap(value)
    if xp is np:
        value = as_numpy(value)
    return xp.asarray(value).astype(t.dtype, copy=False)


# what load_state_dict returns, as PyTorch's: the keys the module has but the state lacked, and
# the keys the state has but the module lacks (both empty after a strict load)
IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDictKeyError(KeyError):
    """A state dict whose keys do not match the module's; printed as its message (a KeyError's
    str() would quote it)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def _checked_value(t, value, name):
    """A state dict entry as an array of parameter or buffer ``t``'s dtype and device, or a
    one-line error naming the entry: values that are not real numbers, and floats beyond ``t``'s
    range (1e300 into float32 would become inf), are refused rather than cast."""
    if not hasattr(value, "dtype"):  # a list or a number
        value = np.asarray(value)
    if value.dtype.kind not in "biuf":
        raise TypeError(f"state dict entry {name!r} holds {value.dtype} values; the model's are "
                        f"{t.dtype}: give real numbers")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below
        array = _like(t, value)
    if value.dtype.kind == "f" and t.dtype.kind == "f":
        finite_before = int(get_array_module(value).isfinite(value).sum())
        if int(get_array_module(array).isfinite(array).sum()) != finite_before:
            raise ValueError(f"state dict entry {name!r} holds values beyond the range of "
                             f"{t.dtype}, the model's dtype: they would become inf")
    return array


class Module:
    """Base class of every layer and model: call it to run ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        if (name in self._buffers and value is not None
                and not isinstance(value, (Module, Parameter))):
            # a new value for registered state (running statistics): it stays a buffer, of the
            # buffer's dtype and on its device
            self.register_buffer(name, _like(self._buffers[name], value))
            return
        if name in self._parameters and value is not None and not isinstance(value, Parameter):
            raise TypeError(f"cannot assign {type(value).__name__} to parameter {name!r}: assign an "
                            f"nn.Parameter, or change its values in place under "
                            f"`with mf.no_grad():` ({name} *= 0.5, {name}[...] = ...)")
        target = (self._parameters if isinstance(value, Parameter)
                  else self._modules if isinstance(value, Module) else None)
        for store in (self._parameters, self._buffers, self._modules):
            if store is not target:
                store.pop(name, None)
        if target is not None:
            # a name already there keeps its place (``conv.weight -= ...`` assigns the same
            # parameter back): optimiser state is saved and restored by position
            target[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        # a deleted parameter, buffer or sub-module leaves parameters() and state_dict() as well
        for store in (self._parameters, self._buffers, self._modules):
            store.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name, value):
        """Register non-trainable state (an array or tensor) saved in ``state_dict`` and moved by
        ``to``."""
        if name in self._parameters or name in self._modules:
            kind = "a parameter" if name in self._parameters else "a sub-module"
            raise KeyError(f"register_buffer: {name!r} is already {kind} of this "
                           f"{type(self).__name__}: choose another name (or del it first)")
        tensor = value if isinstance(value, Tensor) else Tensor(value)
        object.__setattr__(self, name, tensor)
        self._buffers[name] = tensor
        return tensor

    # --- traversal ---------------------------------------------------------------------------------
    def named_modules(self, prefix="", _seen=None):
        """Every module once (this one first), under the first dotted name it is reached by: a
        shared module is listed once, and a module that contains itself ends the walk there."""
        seen = set() if _seen is None else _seen
        if id(self) in seen:
            return
        seen.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            yield from module.named_modules(f"{prefix}.{name}" if prefix else name, seen)

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix=""):
        """Every parameter once, under the first name it is reached by: a module used twice (shared
        weights) contributes its parameters once, so an optimiser updates them once a step."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        """Every buffer once, under the first name it is reached by (as ``named_parameters``)."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if id(b) not in seen:
                    seen.add(id(b))
                    yield (f"{module_name}.{name}" if module_name else name), b

    def buffers(self):
        return [b for _, b in self.named_buffers()]

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    def num_buffer_values(self) -> int:
        return int(sum(b.size for b in self.buffers()))

    # --- modes, devices, gradients -----------------------------------------------------------------
    def train(self, mode: bool = True):
        """Training mode (batch norm uses and updates batch statistics). Returns self."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"train(mode): mode must be True or False, got {mode!r} (eval() is "
                            f"train(False))")
        mode = bool(mode)
        for _, module in self.named_modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        """Evaluation mode (batch norm uses its running statistics). Returns self."""
        return self.train(False)

    def to(self, device: str):
        """Move every parameter and buffer to ``"cpu"`` or ``"gpu"`` in place. Returns self."""
        check_device(device)
        for t in self.parameters() + self.buffers():
            t.to(device)
        return self

    @property
    def device(self) -> str:
        params = self.parameters()
        return params[0].device if params else "cpu"

    def astype(self, dtype):
        """Cast every floating parameter and buffer to ``dtype`` (float32 or float64: the ops'
        dtypes) in place. Returns self."""
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"astype: the ops run in float32 or float64, got {np.dtype(dtype)}")
        for t in self.parameters() + self.buffers():
            if t.dtype.kind == "f":
                t.data = t.data.astype(dtype)
                t._node.dtype = t.data.dtype
                t.zero_grad()
        return self

    def zero_grad(self):
        """Forget every parameter's accumulated gradient."""
        for p in self.parameters():
            p.zero_grad()

    # --- state -------------------------------------------------------------------------------------
    def state_dict(self):
        """Copies of every parameter and buffer, by dotted name (arrays on their device)."""
        state = OrderedDict()
        for name, t in list(self.named_parameters()) + list(self.named_buffers()):
            state[name] = t.data.copy()
        return state

    def load_state_dict(self, state, strict: bool = True):
        """Copy arrays from ``state`` into this module's parameters and buffers (on their device,
        in their dtype); returns ``(missing_keys, unexpected_keys)`` as PyTorch does.

        With ``strict`` (the default) a missing or unexpected key raises ``KeyError``; a shape
        that differs, or values that are not real numbers or do not fit the model's dtype, always
        raise. Each message names the key. Every entry is checked before any is copied, so a
        refused state leaves the module as it was.
        """
        if not (hasattr(state, "keys") and hasattr(state, "items")):
            raise TypeError(f"load_state_dict takes a mapping of names to arrays (what "
                            f"state_dict() returns), got {type(state).__name__}")
        own = OrderedDict(list(self.named_parameters()) + list(self.named_buffers()))
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and missing:
            raise StateDictKeyError(f"state dict is missing {len(missing)} key(s), first "
                                    f"{missing[0]!r}")
        if strict and unexpected:
            raise StateDictKeyError(f"state dict has {len(unexpected)} unexpected key(s), first "
                                    f"{unexpected[0]!r}")
        state = {name: unwrap(value) for name, value in state.items()}  # tensors as their arrays
        converted = {}
        for name, t in own.items():
            if name not in state:
                continue
            value = state[name]
            if tuple(np.shape(value)) != tuple(t.shape):
                raise ValueError(f"state dict entry {name!r} has shape {tuple(np.shape(value))}, the "
                                 f"model expects {tuple(t.shape)}")
            converted[name] = _checked_value(t, value, name)
        for name, array in converted.items():
            own[name].data[...] = array
        return IncompatibleKeys(missing, unexpected)

    # --- calling -----------------------------------------------------------------------------------
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        if len(lines) == 1:
            return lines[0] + ")"
        return "\n".join(lines) + "\n)"
