"""The building blocks of FRRN: CBR/CB, the residual unit (RU) and the full-resolution residual
unit (FRRU).

Notation: ``CBR(k, c)`` = conv k×k (no bias) → batch norm → ReLU; ``CB(k, c)`` = conv → batch norm.
In CBR the ReLU is fused into the batch norm (``BatchNorm2d(c, relu=True)``): the same function,
one pass over the activations instead of two, forward and backward.
"""
from __future__ import annotations

from .. import functional as F
from ..nn import RELU_GAIN, BatchNorm2d, Conv2d, Module, Sequential

__all__ = ["CBR", "CB", "ResidualUnit", "FRRU"]


def CBR(in_channels, out_channels, kernel_size):
    """conv k×k (no bias, gain √2 for the ReLU) → BN → ReLU, the last two fused."""
    return Sequential(Conv2d(in_channels, out_channels, kernel_size, gain=RELU_GAIN),
                      BatchNorm2d(out_channels, relu=True))


def CB(in_channels, out_channels, kernel_size):
    """conv k×k (no bias, gain 1) → BN."""
    return Sequential(Conv2d(in_channels, out_channels, kernel_size), BatchNorm2d(out_channels))


class ResidualUnit(Module):
    """RU(c):  out = shortcut(x) + CB(3, c)(CBR(3, c)(x)), no ReLU after the addition.

    The shortcut is the identity, or a bias-free 1×1 conv without BN when C_in ≠ c (projection).
    """

    def __init__(self, in_channels, channels):
        super().__init__()
        self.branch = Sequential(CBR(in_channels, channels, 3), CB(channels, channels, 3))
        self.projection = Conv2d(in_channels, channels, 1) if in_channels != channels else None

    def forward(self, x):
        shortcut = x if self.projection is None else self.projection(x)
        return shortcut + self.branch(x)


class FRRU(Module):
    """Full-resolution residual unit FRRU(s, c), coupling the pooling stream y (at 1/s) and the
    residual stream z (full resolution, ``z_channels`` channels)::

        p  = maxpool_{s×s, stride s}(z)              pooled straight from full resolution
        t  = concat[y, p]                            (channels; y first)
        y' = CBR(3, c)(CBR(3, c)(t))                 = G(y, z; W)
        r  = conv1×1(y' → z_channels), with bias     (no BN, no ReLU)
        z' = z + nearest_upsample_s(r)               = z + H(y, z; W)

    so ``z_n = z_{n−1} + H(y_{n−1}, z_{n−1})`` and ``y_n = G(y_{n−1}, z_{n−1})``. ``forward`` returns
    (y', z'); ``residual(y, z)`` returns H alone (for the equation tests and lessons).
    """

    def __init__(self, scale, channels, y_channels_in, z_channels=32):
        super().__init__()
        self.scale, self.channels = scale, channels
        self.y_channels_in, self.z_channels = y_channels_in, z_channels
        self.pooling_stream = Sequential(CBR(y_channels_in + z_channels, channels, 3),
                                         CBR(channels, channels, 3))
        self.to_residual = Conv2d(channels, z_channels, 1, bias=True)

    def pool(self, z):
        return F.max_pool2d(z, self.scale) if self.scale > 1 else z

    def upsample(self, r):
        return F.upsample_nearest2d(r, self.scale) if self.scale > 1 else r

    def forward(self, y, z):
        y_next = self.pooling_stream(F.concat([y, self.pool(z)], axis=1))
        z_next = z + self.upsample(self.to_residual(y_next))
        return y_next, z_next

    def residual(self, y, z):
        """H(y, z): what the unit adds to the residual stream."""
        y_next = self.pooling_stream(F.concat([y, self.pool(z)], axis=1))
        return self.upsample(self.to_residual(y_next))

    def extra_repr(self):
        return f"scale={self.scale}, channels={self.channels}, y_in={self.y_channels_in}"
