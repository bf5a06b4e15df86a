"""The exception hierarchy: every error d2lcompat raises derives from `D2LCompatError`.

Each also derives from the built-in exception a Python user would reach for
(``ValueError``, ``RuntimeError``, ...), so existing ``except`` clauses keep working.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BlockAttributeError",
    "CheckpointError",
    "D2LCompatError",
    "CompileFallbackWarning",
    "D2LCompatWarning",
    "DTypeError",
    "DataError",
    "DeferredInitializationError",
    "DeviceError",
    "InPlaceUpdateError",
    "LabelError",
    "NonFiniteLossError",
    "ShapeError",
    "TensorWriteError",
    "TracedValueError",
    "UnsupportedError",
]


class D2LCompatError(Exception):
    """Base class of every error raised by d2lcompat.

    Examples
    --------
    >>> try:
    ...     raise ShapeError("bad")
    ... except D2LCompatError as e:
    ...     print(type(e).__name__)
    ShapeError
    """


class BackendError(D2LCompatError, ImportError):
    """The requested backend is unknown, not installed, or failed to load."""


class DeferredInitializationError(D2LCompatError, RuntimeError):
    """A parameter's shape is not known yet: run one forward pass first."""


class ShapeError(D2LCompatError, ValueError):
    """A shape does not fit: the message names the block or parameter and both shapes."""


class DTypeError(D2LCompatError, TypeError):
    """A dtype does not fit or is not known to the backend."""


class CheckpointError(D2LCompatError, ValueError):
    """A file cannot be saved or loaded; the message lists every problem found."""


class DeviceError(D2LCompatError, RuntimeError):
    """A device does not exist, or an operation mixes devices."""


class UnsupportedError(D2LCompatError, NotImplementedError):
    """The backend in use cannot do this at all (see its ``SUPPORTS_*`` flags)."""


class DataError(D2LCompatError, ValueError):
    """A dataset cannot be built or read (arrays of different lengths, a corrupt IDX
    file, a missing optional dependency such as scikit-learn)."""

class BlockAttributeError(D2LCompatError, TypeError):
    """An attribute that holds a child block or a parameter was assigned a value of
    another type (Gluon's ``TypeError``: ``Changing attribute type ... is not allowed``)."""


class TensorWriteError(D2LCompatError, TypeError):
    """Item assignment (``Y[i, j] = v``) on a tensor whose framework refuses it
    (TensorFlow, JAX): write ``Y = ops.index_update(Y, (i, j), v)`` instead."""


class InPlaceUpdateError(D2LCompatError, RuntimeError):
    """The closure given to `autograd.grad` changed in place a tensor the gradient needs
    (``X /= 2`` on torch): write ``X = X / 2`` instead (docs/divergences.md)."""


class TracedValueError(D2LCompatError, RuntimeError):
    """Python code read a tensor's value (``ops.item``, ``bool(x)``, ``np.asarray(x)``) where
    the framework refuses it: a symbolic (traced) value under JAX's ``jit``, or NumPy
    conversion of a tensor being differentiated (use ``ops.to_numpy``/``ops.item``)."""


class LabelError(DataError):
    """Class labels that cannot be class indices: out of ``[0, classes)``, NaN or not
    whole numbers. The message names the loss, the bad values and the class count."""


class NonFiniteLossError(D2LCompatError, FloatingPointError):
    """A training step met a NaN or infinite loss or gradient; `fit` (``stop_on_nan=True``)
    raises it, naming the epoch and batch, before the parameters are overwritten."""


class D2LCompatWarning(UserWarning):
    """Warnings issued by d2lcompat (for example a second ``initialize()``)."""


class CompileFallbackWarning(D2LCompatWarning):
    """A hybridized block whose forward the framework's compiler could not compile whole
    (Paddle SOT graph breaks, a value-dependent branch that ``jax.jit`` rejects): issued
    once per block, naming it and the compiler's reason."""


# Users import these from ``d2lcompat`` (``d2lcompat.BackendError``); a traceback and
# ``repr`` show that name, not this private module's. Every error and warning class
# defined above is public.
for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, (D2LCompatError, D2LCompatWarning)):
        _cls.__module__ = "d2lcompat"
del _cls
