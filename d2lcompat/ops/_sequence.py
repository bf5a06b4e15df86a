"""`sequence_mask` and `masked_softmax` (the book's §11.3), compositions of the ops.

Both are written once with the backend's native ops, so they are the same on every
backend and differentiable everywhere. The masked positions of `masked_softmax` get
the score ``-1e6`` (the book's value, not ``-inf``): a row whose valid length is 0
gives uniform weights, as in the book, never NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import ShapeError
from .._registry import active

__all__ = ["MASK_VALUE", "device_for", "lengths_tensor", "masked_softmax", "sequence_mask"]

#: The score masked positions get before the softmax (the book's value).
MASK_VALUE = -1e6


def lengths_tensor(
    valid_lens: Any, shape: tuple[int, ...], like: Any, where: str, name: str = "valid_lens"
) -> Any:
    """``valid_lens`` as a float32 native tensor whose shape is a prefix of ``shape``
    (``(B,)`` or ``(B, Q)`` for scores of shape ``(B, Q, K)``), on the device of the
    scores; raises `ShapeError` naming ``where`` otherwise."""
    b = active()
    if not b.is_tensor(valid_lens):
        valid_lens = b.from_numpy(np.asarray(valid_lens, dtype=np.float32), "float32", device_for(b, like))
    lshape = tuple(b.shape(valid_lens))
    nd = len(lshape)
    if nd < 1 or nd >= len(shape) or tuple(shape[:nd]) != lshape:
        allowed = " or ".join(str(tuple(shape[:i])) for i in range(1, len(shape)))
        raise ShapeError(
            f"{where}: {name} of shape {lshape} does not fit an input of shape "
            f"{tuple(shape)}; pass one length per row: shape {allowed}."
        )
    if b.dtype(valid_lens) != "float32":
        valid_lens = b.cast(valid_lens, "float32")
    return valid_lens


def device_for(b: Any, like: Any) -> Any:
    """Where to create a tensor used with ``like``: its device; for a traced value,
    which has no device yet, d2lcompat's default device (``D2LCOMPAT_DEVICE``, where
    the other inputs of a traced function were created) or None (the framework's)."""
    if b.is_traced(like):
        from .._device import resolve

        return resolve(None)
    return b.device_of(like)


def _positions(b: Any, n: int, like: Any) -> Any:
    """``[0, 1, ..., n - 1]`` as float32 on the device of ``like``."""
    return b.arange(0, n, 1, "float32", device_for(b, like))


def sequence_mask(X: Any, valid_len: Any, value: float = 0) -> Any:
    """``X`` (``(B, T, ...)``) with every position ``t >= valid_len[b]`` of axis 1 set
    to ``value`` (the book's ``sequence_mask``, MXNet's ``npx.sequence_mask(...,
    axis=1)``). A new tensor: ``X`` is left unchanged.

    Examples
    --------
    >>> from d2lcompat import ops
    >>> X = ops.tensor([[1, 2, 3], [4, 5, 6]])
    >>> ops.to_numpy(ops.sequence_mask(X, ops.tensor([1, 2]))).tolist()
    [[1, 0, 0], [4, 5, 0]]
    """
    b = active()
    shape = tuple(b.shape(X))
    if len(shape) < 2:
        raise ShapeError(
            f"sequence_mask: X needs shape (batch, steps, ...), got {shape}; "
            "reshape a single sequence to (1, steps)."
        )
    vl = lengths_tensor(valid_len, shape[:1] + (1,), X, "sequence_mask", "valid_len")
    ops: Any = b.ops
    keep = ops.less(ops.reshape(_positions(b, shape[1], X), (1, shape[1])), ops.reshape(vl, (shape[0], 1)))
    if len(shape) > 2:
        keep = ops.reshape(keep, shape[:2] + (1,) * (len(shape) - 2))
    fill = b.full((), value, b.dtype(X), device_for(b, X))
    return ops.where(keep, X, fill)


def key_mask(valid_lens: Any, shape: tuple[int, ...], like: Any, where: str) -> Any:
    """The boolean mask ``key position < valid length`` broadcastable to ``shape``
    (``(..., K)``): ``valid_lens`` of shape ``shape[:i]`` gets trailing axes of 1."""
    b = active()
    vl = lengths_tensor(valid_lens, shape, like, where)
    ops: Any = b.ops
    nd, k = len(shape), shape[-1]
    lshape = tuple(b.shape(vl))
    vl = ops.reshape(vl, lshape + (1,) * (nd - len(lshape)))
    pos = ops.reshape(_positions(b, k, like), (1,) * (nd - 1) + (k,))
    return ops.less(pos, vl)


def masked_softmax(X: Any, valid_lens: Any) -> Any:
    """Softmax over the last axis of ``X`` (``(B, Q, K)``) with the keys at positions
    ``>= valid_lens`` left out: their scores are replaced by ``-1e6`` first (the
    book's ``masked_softmax``). ``valid_lens`` has shape ``(B,)`` (one length per
    batch element) or ``(B, Q)`` (one per query); None is the plain softmax.

    Examples
    --------
    >>> from d2lcompat import ops
    >>> X = ops.zeros((2, 1, 4))
    >>> (ops.to_numpy(ops.masked_softmax(X, ops.tensor([2, 3])))[:, 0] * 1000).round().tolist()
    [[500.0, 500.0, 0.0, 0.0], [333.0, 333.0, 333.0, 0.0]]
    """
    b = active()
    ops: Any = b.ops
    if valid_lens is None:
        return ops.softmax(X, axis=-1)
    shape = tuple(b.shape(X))
    keep = key_mask(valid_lens, shape, X, "masked_softmax")
    fill = b.full((), MASK_VALUE, b.dtype(X), device_for(b, X))
    return ops.softmax(ops.where(keep, X, fill), axis=-1)
