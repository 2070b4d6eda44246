"""Hand-written CUDA kernels (the ``.cu`` files beside this module), their executors, and the GPU
path of every op (``minifrrn.kernels.ops``).

A kernel runs through an executor: ``CupyExecutor`` on a GPU, or ``EmulatorExecutor``, which compiles
the same source with g++ and runs every block and thread of the launch on the CPU. ``executor_for``
picks one for a set of arrays (``None`` means: take the NumPy path).
"""
from . import ops
from .executor import (KERNEL_FILES, CupyExecutor, EmulatorExecutor, KernelBuildError,
                       executor_for, kernel_source, launch_config, launch_config_2d)

__all__ = ["ops", "executor_for", "CupyExecutor", "EmulatorExecutor", "KernelBuildError",
           "kernel_source", "launch_config", "launch_config_2d", "KERNEL_FILES"]
