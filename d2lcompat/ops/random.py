"""Random tensors drawn on the host from d2lcompat's seeded generator (`d2lcompat.seed`),
so the same seed gives the same bits on every backend."""

from __future__ import annotations

from typing import Any

from .._device import resolve
from .._dtypes import canonical, numpy_dtype
from .._random import generator
from .._registry import active

__all__ = ["normal", "uniform"]


def _shape(shape: Any) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)


def uniform(
    shape: Any, low: float = 0.0, high: float = 1.0, dtype: Any = "float32", device: Any = None
) -> Any:
    """Samples from U(low, high).

    Examples
    --------
    >>> from d2lcompat import ops
    >>> x = ops.to_numpy(ops.random.uniform((100,), 2.0, 3.0)); bool((x >= 2).all() and (x < 3).all())
    True
    """
    name = canonical(dtype)
    arr = generator().uniform(low, high, _shape(shape)).astype(numpy_dtype(name))
    return active().from_numpy(arr, name, resolve(device))


def normal(
    shape: Any, mean: float = 0.0, std: float = 1.0, dtype: Any = "float32", device: Any = None
) -> Any:
    """Samples from N(mean, std²).

    Examples
    --------
    >>> from d2lcompat import ops
    >>> ops.shape(ops.random.normal((2, 3)))
    (2, 3)
    """
    name = canonical(dtype)
    arr = generator().normal(mean, std, _shape(shape)).astype(numpy_dtype(name))
    return active().from_numpy(arr, name, resolve(device))
