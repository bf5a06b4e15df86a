"""Initializers, Gluon's vocabulary (``d2lcompat.init``).

An initializer fills a host NumPy array, drawn from d2lcompat's one generator
(see `d2lcompat.seed`), so the same seed gives bit-identical parameters on
every backend. Custom initializers subclass `Initializer` and implement
``_init_weight(self, name, arr)``, filling ``arr`` in place; any callable
``(name, shape, dtype) -> array`` works too.

Which initializer a parameter gets (first match wins):

1. the ``init`` passed to ``param.initialize(init)``;
2. the parameter's own ``init`` (``Dense(bias_initializer='zeros')``);
3. the ``init`` passed to ``block.initialize(init)``;
4. the default, ``Uniform(0.07)`` (Gluon's default).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Union

import numpy as np

from ._errors import D2LCompatError
from ._random import generator

__all__ = [
    "Constant",
    "Initializer",
    "InitSpec",
    "MSRAPrelu",
    "Normal",
    "One",
    "Uniform",
    "Xavier",
    "Zero",
    "create",
]


class Initializer:
    """Base class of initializers.

    Dispatches on the parameter's name like Gluon: names ending in ``bias`` or
    ``beta`` are zeroed, ``gamma`` set to one, everything else goes to
    ``_init_weight``.

    Examples
    --------
    >>> import numpy as np
    >>> class Twos(Initializer):
    ...     def _init_weight(self, name, arr):
    ...         arr[:] = 2
    >>> a = np.empty((2,), np.float32); Twos()("0.weight", a); a.tolist()
    [2.0, 2.0]
    """

    def __call__(self, name: str, arr: np.ndarray) -> None:
        """Fill ``arr`` in place for the parameter called ``name``."""
        leaf = name.rsplit(".", 1)[-1]
        if leaf.endswith("bias") or leaf.endswith("beta"):
            self._init_bias(name, arr)
        elif leaf.endswith("gamma"):
            arr[...] = 1
        else:
            self._init_weight(name, arr)

    def _init_bias(self, name: str, arr: np.ndarray) -> None:
        arr[...] = 0

    def _init_weight(self, name: str, arr: np.ndarray) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} must implement _init_weight(self, name, arr)"
        )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_plain(v)!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def _key(self) -> tuple[Any, ...]:
        return (type(self), tuple((k, _hashable(v)) for k, v in sorted(vars(self).items())))

    def __eq__(self, other: object) -> bool:
        """Initializers are equal when they are of one class with equal settings (Gluon's
        ``init.Constant(-10.0) == init.Constant(-10.0)``)."""
        if not isinstance(other, Initializer):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def _plain(v: Any) -> Any:
    """A setting as plain Python (a NumPy array as a nested list) for the repr."""
    return v.tolist() if isinstance(v, (np.ndarray, np.generic)) else v


def _hashable(v: Any) -> Any:
    """A setting in a form that compares and hashes by value: numbers as floats, arrays
    and lists as (shape, values)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, float, np.number)):
        return float(v)
    if isinstance(v, (np.ndarray, list, tuple)):
        try:
            arr = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            return tuple(_hashable(x) for x in v)
        return ("array", arr.shape, tuple(arr.ravel().tolist()))
    try:
        hash(v)
    except TypeError:
        return repr(v)
    return v


class _All(Initializer):
    """An initializer that treats every parameter alike (weights and biases)."""

    def __call__(self, name: str, arr: np.ndarray) -> None:
        self._init_weight(name, arr)


class Zero(_All):
    """Fills with 0.

    Examples
    --------
    >>> import numpy as np; a = np.ones(2); Zero()("w", a); a.tolist()
    [0.0, 0.0]
    """

    def _init_weight(self, name: str, arr: np.ndarray) -> None:
        arr[...] = 0


class One(_All):
    """Fills with 1.

    Examples
    --------
    >>> import numpy as np; a = np.zeros(2); One()("bias", a); a.tolist()
    [1.0, 1.0]
    """

    def _init_weight(self, name: str, arr: np.ndarray) -> None:
        arr[...] = 1


class Constant(_All):
    """Fills with ``value`` (a scalar, or an array broadcast to the shape).

    Examples
    --------
    >>> import numpy as np; a = np.zeros(2); Constant(42)("0.weight", a); a.tolist()
    [42.0, 42.0]
    """

    def __init__(self, value: Any) -> None:
        self.value = value

    def _init_weight(self, name: str, arr: np.ndarray) -> None:
        arr[...] = np.asarray(self.value)


class Uniform(Initializer):
    """Weights from U(-scale, scale); biases zero.

    Examples
    --------
    >>> import numpy as np; a = np.zeros(100); Uniform(0.1)("w", a); bool(abs(a).max() <= 0.1)
    True
    """

    def __init__(self, scale: float = 0.07) -> None:
        self.scale = scale

    def _init_weight(self, name: str, arr: np.ndarray) -> None:
        arr[...] = generator().uniform(-self.scale, self.scale, arr.shape)


class Normal(Initializer):
    """Weights from N(0, sigma²); biases zero.

    Examples
    --------
    >>> import numpy as np; a = np.zeros(10000); Normal(0.01)("w", a); round(float(a.std()), 2)
    0.01
    """

    def __init__(self, sigma: float = 0.01) -> None:
        self.sigma = sigma

    def _init_weight(self, name: str, arr: np.ndarray) -> None:
        arr[...] = generator().normal(0.0, self.sigma, arr.shape)


def _fans(shape: tuple[int, ...]) -> tuple[float, float]:
    # Gluon's convention: shape (out, in, *kernel); a 1-D parameter has fan_in = fan_out.
    if len(shape) < 2:
        n = float(shape[0]) if shape else 1.0
        return n, n
    receptive = float(np.prod(shape[2:])) if len(shape) > 2 else 1.0
    return shape[1] * receptive, shape[0] * receptive


class Xavier(Initializer):
    """Xavier/Glorot: scale = sqrt(magnitude / factor), factor from ``factor_type``
    (``'avg'``, ``'in'``, ``'out'``); uniform in (-scale, scale) or normal with std scale.

    Examples
    --------
    >>> import numpy as np; a = np.zeros((64, 32)); Xavier()("w", a)
    >>> bool(abs(a).max() <= np.sqrt(6 / (64 + 32)))
    True
    """

    def __init__(self, rnd_type: str = "uniform", factor_type: str = "avg", magnitude: float = 3):
        if rnd_type not in ("uniform", "gaussian"):
            raise D2LCompatError(f"Xavier rnd_type must be 'uniform' or 'gaussian', not {rnd_type!r}")
        if factor_type not in ("avg", "in", "out"):
            raise D2LCompatError(f"Xavier factor_type must be 'avg', 'in' or 'out', not {factor_type!r}")
        self.rnd_type = rnd_type
        self.factor_type = factor_type
        self.magnitude = float(magnitude)

    def _init_weight(self, name: str, arr: np.ndarray) -> None:
        fan_in, fan_out = _fans(arr.shape)
        factor = {"avg": (fan_in + fan_out) / 2.0, "in": fan_in, "out": fan_out}[self.factor_type]
        scale = math.sqrt(self.magnitude / factor)
        if self.rnd_type == "uniform":
            arr[...] = generator().uniform(-scale, scale, arr.shape)
        else:
            arr[...] = generator().normal(0.0, scale, arr.shape)


class MSRAPrelu(Xavier):
    """Kaiming/He initialization for (P)ReLU nets: Xavier, gaussian, magnitude 2/(1+slope²).

    Examples
    --------
    >>> import numpy as np; a = np.zeros((256, 512)); MSRAPrelu(slope=0.0)("w", a)
    >>> round(float(a.std() * np.sqrt(512 / 2)), 1)
    1.0
    """

    def __init__(self, factor_type: str = "in", slope: float = 0.25) -> None:
        super().__init__("gaussian", factor_type, 2.0 / (1 + slope**2))
        self.slope = slope


InitFn = Callable[[str, tuple[int, ...], str], Any]
InitSpec = Union[Initializer, InitFn, str, float, int, None]

_BY_NAME: dict[str, Callable[[], Initializer]] = {
    "zeros": Zero,
    "zero": Zero,
    "ones": One,
    "one": One,
    "uniform": Uniform,
    "normal": Normal,
    "xavier": Xavier,
    "msraprelu": MSRAPrelu,
    "kaiming": MSRAPrelu,
}


def create(spec: InitSpec) -> Initializer | InitFn | None:
    """An initializer from a spec: an `Initializer`, a callable, a name (``'zeros'``,
    ``'xavier'``, ...), a number (a `Constant`) or None.

    Examples
    --------
    >>> create("zeros")
    Zero()
    """
    if spec is None or isinstance(spec, Initializer):
        return spec
    if isinstance(spec, str):
        try:
            return _BY_NAME[spec.lower()]()
        except KeyError:
            raise D2LCompatError(
                f"Unknown initializer {spec!r}; use one of {', '.join(sorted(_BY_NAME))} "
                "or an Initializer instance."
            ) from None
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Constant(spec)
    if callable(spec):
        return spec
    raise D2LCompatError(f"Cannot use {spec!r} as an initializer.")


def fill(init: Initializer | InitFn, name: str, shape: tuple[int, ...], np_dtype: Any) -> np.ndarray:
    """Run ``init`` for a parameter and return the host array (private to the core)."""
    if isinstance(init, Initializer):
        # Fill in float64 then cast: the draws are the same bits on every backend and dtype.
        arr = np.zeros(shape, dtype=np.float64)
        init(name, arr)
        return arr.astype(np_dtype)
    out = np.asarray(init(name, shape, str(np.dtype(np_dtype))))
    if out.shape != shape:
        out = np.broadcast_to(out, shape)
    return out.astype(np_dtype)
