"""minifrrn: a from-scratch deep-learning framework that teaches and runs FRRN.

    import minifrrn as mf
    import minifrrn.functional as F

The layers, bottom up: ``backend`` (NumPy/CuPy), ``autograd`` (Tensor, Function), ``functional``
(every op), ``kernels`` (CUDA C and its CPU emulator), ``nn`` (modules), ``models`` (RU, FRRU, FRRN),
``optim``, ``data``, ``metrics``, ``training`` and the ``minifrrn`` command.
"""
from .autograd import (Function, Tensor, as_tensor, enable_grad, is_grad_enabled, no_grad, recompute,
                       tensor)
from .backend import emulate_gpu, get_array_module, gpu_available
from .gradcheck import GradcheckError, GradcheckReport, gradcheck

__version__ = "0.1.0"

_SUBMODULES = ("functional", "nn", "models", "optim", "data", "metrics", "training", "kernels", "viz")


def __getattr__(name):
    # mf.models, mf.optim, ... load on first use, so `import minifrrn` stays light
    if name in _SUBMODULES:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'minifrrn' has no attribute {name!r}")


__all__ = ["Tensor", "Function", "tensor", "as_tensor", "no_grad", "enable_grad", "is_grad_enabled",
           "recompute", "get_array_module", "gpu_available", "emulate_gpu", "gradcheck", "GradcheckError",
           "GradcheckReport", "__version__"]
