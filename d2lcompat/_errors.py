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
    "D2LCompatWarning",
    "DTypeError",
    "DataError",
    "DeferredInitializationError",
    "DeviceError",
    "InPlaceUpdateError",
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


class D2LCompatWarning(UserWarning):
    """Warnings issued by d2lcompat (for example a second ``initialize()``)."""
