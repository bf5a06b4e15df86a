"""Convolution layers: `Conv1D`, `Conv2D` (Gluon's names and semantics, NCHW).

The layer owns the "what": argument checks, the weight layout
``(channels, in_channels // groups, *kernel)``, deferred ``in_channels``, the input
checks and their messages. The adapter's one primitive, `Backend.conv`, does the
"how" (``F.conv2d``, ``tf.nn.convolution`` in NHWC, ``paddle.nn.functional.conv2d``,
``jax.lax.conv_general_dilated``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .._errors import D2LCompatError, ShapeError
from .._parameter import Parameter
from .._registry import active
from ._block import Block
from ._layers import _activation, _check_input_dtype
from ._shapes import as_tuple, check_input, nchw_shape

__all__ = ["Conv1D", "Conv2D"]

_ELEMENTWISE = ("relu", "sigmoid", "tanh")


class _Conv(Block):
    """The shared body of `Conv1D` and `Conv2D` (``_nsp`` spatial axes)."""

    _nsp: ClassVar[int] = 2

    def __init__(
        self,
        channels: int,
        kernel_size: int | tuple[int, ...],
        strides: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        use_bias: bool = True,
        activation: str | None = None,
        in_channels: int = 0,
        weight_initializer: Any = None,
        bias_initializer: Any = "zeros",
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        kind = type(self).__name__
        n = self._nsp
        if int(channels) < 1:
            raise D2LCompatError(f"{kind}: channels must be >= 1; got {channels}.")
        if int(groups) < 1:
            raise D2LCompatError(f"{kind}: groups must be >= 1; got {groups}.")
        self._channels = int(channels)
        self._groups = int(groups)
        self._kernel = as_tuple(kernel_size, n, "kernel_size", kind, 1)
        self._strides = as_tuple(strides, n, "strides", kind, 1)
        self._padding = as_tuple(padding, n, "padding", kind, 0)
        self._dilation = as_tuple(dilation, n, "dilation", kind, 1)
        self._span = tuple(d * (k - 1) + 1 for k, d in zip(self._kernel, self._dilation))
        if self._channels % self._groups:
            raise ShapeError(
                f"{kind}: channels={channels} is not divisible by groups={groups}. "
                "Choose channels and groups so that groups divides both channel counts."
            )
        if in_channels:
            self._check_groups(int(in_channels))
        self._act_name = activation
        self._act = _activation(activation)
        # Elementwise activations may run inside the adapter's conv (`conv_activation`).
        self._act_elementwise = activation in _ELEMENTWISE
        self.weight = Parameter(
            (self._channels, int(in_channels) // self._groups, *self._kernel),
            dtype=dtype,
            init=weight_initializer,
        )
        self.bias: Parameter | None = (
            Parameter((self._channels,), dtype=dtype, init=bias_initializer) if use_bias else None
        )

    def _check_groups(self, in_channels: int) -> None:
        if in_channels % self._groups:
            raise ShapeError(
                f"{self._describe()}: {in_channels} input channels are not divisible by "
                f"groups={self._groups}. Feed a multiple of {self._groups} channels or "
                "change groups."
            )

    def infer_shape(self, x: Any) -> None:
        shape = tuple(active().shape(x))
        check_input(self._describe(), shape, self._kernel, self._padding, self._dilation)
        self._check_groups(int(shape[1]))
        self.weight.shape = (self._channels, int(shape[1]) // self._groups, *self._kernel)

    def forward(self, x: Any) -> Any:
        weight = self.weight
        shape = x.shape
        want = weight._shape[1] * self._groups
        if len(shape) != self._nsp + 2 or shape[1] != want:
            self._wrong_input(shape, want)
        # A window larger than the padded input: every framework raises its own error,
        # or (TF VALID padding) silently returns an empty tensor. Indexing over range(),
        # not iterating the shape: Paddle's tracer (SOT) cannot iterate a paddle.Size.
        span, pad = self._span, self._padding
        for i in range(self._nsp):
            n = shape[2 + i]
            if n is not None and span[i] > n + 2 * pad[i]:
                check_input(self._describe(), shape, self._kernel, self._padding, self._dilation)
        bias = self.bias
        w = weight.data()
        if x.dtype != w.dtype:  # one comparison on the happy path
            _check_input_dtype(self._describe(), x, w)
        act = self._act
        if act is not None and self._act_elementwise:
            return active().conv_activation(
                x,
                w,
                None if bias is None else bias.data(),
                self._strides,
                self._padding,
                self._dilation,
                self._groups,
                act,
            )
        y = active().conv(
            x,
            w,
            None if bias is None else bias.data(),
            self._strides,
            self._padding,
            self._dilation,
            self._groups,
        )
        return y if act is None else act(y)

    def _forward_nhwc(self, x: Any) -> Any:
        """`forward` of a 2-D convolution on an NHWC ``x``, NHWC out: the layer inside a
        layout chain of `Sequential` (`d2lcompat.nn._layout`, which guarantees a 4-D
        input). The same checks, with the NCHW shape in the messages, and the same
        values."""
        weight = self.weight
        shape = x.shape
        want = weight._shape[1] * self._groups
        if shape[3] != want:
            self._wrong_input(nchw_shape(shape), want)
        span, pad = self._span, self._padding
        for i in range(2):
            n = shape[1 + i]
            if n is not None and span[i] > n + 2 * pad[i]:
                check_input(
                    self._describe(), nchw_shape(shape), self._kernel, pad, self._dilation
                )
        bias = self.bias
        w = weight.data()
        if x.dtype != w.dtype:
            _check_input_dtype(self._describe(), x, w)
        return active().conv_nhwc(
            x,
            w,
            None if bias is None else bias.data(),
            self._strides,
            pad,
            self._dilation,
            self._groups,
            self._act,
        )

    def _wrong_input(self, shape: Any, want: int) -> None:
        check_input(self._describe(), tuple(shape), self._kernel, self._padding, self._dilation)
        if shape[1] is None:
            return
        raise ShapeError(
            f"{self._describe()} expects inputs with {want} channels (axis 1, NCHW); received "
            f"shape {tuple(shape)}. Re-create the layer or feed {want} channels."
        )

    def _extra_repr(self) -> str:
        n_in = self.weight.shape[1] * self._groups or None
        parts = [f"{n_in} -> {self._channels}", f"kernel_size={self._kernel}"]
        if any(s != 1 for s in self._strides):
            parts.append(f"stride={self._strides}")
        if any(self._padding):
            parts.append(f"padding={self._padding}")
        if any(d != 1 for d in self._dilation):
            parts.append(f"dilation={self._dilation}")
        if self._groups != 1:
            parts.append(f"groups={self._groups}")
        if self.bias is None:
            parts.append("bias=False")
        if self._act_name:
            parts.append(f"Activation({self._act_name})")
        return ", ".join(parts)


class Conv2D(_Conv):
    """2-D convolution (cross-correlation) over NCHW inputs.

    ``weight`` has shape ``(channels, in_channels // groups, kh, kw)``; ``in_channels=0``
    means "inferred at the first call". The output size along each axis is
    ``floor((n + 2*padding - dilation*(k-1) - 1) / strides) + 1``.

    Parameters
    ----------
    channels : int
        Output channels.
    kernel_size, strides, padding, dilation : int or (int, int)
        ``padding`` zeros are added on both sides of each axis.
    groups : int
        Split the channels into ``groups`` independent convolutions.
    use_bias : bool
    activation : str, optional
        As `Dense`'s (``'relu'``, ``'sigmoid'``...).
    in_channels : int
        Input channels; 0 infers them from the first input.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> conv = nn.Conv2D(6, kernel_size=5, padding=2); conv.initialize()
    >>> ops.shape(conv(ops.ones((2, 1, 28, 28)))), conv.weight.shape
    ((2, 6, 28, 28), (6, 1, 5, 5))
    """

    _nsp: ClassVar[int] = 2


class Conv1D(_Conv):
    """1-D convolution (cross-correlation) over ``(N, C, W)`` inputs.

    ``weight`` has shape ``(channels, in_channels // groups, k)``; the arguments are
    `Conv2D`'s with one spatial axis.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> conv = nn.Conv1D(4, kernel_size=3, strides=2); conv.initialize()
    >>> ops.shape(conv(ops.ones((2, 3, 9)))), conv.weight.shape
    ((2, 4, 4), (4, 3, 3))
    """

    _nsp: ClassVar[int] = 1
