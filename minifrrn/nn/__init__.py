"""Modules: ``Module``, ``Parameter`` and the layers FRRN is built from."""
from . import init
from .layers import RELU_GAIN, BatchNorm2d, Conv2d, MaxPool2d, ReLU, Sequential, Upsample
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Upsample",
           "Sequential", "init", "RELU_GAIN"]
