"""The layers FRRN is built from: Conv2d, BatchNorm2d, ReLU, MaxPool2d, Upsample, Sequential."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import is_whole_number
from .init import RELU_GAIN, he_uniform
from .module import Module, Parameter

__all__ = ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Upsample", "Sequential", "RELU_GAIN"]


def _check_counts(layer, **counts):
    """Every named size is an integer >= 1, or a one-line ValueError naming it."""
    for name, value in counts.items():
        if not is_whole_number(value) or value < 1:
            raise ValueError(f"{layer}: {name} must be an integer >= 1, got {value!r}")


class Conv2d(Module):
    """y = conv2d(x, W, b) with "same" padding (k−1)/2 by default; He-uniform weights, zero bias.

    ``gain`` is √2 where a ReLU follows (``RELU_GAIN``) and 1 otherwise.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=None, bias=False,
                 gain=1.0):
        super().__init__()
        _check_counts("Conv2d", in_channels=in_channels, out_channels=out_channels,
                      kernel_size=kernel_size, stride=stride)
        if padding is not None and (not is_whole_number(padding) or padding < 0):
            raise ValueError(f"Conv2d: padding must be an integer >= 0, got {padding!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.padding = (kernel_size - 1) // 2 if padding is None else padding
        self.weight = Parameter(he_uniform((out_channels, in_channels, kernel_size, kernel_size),
                                           gain))
        self.bias = Parameter(np.zeros(out_channels, np.float32)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, pad=self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
                f"{f', stride={self.stride}' if self.stride != 1 else ''}, padding={self.padding}"
                f"{', bias' if self.bias is not None else ''}")


class BatchNorm2d(Module):
    """Batch norm over (N, H, W): scale ``weight`` (γ, ones), shift ``bias`` (β, zeros), running
    statistics as buffers. Uses batch statistics in training mode, running ones in eval mode.

    ``relu=True`` fuses the ReLU that follows (``F.batch_norm(..., relu=True)``): the same result
    as ``Sequential(BatchNorm2d(c), ReLU())`` with the same parameters, in one pass over memory.
    """

    def __init__(self, num_features, eps=1e-4, momentum=0.1, relu=False):
        super().__init__()
        _check_counts("BatchNorm2d", num_features=num_features)
        if not eps > 0:
            raise ValueError(f"BatchNorm2d: eps must be positive, got {eps!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"BatchNorm2d: momentum must be in [0, 1], got {momentum!r}")
        self.num_features, self.eps, self.momentum, self.relu = num_features, eps, momentum, relu
        self.weight = Parameter(np.ones(num_features, np.float32))
        self.bias = Parameter(np.zeros(num_features, np.float32))
        self.register_buffer("running_mean", np.zeros(num_features, np.float32))
        self.register_buffer("running_var", np.ones(num_features, np.float32))

    def forward(self, x):
        return F.batch_norm(x, self.weight, self.bias, self.running_mean.data,
                            self.running_var.data, self.training, self.momentum, self.eps,
                            relu=self.relu)

    def extra_repr(self):
        return f"{self.num_features}{', relu=True' if self.relu else ''}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class MaxPool2d(Module):
    def __init__(self, kernel, stride=None):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        return F.max_pool2d(x, self.kernel, self.stride)

    def extra_repr(self):
        return f"{self.kernel}{f', stride={self.stride}' if self.stride is not None else ''}"


class Upsample(Module):
    """``mode="nearest"`` with an integer ``scale``, or ``mode="bilinear2x"`` (FRRN's ×2)."""

    def __init__(self, scale=2, mode="nearest"):
        super().__init__()
        if mode not in ("nearest", "bilinear2x"):
            raise ValueError(f"Upsample: mode must be 'nearest' or 'bilinear2x', got {mode!r}")
        if mode == "bilinear2x" and scale != 2:
            raise ValueError(f"Upsample: bilinear2x upsamples by 2, got scale {scale}")
        self.scale, self.mode = scale, mode

    def forward(self, x):
        if self.mode == "nearest":
            return F.upsample_nearest2d(x, self.scale)
        return F.upsample_bilinear2x(x)

    def extra_repr(self):
        return f"scale={self.scale}, mode={self.mode!r}"


class Sequential(Module):
    """Modules applied one after the other."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                # an attribute that is not a Module is not registered: forward would skip it
                raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, not a Module: wrap "
                                f"a function in a layer (e.g. nn.ReLU() for F.relu)")
            setattr(self, str(i), m)

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        """The i-th module; a slice gives a Sequential of those modules (the same objects, so
        their parameters are shared with this one)."""
        modules = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*modules[i])
        return modules[i]

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x
