"""Pooling layers: `MaxPool1D/2D`, `AvgPool1D/2D`, `GlobalAvgPool2D`, `GlobalMaxPool2D`.

Semantics (the same on every backend, checked against NumPy in SCENARIOS LY04):

* ``strides=None`` means ``strides = pool_size`` (Gluon, PyTorch).
* ``padding`` is added on both sides of each spatial axis: ``-inf`` for max pooling;
  zeros that **count** in the average for average pooling (Gluon's and PyTorch's
  default ``count_include_pad=True``; TensorFlow's ``SAME`` and Paddle's default
  ``exclusive=True`` differ, so their adapters pad explicitly).
* ``padding`` may be at most half the window (PyTorch's rule, enforced on every backend
  so that a model that runs on one runs on all).
* The output size is ``floor((n + 2*padding - pool_size) / strides) + 1`` (no ceil mode).

The adapter's one primitive is `Backend.pool`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import ops as _ops
from .._errors import ShapeError
from .._registry import active
from ._block import Block
from ._shapes import as_tuple, check_input, nchw_shape

__all__ = [
    "AvgPool1D",
    "AvgPool2D",
    "GlobalAvgPool2D",
    "GlobalMaxPool2D",
    "MaxPool1D",
    "MaxPool2D",
]


class _Pool(Block):
    _nsp: ClassVar[int] = 2
    _kind: ClassVar[str] = "max"

    def __init__(
        self,
        pool_size: int | tuple[int, ...] = 2,
        strides: int | tuple[int, ...] | None = None,
        padding: int | tuple[int, ...] = 0,
    ) -> None:
        super().__init__()
        kind, n = type(self).__name__, self._nsp
        self._window = as_tuple(pool_size, n, "pool_size", kind, 1)
        self._strides = self._window if strides is None else as_tuple(strides, n, "strides", kind, 1)
        self._padding = as_tuple(padding, n, "padding", kind, 0)
        if any(2 * p > k for p, k in zip(self._padding, self._window)):
            raise ShapeError(
                f"{kind}: padding {self._padding} must be at most half of pool_size "
                f"{self._window}. Use less padding or a larger pool_size."
            )

    def forward(self, x: Any) -> Any:
        shape = x.shape
        window, pad = self._window, self._padding
        if len(shape) != self._nsp + 2:
            check_input(self._describe(), tuple(shape), window, pad, what="pool")
        for i in range(self._nsp):  # range(), not the shape: Paddle's tracer (SOT)
            n = shape[2 + i]
            if n is not None and window[i] > n + 2 * pad[i]:
                check_input(self._describe(), tuple(shape), window, pad, what="pool")
        return active().pool(x, self._kind, window, self._strides, pad)

    def _forward_nhwc(self, x: Any) -> Any:
        """`forward` of a 2-D pool on an NHWC ``x``, NHWC out (inside a layout chain,
        `d2lcompat.nn._layout`): the same checks and values."""
        shape = x.shape
        window, pad = self._window, self._padding
        for i in range(2):
            n = shape[1 + i]
            if n is not None and window[i] > n + 2 * pad[i]:
                check_input(self._describe(), nchw_shape(shape), window, pad, what="pool")
        return active().pool_nhwc(x, self._kind, window, self._strides, pad)

    def _extra_repr(self) -> str:
        return f"size={self._window}, stride={self._strides}, padding={self._padding}"


class MaxPool2D(_Pool):
    """2-D max pooling over NCHW inputs.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> x = ops.reshape(ops.arange(16, dtype="float32"), (1, 1, 4, 4))
    >>> ops.to_numpy(nn.MaxPool2D(2)(x))[0, 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """

    _nsp: ClassVar[int] = 2
    _kind: ClassVar[str] = "max"


class AvgPool2D(_Pool):
    """2-D average pooling over NCHW inputs; padded zeros count in the average.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> x = ops.reshape(ops.arange(16, dtype="float32"), (1, 1, 4, 4))
    >>> ops.to_numpy(nn.AvgPool2D(2)(x))[0, 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """

    _nsp: ClassVar[int] = 2
    _kind: ClassVar[str] = "avg"


class MaxPool1D(_Pool):
    """1-D max pooling over ``(N, C, W)`` inputs.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> x = ops.reshape(ops.arange(6, dtype="float32"), (1, 1, 6))
    >>> ops.to_numpy(nn.MaxPool1D(3)(x)).tolist()
    [[[2.0, 5.0]]]
    """

    _nsp: ClassVar[int] = 1
    _kind: ClassVar[str] = "max"


class AvgPool1D(_Pool):
    """1-D average pooling over ``(N, C, W)`` inputs; padded zeros count in the average.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> x = ops.reshape(ops.arange(6, dtype="float32"), (1, 1, 6))
    >>> ops.to_numpy(nn.AvgPool1D(3)(x)).tolist()
    [[[1.0, 4.0]]]
    """

    _nsp: ClassVar[int] = 1
    _kind: ClassVar[str] = "avg"


class _GlobalPool2D(Block):
    _reduce: ClassVar[str] = "mean"

    def forward(self, x: Any) -> Any:
        shape = x.shape
        if len(shape) != 4:
            raise ShapeError(
                f"{self._describe()} expects a 4-D input (N, C, H, W); received shape "
                f"{tuple(shape)}."
            )
        fn = _ops.mean if self._reduce == "mean" else _ops.max
        return fn(x, axis=(2, 3), keepdims=True)


class GlobalAvgPool2D(_GlobalPool2D):
    """The mean over H and W: ``(N, C, H, W) -> (N, C, 1, 1)``.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> ops.shape(nn.GlobalAvgPool2D()(ops.ones((2, 3, 5, 5))))
    (2, 3, 1, 1)
    """

    _reduce: ClassVar[str] = "mean"


class GlobalMaxPool2D(_GlobalPool2D):
    """The maximum over H and W: ``(N, C, H, W) -> (N, C, 1, 1)``.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> ops.shape(nn.GlobalMaxPool2D()(ops.ones((2, 3, 5, 5))))
    (2, 3, 1, 1)
    """

    _reduce: ClassVar[str] = "max"
