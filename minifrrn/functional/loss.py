"""Log-softmax and the (bootstrapped) cross-entropy losses.

Notation: logits f (N, K, H, W) with K classes, target t (N, H, W) integer class ids, ``ignore_index``
(255: void) marks pixels without a label. Per pixel the loss is

    ℓ_j = −log softmax(f_j)[t_j] = logsumexp(f_j) − f_j[t_j]

computed stably by subtracting the per-pixel maximum first (logits of magnitude 1e4 are fine).

* ``cross_entropy``: the mean of ℓ_j over the V non-void pixels of the batch.
* ``bootstrapped_cross_entropy`` (FRRN): per image, the mean of the K largest ℓ_j among its non-void
  pixels (void is excluded *before* selecting; all of them when fewer than K are valid), then the mean
  over the batch's N images (an image with no valid pixel adds 0 and still counts in N).
  K = max(1, ⌊H·W/16⌋) by default.

Both are "weighted pixel losses" L = Σ_j w_j ℓ_j with w_j = 1/V (plain) or 1/(N·K_n) on the selected
pixels of image n and 0 elsewhere (bootstrapped). Their gradient with respect to the logits is

    gf_j = gy · w_j · (softmax(f_j) − onehot(t_j))

so gradients flow only through the pixels that count. No gradient goes to the target.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, unwrap
from ..backend import get_array_module
from ..kernels import executor_for
from ..kernels import ops as gpu

__all__ = ["log_softmax", "cross_entropy", "bootstrapped_cross_entropy", "pixel_losses"]


def _log_softmax(x, axis):
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    """y = x − logsumexp(x) along ``axis``;  returns gx = gy − softmax(x)·Σ_axis gy."""

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        self.y = _log_softmax(x, self.axis)
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.axis, keepdims=True)


def log_softmax(x, axis=1):
    """Numerically stable log-softmax along ``axis`` (the class axis, 1 for (N, K, H, W))."""
    xd = unwrap(x)
    if xd.dtype not in (np.float32, np.float64):
        raise TypeError(f"log_softmax: x must be float32 or float64, got {xd.dtype}")
    return LogSoftmax(axis)(x)


def pixel_losses(logits, target, ignore_index=255):
    """Per-pixel losses ℓ (N, H, W) as an array (no graph), with 0 at void pixels, and the valid mask.

    Also returns the log-probabilities, which the loss functions reuse for their gradient.
    """
    xp = get_array_module(logits)
    logp = _log_softmax(logits, 1)
    valid = target != ignore_index
    safe_target = xp.where(valid, target, 0).astype(np.int64)
    picked = xp.take_along_axis(logp, safe_target[:, None], axis=1)[:, 0]
    losses = xp.where(valid, -picked, logits.dtype.type(0))
    return losses, valid, logp, safe_target


class WeightedPixelCrossEntropy(Function):
    """L = Σ_j w_j ℓ_j with w chosen from the forward's losses (see the module docstring);
    returns gf = gy · w · (softmax(f) − onehot(t)) for the logits and nothing for the target."""

    def __init__(self, ignore_index, k, bootstrapped):
        self.ignore_index, self.k, self.bootstrapped = ignore_index, k, bootstrapped

    def forward(self, logits, target):
        xp = get_array_module(logits, target)
        self.ex = executor_for(logits)
        if self.ex is not None:  # the GPU path: one fused kernel per pixel, softmax recomputed later
            losses = gpu.softmax_nll_forward(xp, self.ex, logits, target, self.ignore_index)
            valid = target != self.ignore_index
            logp, safe_target = None, target
        else:
            losses, valid, logp, safe_target = pixel_losses(logits, target, self.ignore_index)
        N, K, H, W = logits.shape
        dtype = logits.dtype
        weights = xp.zeros((N, H * W), dtype=dtype)
        if self.bootstrapped:
            k = self.k if self.k is not None else (H * W) // 16
            k = max(int(k), 1)
            flat = losses.reshape(N, H * W)
            flat_valid = valid.reshape(N, H * W)
            valid_counts = flat_valid.sum(axis=1)
            # void pixels get −inf so they are never among the K largest
            ranked = xp.where(flat_valid, flat, dtype.type(-np.inf))
            for n in range(N):
                count = int(valid_counts[n])
                if count == 0:
                    continue
                kn = min(k, count)
                chosen = xp.argpartition(ranked[n], H * W - kn)[H * W - kn:]
                weights[n, chosen] = dtype.type(1.0 / (kn * N))
        else:
            total = int(valid.sum())
            if total:
                weights[...] = valid.reshape(N, H * W) * dtype.type(1.0 / total)
        weights = weights.reshape(N, H, W)
        self.weights = weights if self.needs_input_grad[0] else None
        self.logp = logp if self.needs_input_grad[0] else None
        self.logits = logits if self.ex is not None and self.needs_input_grad[0] else None
        self.target = safe_target
        return (losses * weights).sum(dtype=dtype).reshape(())

    def backward(self, gy):
        xp = get_array_module(gy)
        if self.ex is not None:
            return gpu.softmax_nll_backward(xp, self.ex, self.logits, self.target, self.weights,
                                            float(gy)), None
        grad = xp.exp(self.logp)  # softmax
        N, K, H, W = grad.shape
        onehot_index = self.target[:, None]
        picked = xp.take_along_axis(grad, onehot_index, axis=1) - grad.dtype.type(1)
        xp.put_along_axis(grad, onehot_index, picked, axis=1)
        grad *= (gy * self.weights)[:, None]
        return grad, None


def _check(name, logits, target, ignore_index):
    f, t = unwrap(logits), unwrap(target)
    if f.ndim != 4:
        raise ValueError(f"{name}: logits must be 4-D (N, K, H, W), got shape {tuple(f.shape)}")
    if f.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: logits must be float32 or float64, got {f.dtype}")
    if t.ndim != 3 or tuple(t.shape) != (f.shape[0],) + tuple(f.shape[2:]):
        raise ValueError(f"{name}: target must have shape (N, H, W) = "
                         f"{(f.shape[0],) + tuple(f.shape[2:])}, got {tuple(t.shape)}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: target must hold integer class ids, got dtype {t.dtype}")
    xp = get_array_module(t)
    bad = (t != ignore_index) & ((t < 0) | (t >= f.shape[1]))
    if bool(xp.any(bad)):
        value = int(t[bad].ravel()[0])
        raise ValueError(f"{name}: target holds {value}, outside 0..{f.shape[1] - 1} and not the "
                         f"ignore_index {ignore_index}")


def cross_entropy(logits, target, ignore_index=255):
    """Mean over non-void pixels of −log softmax(logits)[target] (0 when no pixel is valid)."""
    _check("cross_entropy", logits, target, ignore_index)
    return WeightedPixelCrossEntropy(ignore_index, None, False)(logits, unwrap(target))


def bootstrapped_cross_entropy(logits, target, k=None, ignore_index=255):
    """FRRN's bootstrapped cross-entropy: per image the mean of the K largest non-void pixel losses
    (K = max(1, ⌊H·W/16⌋) by default), then the mean over the N images. Gradient only through the
    selected pixels."""
    _check("bootstrapped_cross_entropy", logits, target, ignore_index)
    if k is not None and (not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"bootstrapped_cross_entropy: k must be a positive integer, got {k!r}")
    return WeightedPixelCrossEntropy(ignore_index, k, True)(logits, unwrap(target))
