"""d2lcompat: one Block/Parameter/Device API — MXNet Gluon's, as in "Dive into Deep
Learning" chapter 5 — on PyTorch, TensorFlow, PaddlePaddle and JAX.

The backend is chosen once, at the first ``import d2lcompat``, from
``D2LCOMPAT_BACKEND`` (else the first installed of torch, jax, tensorflow,
paddle); exactly one framework is imported.

Examples
--------
>>> import d2lcompat
>>> from d2lcompat import nn, ops
>>> d2lcompat.seed(0)
>>> net = nn.Sequential(nn.Dense(256, activation="relu"), nn.Dense(10))
>>> net.initialize()
>>> ops.shape(net(ops.random.uniform((2, 20))))
(2, 10)
"""

from __future__ import annotations

from ._errors import (
    BackendError,
    BlockAttributeError,
    CheckpointError,
    CompileFallbackWarning,
    D2LCompatError,
    D2LCompatWarning,
    DataError,
    DeferredInitializationError,
    DeviceError,
    DTypeError,
    InPlaceUpdateError,
    LabelError,
    NonFiniteLossError,
    ShapeError,
    TensorWriteError,
    TracedValueError,
    UnsupportedError,
)
from ._registry import BackendInfo, _activate, backend, backends
from ._spec import BackendSpec

_activate()

from ._backend import Backend  # noqa: E402
from ._device import (  # noqa: E402
    Device,
    _init_default,
    copy_to,
    cpu,
    default_device,
    device_of,
    gpu,
    num_gpus,
    to_device,
    try_all_gpus,
    try_gpu,
)

_init_default()

from . import autograd, data, init, loss, nn, ops, optim, parallel  # noqa: E402
from ._clip import clip_global_norm  # noqa: E402
from ._fit import History, fit  # noqa: E402
from ._io import convert, load, native_formats, save  # noqa: E402
from ._parameter import Constant, Parameter  # noqa: E402
from ._random import seed  # noqa: E402
from ._trainer import Trainer, TrainStep, train_step  # noqa: E402
from .nn import ParameterDict  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendError",
    "BackendInfo",
    "BackendSpec",
    "CheckpointError",
    "CompileFallbackWarning",
    "Constant",
    "D2LCompatError",
    "BlockAttributeError",
    "D2LCompatWarning",
    "DTypeError",
    "DataError",
    "DeferredInitializationError",
    "Device",
    "DeviceError",
    "History",
    "InPlaceUpdateError",
    "LabelError",
    "Parameter",
    "TrainStep",
    "Trainer",
    "ParameterDict",
    "NonFiniteLossError",
    "ShapeError",
    "TensorWriteError",
    "TracedValueError",
    "UnsupportedError",
    "__version__",
    "autograd",
    "backend",
    "backends",
    "clip_global_norm",
    "convert",
    "data",
    "copy_to",
    "cpu",
    "default_device",
    "device_of",
    "fit",
    "gpu",
    "init",
    "load",
    "loss",
    "native_formats",
    "nn",
    "num_gpus",
    "ops",
    "optim",
    "parallel",
    "save",
    "seed",
    "to_device",
    "train_step",
    "try_all_gpus",
    "try_gpu",
]
