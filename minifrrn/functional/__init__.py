"""Every differentiable op of minifrrn, imported as ``F`` (``import minifrrn.functional as F``).

One module per family. Each op is a ``Function`` with a NumPy forward and backward whose docstring
states the forward formula and the gradient it returns.
"""
from .elementwise import add, sub, mul, div, neg, pow, exp, log, relu, sum, mean  # noqa: A004
from .shape import reshape, transpose, concat, getitem, matmul

__all__ = ["add", "sub", "mul", "div", "neg", "pow", "exp", "log", "relu", "sum", "mean",
           "reshape", "transpose", "concat", "getitem", "matmul"]
