"""Shape arithmetic shared by the convolution and pooling layers.

Where is an output size computed? `out_size` (the formula of SCENARIOS LY02);
where are kernel, stride and padding arguments normalised? `as_tuple`; where is
a layer's input checked before the adapter's kernel runs? `check_input`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import ops
from .._errors import D2LCompatError, ShapeError
from .._registry import active

__all__ = ["as_tuple", "check_input", "flatten_batch", "nchw_shape", "out_size"]

#: The names of the spatial axes, by number of spatial axes (messages only).
AXES = {1: ("W",), 2: ("H", "W")}
LAYOUT = {1: "(N, C, W)", 2: "(N, C, H, W)"}


def nchw_shape(shape: Sequence[Any]) -> tuple[Any, ...]:
    """The NCHW shape of an NHWC ``shape``: what a layer inside a layout chain
    (`d2lcompat.nn._layout`) shows in its messages, since the user's tensor is NCHW."""
    return (shape[0], shape[3], shape[1], shape[2])


def flatten_batch(x: Any) -> Any:
    """``x`` reshaped to ``(batch, -1)``, written for compilers.

    The target is ``(-1, features)`` when every axis but the first has a static size:
    the batch axis can then stay unknown — TensorFlow relaxes it to ``None`` when a
    ``tf.function`` sees a second batch size (the last, smaller batch of an epoch), and
    Paddle's SOT makes it symbolic — and the feature count stays a static int, so the
    next layer's checks are no graph break. Otherwise ``(batch, -1)``.

    Examples
    --------
    >>> from d2lcompat import ops
    >>> from d2lcompat.nn._shapes import flatten_batch
    >>> ops.shape(flatten_batch(ops.ones((2, 3, 4)))), ops.shape(flatten_batch(ops.ones((0, 3))))
    ((2, 12), (0, 3))
    """
    shape = active().shape(x)
    features = 1
    for d in shape[1:]:
        if d is None:  # unknown while tracing: let the framework compute it
            return ops.reshape(x, (shape[0], -1))
        features *= d
    if features == 0:  # -1 would be ambiguous
        return ops.reshape(x, (shape[0], 0))
    return ops.reshape(x, (-1, features))


def as_tuple(value: Any, n: int, what: str, layer: str, minimum: int) -> tuple[int, ...]:
    """``value`` (an int or a sequence of ``n`` ints, each ``>= minimum``) as an ``n``-tuple."""
    if isinstance(value, int):
        out = (value,) * n
    else:
        try:
            out = tuple(int(v) for v in value)
        except TypeError:
            raise D2LCompatError(
                f"{layer}: {what} must be an int or a tuple of {n} ints; got {value!r}."
            ) from None
        if len(out) != n:
            raise D2LCompatError(
                f"{layer}: {what} must be an int or a tuple of {n} ints; got {value!r}."
            )
    if any(v < minimum for v in out):
        raise D2LCompatError(f"{layer}: every {what} must be >= {minimum}; got {value!r}.")
    return out


def out_size(n: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """The output length of a window over ``n`` positions:
    ``floor((n + 2p - d(k-1) - 1) / s) + 1``.

    Examples
    --------
    >>> out_size(28, 5, 1, 2), out_size(7, 3, 2, 1, dilation=2)
    (28, 3)
    """
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def check_input(
    layer: str,
    shape: Sequence[Any],
    kernel: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...] | None = None,
    what: str = "kernel",
) -> None:
    """Raise `ShapeError` when ``shape`` is not ``(N, C, *spatial)`` with as many spatial
    axes as ``kernel``, or when the (dilated) window is larger than a padded axis.
    Unknown sizes (``None`` or -1 in a traced shape) are not checked."""
    nsp = len(kernel)
    if len(shape) != nsp + 2:
        raise ShapeError(
            f"{layer} expects a {nsp + 2}-D input {LAYOUT[nsp]}; received shape "
            f"{tuple(shape)}. Add the missing batch or channel axis (reshape to "
            f"{LAYOUT[nsp]})."
        )
    dilation = dilation or (1,) * nsp
    for ax, n, k, p, d in zip(AXES[nsp], shape[2:], kernel, padding, dilation):
        if n is None or int(n) < 0:  # unknown while tracing (None; Paddle: -1)
            continue
        span = d * (k - 1) + 1
        if span > int(n) + 2 * p:
            dil = f" (dilated to {span})" if d > 1 else ""
            raise ShapeError(
                f"{layer}: the {what} size {k}{dil} along {ax} is larger than the padded "
                f"input ({int(n)} + 2*{p} = {int(n) + 2 * p}); received shape {tuple(shape)}. "
                f"Use a smaller {what}, more padding, or a larger input."
            )
