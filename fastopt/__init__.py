"""fastopt: fused, in-place optimizer steps for NumPy (and GPU) buffers, compiled with Numba."""

from . import functional
from .optim import OPTIMIZERS, SGD, Adadelta, Adagrad, Adam, AdamW, Optimizer, RMSprop
from .params import FlatParams

__version__ = "0.1.0"

__all__ = [
    "OPTIMIZERS", "SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "FlatParams",
    "Optimizer", "RMSprop", "functional", "__version__",
]
