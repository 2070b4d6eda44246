"""Optimisers and learning-rate schedules.

Both optimisers update ``p.data`` in place on the parameters' own device (the ``xp`` idiom) and keep
their state (momentum, moments) as arrays beside the parameters. Parameters without a gradient are
skipped. ``state_dict()`` / ``load_state_dict()`` make training resumable exactly.

SGD with momentum μ:      v ← μ·v + g;   p ← p − lr·v           (Nesterov: p ← p − lr·(g + μ·v))
Adam (Kingma & Ba):       m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
                          m̂ = m/(1 − β1^t);  v̂ = v/(1 − β2^t);  p ← p − lr·m̂/(√v̂ + ε)
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import Tensor, check_positive_number, is_whole_number
from ..backend import as_numpy, device_of, get_array_module, to_device

__all__ = ["Optimizer", "SGD", "Adam", "StepLR", "PolyLR", "CosineLR"]


class Optimizer:
    def __init__(self, params, lr):
        owner = type(self).__name__
        if hasattr(params, "parameters") or callable(params):
            raise TypeError(f"{owner}: params must be an iterable of Parameters, got "
                            f"{type(params).__name__}: pass model.parameters()")
        # each parameter once, in order: one listed twice (a shared layer) would be updated twice
        self.params = list({id(p): p for p in params}.values())
        if not self.params:
            raise ValueError(f"{owner}: got an empty parameter list")
        stray = next((p for p in self.params if not isinstance(p, Tensor)), None)
        if stray is not None:
            raise TypeError(f"{owner}: params must be Parameters (model.parameters()), got a "
                            f"{type(stray).__name__}")
        check_positive_number(lr, f"{owner}: learning rate")
        self.lr = float(lr)
        self.steps = 0

    def zero_grad(self):
        for p in self.params:
            p.zero_grad()

    def step(self):
        self.steps += 1
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self._follow_parameter(i, p)
                self.update(i, p)

    def _follow_parameter(self, i, p):
        """Bring parameter i's state to its dtype and device, if the model was cast
        (``module.astype``) or moved (``module.to``) since the state was made: the in-place
        updates would otherwise round a float64 gradient into float32 moments, or mix devices."""
        device = device_of(p.data)
        for name in self._state_names:
            arrays = getattr(self, name)
            array = arrays[i]
            if array is not None and (array.dtype != p.dtype or device_of(array) != device):
                arrays[i] = to_device(array, device).astype(p.dtype, copy=False)

    def update(self, i, p):  # pragma: no cover - abstract
        raise NotImplementedError

    # state: arrays per parameter, plus scalars
    _state_names: tuple = ()

    def state_dict(self):
        """A snapshot: copies of the per-parameter arrays (which later steps update in place)."""
        state = {"lr": self.lr, "steps": self.steps}
        for name in self._state_names:
            for i, array in enumerate(getattr(self, name)):
                if array is not None:
                    state[f"{name}.{i}"] = np.array(as_numpy(array), copy=True)
        return state

    def load_state_dict(self, state):
        self.lr, self.steps = float(state["lr"]), int(state["steps"])
        for name in self._state_names:
            arrays = getattr(self, name)
            for i, p in enumerate(self.params):
                key = f"{name}.{i}"
                if key in state:
                    value = np.asarray(state[key])
                    if value.shape != p.shape:
                        raise ValueError(f"optimizer state {key} has shape {value.shape}, the "
                                         f"parameter has {p.shape}: the checkpoint is from another model")
                    arrays[i] = get_array_module(p.data).asarray(value).astype(p.dtype)
                else:
                    arrays[i] = None
        return self


class SGD(Optimizer):
    """Stochastic gradient descent with (optionally Nesterov) momentum."""

    _state_names = ("velocity",)

    def __init__(self, params, lr, momentum=0.9, nesterov=False):
        super().__init__(params, lr)
        self.momentum, self.nesterov = momentum, nesterov
        self.velocity = [None] * len(self.params)

    def update(self, i, p):
        g = p.grad
        if self.momentum:
            v = self.velocity[i]
            v = g.copy() if v is None else v * p.dtype.type(self.momentum) + g
            self.velocity[i] = v
            g = g + p.dtype.type(self.momentum) * v if self.nesterov else v
        p.data -= p.dtype.type(self.lr) * g


class Adam(Optimizer):
    """Adam with bias correction (β1 0.9, β2 0.999, ε 1e-8 as FRRN trains).

    The bias correction counts the optimiser's steps (``steps``), not each parameter's updates: a
    parameter that first gets a gradient at step t is corrected by 1/(1 − β1^t), not 1/(1 − β1).
    In training FRRN every parameter gets a gradient at every step, so the two agree."""

    _state_names = ("m", "v")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr)
        try:
            beta1, beta2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise ValueError(f"Adam: betas must be a pair of numbers (beta1, beta2), got "
                             f"{betas!r}") from None
        # β = 1 would divide by 1 − β^t = 0 in the bias correction; β = 0 is Adam without momentum
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= beta < 1:
                raise ValueError(f"Adam: {name} must be in [0, 1), got {beta!r}")
        if not (isinstance(eps, (int, float, np.integer, np.floating)) and 0 <= eps < math.inf):
            raise ValueError(f"Adam: eps must be a finite number >= 0, got {eps!r}")
        self.beta1, self.beta2 = beta1, beta2
        self.eps = eps
        self.m = [None] * len(self.params)
        self.v = [None] * len(self.params)

    def update(self, i, p):
        xp = get_array_module(p.data)
        g = p.grad
        t = p.dtype.type
        if self.m[i] is None:
            self.m[i] = xp.zeros_like(p.data)
            self.v[i] = xp.zeros_like(p.data)
        m, v = self.m[i], self.v[i]
        m *= t(self.beta1)
        m += t(1 - self.beta1) * g
        v *= t(self.beta2)
        v += t(1 - self.beta2) * (g * g)
        correction1 = 1 - self.beta1 ** self.steps
        correction2 = 1 - self.beta2 ** self.steps
        step_size = self.lr * math.sqrt(correction2) / correction1
        # p ← p − lr·m̂/(√v̂ + ε), rearranged so that the bias corrections are scalars
        p.data -= t(step_size) * m / (xp.sqrt(v) + t(self.eps * math.sqrt(correction2)))


class _Schedule:
    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.step_count = 0

    def step(self):
        """Advance one update and set the optimiser's learning rate for the next one."""
        self.step_count += 1
        self.optimizer.lr = self.lr_at(self.step_count)

    def state_dict(self):
        return {"base_lr": self.base_lr, "step_count": self.step_count}

    def load_state_dict(self, state):
        self.base_lr, self.step_count = float(state["base_lr"]), int(state["step_count"])
        self.optimizer.lr = self.lr_at(self.step_count)


def _check_total_steps(schedule, total_steps):
    if not is_whole_number(total_steps) or total_steps < 1:
        raise ValueError(f"{schedule}: total_steps must be an integer >= 1, got {total_steps!r}")


class StepLR(_Schedule):
    """lr = base · factor^(number of milestones passed). FRRN: 1e-3, then 1e-4 after 45,000."""

    def __init__(self, optimizer, milestones=(45_000,), factor=0.1):
        super().__init__(optimizer)
        if isinstance(milestones, (int, np.integer)):
            raise TypeError(f"StepLR: milestones must be a list of steps, got {milestones!r}: "
                            f"write ({milestones},)")
        self.milestones, self.factor = sorted(milestones), factor

    def lr_at(self, step):
        return self.base_lr * self.factor ** sum(step >= m for m in self.milestones)


class PolyLR(_Schedule):
    """lr = base · (1 − step/total)^power."""

    def __init__(self, optimizer, total_steps, power=0.9):
        super().__init__(optimizer)
        _check_total_steps("PolyLR", total_steps)
        self.total_steps, self.power = total_steps, power

    def lr_at(self, step):
        return self.base_lr * max(0.0, 1 - step / self.total_steps) ** self.power


class CosineLR(_Schedule):
    """lr = final + (base − final)·(1 + cos(π·step/total))/2."""

    def __init__(self, optimizer, total_steps, final_lr=0.0):
        super().__init__(optimizer)
        _check_total_steps("CosineLR", total_steps)
        self.total_steps, self.final_lr = total_steps, final_lr

    def lr_at(self, step):
        progress = min(step / self.total_steps, 1.0)
        return self.final_lr + (self.base_lr - self.final_lr) * 0.5 * (1 + math.cos(math.pi * progress))
