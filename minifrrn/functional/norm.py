"""Batch normalisation over (N, H, W), per channel.

Notation: x (N, C, H, W), M = N·H·W values per channel, γ (gamma) and β (beta) of shape (C,).

Training mode (batch statistics):
    μ = (1/M) Σ x,  σ² = (1/M) Σ (x − μ)²,  x̂ = (x − μ) / √(σ² + ε),  y = γ·x̂ + β
    running_mean ← (1 − m)·running_mean + m·μ
    running_var  ← (1 − m)·running_var  + m·σ²·M/(M − 1)      (unbiased, as PyTorch)
  gradients (closed form, through μ and σ² as well):
    gβ = Σ gy,  gγ = Σ gy·x̂,  gx = γ/(M·√(σ² + ε)) · (M·gy − gβ − x̂·gγ)

Evaluation mode (running statistics, an affine map):
    x̂ = (x − running_mean)/√(running_var + ε),  y = γ·x̂ + β
    gx = gy·γ/√(running_var + ε),  gγ = Σ gy·x̂,  gβ = Σ gy

Fused ReLU (``relu=True``, the BN → ReLU of every CBR block):
    y = max(γ·x̂ + β, 0);  the gradients above with gy replaced by gy·[γ·x̂ + β > 0]
  One pass over memory instead of three (BN's output, then the ReLU reading it and writing its own),
  and the same in backward; no separate ReLU mask is stored.
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor, unwrap
from ..backend import get_array_module
from ..kernels import executor_for
from ..kernels import ops as gpu
from . import cpu_parallel as par

__all__ = ["batch_norm", "BatchNormFunction"]


def _per_channel(v):
    return v.reshape(1, -1, 1, 1)


# blocks of channels for an activation that runs on one thread (below par.MIN_PARALLEL_ELEMENTS)
# but whose input and output together overflow a core's 2 MiB L2: a block's input, output and a
# temporary then fit it together for the five to ten passes each block takes. Measured fwd+bwd of
# batch norm + ReLU against one 2 MiB block, interleaved: 384 channels at 32x64 (3 MB) 0.84-0.86 of
# the time, 192 at 32x64 0.90, the synthetic main job's 8x24x32x64 0.91-0.92; at 0.75 MB, where
# input and output fit the L2 whole, 1.02 (more blocks, more calls), so such activations stay whole;
# threaded activations keep par.CACHE_BLOCK_BYTES (0.5 MiB blocks there: 1.06 at 25 MB, 1.30 at
# 4 MB)
INLINE_BLOCK_BYTES = 1 << 19


def _channel_sums(a, b=None):
    """Σ over (N, H, W) of ``a`` (of ``a·b`` when ``b`` is given), per channel: each image's plane
    summed on its own, then the images added in order. Its rounding then depends on the channel's
    values alone, never on how many channels share its block (the blocks change with the number of
    threads): NumPy's sum over axes (0, 2, 3) of a one-channel block pairs the N·H·W values
    differently from the same channel's inside a wider block, so results differed in the last bit
    between 2 and 3 threads."""
    per_image = a.sum(axis=(2, 3)) if b is None else np.einsum("nchw,nchw->nc", a, b)
    total = per_image[0].copy()
    for image_sums in per_image[1:]:
        total += image_sums
    return total


def _block_bytes(x):
    """The block size for ``par.over_channels``: ``INLINE_BLOCK_BYTES`` for an activation that runs
    on one thread and, with its output, overflows a core's L2; the default otherwise."""
    on_one_thread = x.size < par.MIN_PARALLEL_ELEMENTS
    return INLINE_BLOCK_BYTES if on_one_thread and 2 * x.nbytes > par.CACHE_BLOCK_BYTES else None


class BatchNormFunction(Function):
    """y = γ·x̂ + β with batch (training) or running (eval) statistics, optionally followed by a
    ReLU (``relu=True``: y = max(γ·x̂ + β, 0)); returns (gx, gγ, gβ)."""

    def __init__(self, running_mean, running_var, training, momentum, eps, relu=False):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps, self.relu = training, momentum, eps, relu

    def forward(self, x, gamma, beta):
        xp = get_array_module(x, gamma, beta)
        N, C, H, W = x.shape
        M = N * H * W
        self.ex = executor_for(x, gamma)
        running_updated = False
        if self.ex is None and xp is np:
            y, mean, var = self._forward_numpy(x, gamma, beta)
        else:  # the GPU path (kernels): keep x, backward recomputes x̂ in its kernels
            if self.training:  # two passes, the second centred: σ² without cancellation
                mean = gpu.channel_sums(xp, self.ex, x, scale=1 / M)
                # the kernel updates running arrays of x's dtype itself; others are updated below
                running_updated = self.running_mean is not None and all(
                    r.dtype == x.dtype and r.flags.c_contiguous
                    for r in (self.running_mean, self.running_var))
                var, invstd = gpu.batch_norm_statistics(
                    xp, self.ex, x, mean, self.eps, self.momentum,
                    *((self.running_mean, self.running_var) if running_updated else ()))
            else:
                mean = self.running_mean.astype(x.dtype)
                var = self.running_var.astype(x.dtype)
                invstd = (1.0 / xp.sqrt(var + x.dtype.type(self.eps))).astype(x.dtype, copy=False)
            self.x, self.mean, self.invstd, self.gamma = x, mean, invstd, gamma
            y = gpu.batch_norm_forward(xp, self.ex, x, mean, invstd, gamma, beta, self.relu)
            # with the ReLU keep the output: its positive entries are where the ReLU passes gy
            self.y = y if self.relu else None
        if self.training and self.running_mean is not None and not running_updated:
            m = self.momentum
            self.running_mean *= 1 - m
            self.running_mean += m * mean.astype(self.running_mean.dtype)
            self.running_var *= 1 - m
            self.running_var += (m * var * (M / max(M - 1, 1))).astype(self.running_var.dtype)
        self.M = M
        self.running_mean = self.running_var = None  # not needed for backward
        return y

    def _forward_numpy(self, x, gamma, beta):
        """The same formulas per cache-sized block of channels, on several threads: the block of x
        is read from memory once, every later pass (centre, square, scale, shift, ReLU) works in the
        cache, and y is written once. Only x is kept for backward (not x̂): backward centres x again in
        the cache, where storing x̂ here would cost one more pass over memory."""
        N, C, H, W = x.shape
        dtype = x.dtype.type
        y = np.empty_like(x)
        if self.training:
            mean, var = np.empty(C, x.dtype), np.empty(C, x.dtype)
        else:
            mean, var = self.running_mean.astype(x.dtype), self.running_var.astype(x.dtype)
        invstd = np.empty(C, x.dtype)
        M = N * H * W

        def normalise_channels(c0, c1):
            xb, yb = x[:, c0:c1], y[:, c0:c1]
            if self.training:
                mean[c0:c1] = _channel_sums(xb) / M
            np.subtract(xb, _per_channel(mean[c0:c1]), out=yb)                # centred
            if self.training:
                var[c0:c1] = _channel_sums(yb, yb) / M
            invstd[c0:c1] = 1.0 / np.sqrt(var[c0:c1] + dtype(self.eps))
            yb *= _per_channel(invstd[c0:c1] * gamma[c0:c1])
            yb += _per_channel(beta[c0:c1])
            if self.relu:
                np.maximum(yb, dtype(0), out=yb)

        par.over_channels(normalise_channels, x, block_bytes=_block_bytes(x))
        self.x, self.mean, self.invstd, self.gamma, self.beta = x, mean, invstd, gamma, beta
        return y, mean, var

    def backward(self, gy):
        xp = get_array_module(gy)
        if self.ex is None and xp is np:
            return self._backward_numpy(gy)
        return gpu.batch_norm_backward(xp, self.ex, self.x, gy, self.mean, self.invstd, self.gamma,
                                       self.training, y=self.y)

    def _backward_numpy(self, gy):
        """The closed-form gradients per cache-sized block of channels, on several threads, from x
        centred in the cache (x̂ = (x − μ)/σ is folded into the per-channel factors). With the ReLU,
        its mask is recomputed with the forward's very operations, so it is the forward's to the
        last bit."""
        C = gy.shape[1]
        M, x, mean, invstd = self.M, self.x, self.mean, self.invstd
        gx = np.empty_like(gy)
        gbeta, ggamma = np.empty(C, gy.dtype), np.empty(C, gy.dtype)
        scale = self.gamma * invstd

        def gradient_channels(c0, c1):
            gy_b, x_b, gx_b = gy[:, c0:c1], x[:, c0:c1], gx[:, c0:c1]
            mean_b, scale_b = _per_channel(mean[c0:c1]), _per_channel(scale[c0:c1])
            centred = np.subtract(x_b, mean_b)
            if self.relu:  # the ReLU's gradient: gy where γ·x̂ + β > 0, else 0 (into gx)
                # (x − μ)·(γ/σ) rounded as the forward rounds it; then a + β > 0 exactly when
                # a > −β (a rounded sum has the sign of the exact one), which saves the addition
                np.multiply(centred, _per_channel(invstd[c0:c1] * self.gamma[c0:c1]), out=gx_b)
                passes = np.greater(gx_b, _per_channel(-self.beta[c0:c1]))
                gy_b = np.multiply(gy_b, passes, out=gx_b)
            gbeta[c0:c1] = _channel_sums(gy_b)
            # gγ = Σ gy·x̂ = (1/σ)·Σ gy·(x − μ): x̂ itself is never formed
            ggamma[c0:c1] = _channel_sums(gy_b, centred) * invstd[c0:c1]
            if self.training:
                # gx = γ/(M·√(σ²+ε)) · (M·gy − gβ − x̂·gγ) = scale · (gy − gβ/M − (x − μ)·gγ/(σ·M))
                centred *= _per_channel(-ggamma[c0:c1] * invstd[c0:c1] / M)
                np.add(gy_b, centred, out=gx_b)
                gx_b -= _per_channel(gbeta[c0:c1] / M)
                gx_b *= scale_b
            else:
                np.multiply(gy_b, scale_b, out=gx_b)

        par.over_channels(gradient_channels, gy, block_bytes=_block_bytes(gy))
        return gx, ggamma, gbeta


def batch_norm(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-4,
               relu=False):
    """Batch normalisation of x (N, C, H, W) with scale ``gamma`` and shift ``beta`` (C,); with
    ``relu=True`` the result goes through a ReLU in the same pass (``relu(batch_norm(...))``).

    ``running_mean``/``running_var`` are arrays (or buffer tensors) of shape (C,): updated in place
    in training mode, used instead of the batch statistics in eval mode. See the module docstring for
    the forward and the gradients (gx, gγ, gβ).
    """
    xd = unwrap(x)
    if xd.ndim != 4:
        raise ValueError(f"batch_norm: x must be 4-D (N, C, H, W), got shape {tuple(xd.shape)}")
    if xd.dtype not in (np.float32, np.float64):
        raise TypeError(f"batch_norm: x must be float32 or float64, got {xd.dtype}")
    C = xd.shape[1]
    for name, v in (("running_mean", running_mean), ("running_var", running_var)):
        # PyTorch's order is (x, running_mean, running_var, weight, bias): given so, every check
        # below passes and the parameters would be overwritten with running statistics
        if isinstance(v, Tensor) and v.requires_grad:
            raise TypeError(f"batch_norm: {name} requires grad, so it looks like gamma or beta: "
                            f"the order is batch_norm(x, gamma, beta, running_mean, running_var, "
                            f"training)")
    rm = unwrap(running_mean)
    rv = unwrap(running_var)
    for name, v in (("gamma", unwrap(gamma)), ("beta", unwrap(beta)),
                    ("running_mean", rm), ("running_var", rv)):
        if v is not None and tuple(v.shape) != (C,):
            raise ValueError(f"batch_norm: {name} must have shape ({C},) for x with {C} channels, "
                             f"got {tuple(v.shape)}")
    for name, v in (("gamma", unwrap(gamma)), ("beta", unwrap(beta))):
        if v.dtype != xd.dtype:
            raise TypeError(f"batch_norm: x is {xd.dtype} but {name} is {v.dtype}: cast one so "
                            f"they match")
    if not training and (rm is None or rv is None):
        raise ValueError("batch_norm: eval mode needs running_mean and running_var")
    if training and xd.shape[0] * xd.shape[2] * xd.shape[3] < 2:
        raise ValueError(f"batch_norm: training mode needs more than one value per channel, "
                         f"got x of shape {tuple(xd.shape)}")
    return BatchNormFunction(rm, rv, training, momentum, eps, relu)(x, gamma, beta)
