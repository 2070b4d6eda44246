"""Every differentiable op of minifrrn, imported as ``F`` (``import minifrrn.functional as F``).

One module per family. Each op is a ``Function`` with a NumPy forward and backward whose docstring
states the forward formula and the gradient it returns.
"""
from .elementwise import add, sub, mul, div, neg, pow, cast, exp, log, relu, sum, mean  # noqa: A004
from .shape import reshape, transpose, concat, getitem, matmul
from .conv import conv2d
from .norm import batch_norm
from .pooling import max_pool2d
from .upsample import upsample_nearest2d, upsample_bilinear2x
from .loss import log_softmax, cross_entropy, bootstrapped_cross_entropy

__all__ = ["add", "sub", "mul", "div", "neg", "pow", "cast", "exp", "log", "relu", "sum", "mean",
           "reshape", "transpose", "concat", "getitem", "matmul", "conv2d", "batch_norm",
           "max_pool2d", "upsample_nearest2d", "upsample_bilinear2x", "log_softmax",
           "cross_entropy", "bootstrapped_cross_entropy"]
