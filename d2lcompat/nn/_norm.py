"""Normalization layers: `BatchNorm` (with running statistics) and `LayerNorm`.

Where are BatchNorm's running statistics written? In `BatchNorm.forward`, in training
mode only, through `d2lcompat._state.set_state`: written at once in plain eager code,
collected inside `autograd.grad` (and a compiled training step) and written after it,
so that the update works under JAX tracing too. Both layers are written with `ops`,
so the formula is the same on every backend.
"""

from __future__ import annotations

from typing import Any

from .. import autograd as _autograd
from .. import ops as _ops
from .._errors import D2LCompatError, ShapeError
from .._parameter import Parameter
from .._registry import active
from .._state import set_state
from ._block import Block
from ._shapes import nchw_shape

__all__ = ["BatchNorm", "LayerNorm"]


def _axis_of(layer: Block, axis: int, shape: Any) -> int:
    nd = len(shape)
    if not -nd <= axis < nd:
        raise ShapeError(
            f"{layer._describe()} normalizes over axis {axis}, but the input has shape "
            f"{tuple(shape)}. Feed an input with that axis or change axis=."
        )
    return axis % nd


class BatchNorm(Block):
    """Batch normalization (Gluon's semantics; §8.5 of the book).

    Per channel (``axis``, 1 for NCHW and for ``(N, C)`` Dense outputs):

    * training mode (inside ``autograd.record()`` / ``train_mode()``): normalize with
      the batch's mean and *biased* variance over every other axis, then update
      ``running = momentum * running + (1 - momentum) * batch``;
    * predict mode (the default): normalize with ``running_mean`` and ``running_var``.

    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``. ``gamma`` (init 1) and
    ``beta`` (init 0) train; ``running_mean`` (0) and ``running_var`` (1) have
    ``grad_req='null'`` and are saved and loaded with the other parameters. Note
    PyTorch's ``momentum`` is ``1 - momentum`` here, and PyTorch stores the unbiased
    batch variance in ``running_var``.

    Examples
    --------
    >>> from d2lcompat import nn, ops, autograd
    >>> bn = nn.BatchNorm(); bn.initialize()
    >>> x = ops.reshape(ops.arange(8, dtype="float32"), (4, 2))
    >>> with autograd.record():
    ...     y = bn(x)
    >>> [round(float(v), 4) for v in ops.to_numpy(ops.mean(y, axis=0))]
    [0.0, 0.0]
    >>> [round(float(v), 4) for v in ops.to_numpy(bn.running_mean.data())]
    [0.3, 0.4]
    """

    def __init__(
        self,
        axis: int = 1,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        in_channels: int = 0,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise D2LCompatError(f"BatchNorm momentum must be in [0, 1]; got {momentum}.")
        self._axis = int(axis)
        self._momentum = float(momentum)
        self._eps = float(epsilon)
        c = (int(in_channels),)
        self.gamma = Parameter(c, dtype=dtype, init="ones")
        self.beta = Parameter(c, dtype=dtype, init="zeros")
        self.running_mean = Parameter(c, dtype=dtype, init="zeros", grad_req="null")
        self.running_var = Parameter(c, dtype=dtype, init="ones", grad_req="null")

    def infer_shape(self, x: Any) -> None:
        shape = tuple(active().shape(x))
        c = (int(shape[_axis_of(self, self._axis, shape)]),)
        for p in (self.gamma, self.beta, self.running_mean, self.running_var):
            p.shape = c

    def forward(self, x: Any) -> Any:
        shape = x.shape
        axis = _axis_of(self, self._axis, shape)
        c = self.gamma._shape[0]
        if shape[axis] != c and shape[axis] is not None and shape[axis] >= 0:
            raise ShapeError(
                f"{self._describe()} expects {c} channels along axis {axis}; received shape "
                f"{tuple(shape)}. Re-create the layer or feed {c} channels."
            )
        return self._normalize(x, axis, len(shape), c)

    def _forward_nhwc(self, x: Any) -> Any:
        """`forward` of a channel-axis BatchNorm on an NHWC ``x`` (inside a layout chain,
        `d2lcompat.nn._layout`): the channels are axis 3, the formula is the same."""
        shape = x.shape
        c = self.gamma._shape[0]
        if shape[3] != c and shape[3] is not None and shape[3] >= 0:
            raise ShapeError(
                f"{self._describe()} expects {c} channels along axis 1; received shape "
                f"{nchw_shape(shape)}. Re-create the layer or feed {c} channels."
            )
        return self._normalize(x, 3, 4, c)

    def _normalize(self, x: Any, axis: int, nd: int, c: int) -> Any:
        # List comprehensions, not generators: Paddle's SOT traces the former without a
        # graph break.
        bshape = tuple([c if i == axis else 1 for i in range(nd)])
        if _autograd.is_training():
            reduce = tuple([i for i in range(nd) if i != axis])
            mean = _ops.mean(x, axis=reduce, keepdims=True)
            centered = x - mean
            var = _ops.mean(_ops.square(centered), axis=reduce, keepdims=True)
            m = self._momentum
            rm, rv = self.running_mean, self.running_var
            set_state(rm, m * rm.data() + (1.0 - m) * _ops.reshape(mean, (c,)))
            set_state(rv, m * rv.data() + (1.0 - m) * _ops.reshape(var, (c,)))
        else:
            centered = x - _ops.reshape(self.running_mean.data(), bshape)
            var = _ops.reshape(self.running_var.data(), bshape)
        scale = _ops.reshape(self.gamma.data(), bshape) / _ops.sqrt(var + self._eps)
        return centered * scale + _ops.reshape(self.beta.data(), bshape)

    def _extra_repr(self) -> str:
        c = self.gamma.shape[0] or None
        return f"axis={self._axis}, momentum={self._momentum}, eps={self._eps}, in_channels={c}"


class LayerNorm(Block):
    """Layer normalization over one axis (default the last), per sample:
    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta`` with the mean and biased
    variance over ``axis``; ``gamma`` (init 1) and ``beta`` (init 0) have the size of
    that axis, inferred at the first call.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> ln = nn.LayerNorm(); ln.initialize()
    >>> y = ln(ops.tensor([[1.0, 2.0, 3.0]]))
    >>> [round(float(v), 3) for v in ops.to_numpy(y)[0]]
    [-1.225, 0.0, 1.225]
    """

    def __init__(
        self, axis: int = -1, epsilon: float = 1e-5, in_channels: int = 0, dtype: str = "float32"
    ) -> None:
        super().__init__()
        self._axis = int(axis)
        self._eps = float(epsilon)
        self.gamma = Parameter((int(in_channels),), dtype=dtype, init="ones")
        self.beta = Parameter((int(in_channels),), dtype=dtype, init="zeros")

    def infer_shape(self, x: Any) -> None:
        shape = tuple(active().shape(x))
        c = (int(shape[_axis_of(self, self._axis, shape)]),)
        self.gamma.shape = c
        self.beta.shape = c

    def forward(self, x: Any) -> Any:
        shape = x.shape
        axis = _axis_of(self, self._axis, shape)
        c = self.gamma._shape[0]
        if shape[axis] != c and shape[axis] is not None and shape[axis] >= 0:
            raise ShapeError(
                f"{self._describe()} expects {c} features along axis {axis}; received shape "
                f"{tuple(shape)}. Re-create the layer or feed {c} features."
            )
        mean = _ops.mean(x, axis=axis, keepdims=True)
        centered = x - mean
        var = _ops.mean(_ops.square(centered), axis=axis, keepdims=True)
        bshape = tuple([c if i == axis else 1 for i in range(len(shape))])
        scale = _ops.reshape(self.gamma.data(), bshape) / _ops.sqrt(var + self._eps)
        return centered * scale + _ops.reshape(self.beta.data(), bshape)

    def _extra_repr(self) -> str:
        return f"axis={self._axis}, eps={self._eps}, in_channels={self.gamma.shape[0] or None}"
