"""Weight initialisation as in FRRN: He-uniform, U(±√3·gain/√fan_in), fan_in = C_in·KH·KW.

A module-level generator makes models reproducible: ``manual_seed(s)`` before building one.
"""
from __future__ import annotations

import math

import numpy as np

from ..seeding import WEIGHTS, stream

_generator = [stream(0, WEIGHTS)]

RELU_GAIN = math.sqrt(2.0)


def manual_seed(seed: int):
    """Reseed the generator every layer draws its initial weights from (the weights' own stream
    of ``seed``, apart from the streams the data draws from it: ``minifrrn.seeding``)."""
    _generator[0] = stream(seed, WEIGHTS)


def he_uniform(shape, gain=1.0, dtype=np.float32):
    """Weights for a conv of shape (OC, C, KH, KW): U(±√3·gain/√(C·KH·KW))."""
    fan_in = int(np.prod(shape[1:]))
    bound = math.sqrt(3.0) * gain / math.sqrt(fan_in)
    return _generator[0].uniform(-bound, bound, size=shape).astype(dtype)
