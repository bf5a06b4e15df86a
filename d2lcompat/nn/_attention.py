"""Attention (the book's chapter 11): `DotProductAttention`, `AdditiveAttention`,
`MultiHeadAttention`, `PositionalEncoding`.

Where is the fused kernel chosen? `attend`: it asks the adapter's one primitive
`Backend.attention` (torch's ``scaled_dot_product_attention``, ``jax.nn.
dot_product_attention``, Paddle's) and composes the same computation from the ops when
the adapter has none (TensorFlow), when the attention dropout is active (its mask comes
from d2lcompat's seeded generator, so that it is the same on every backend) or when the
adapter declines the shapes. Both paths give the book's numbers: masked keys get the
score -1e6, so a query whose valid length is 0 attends uniformly to every key
(docs/sequence.md, "Masking").
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np

from .. import _device
from .. import autograd as _autograd
from .. import ops as _ops
from .._errors import D2LCompatError, ShapeError
from .._registry import active
from ..ops._sequence import MASK_VALUE, device_for, key_mask, lengths_tensor
from ._block import Block
from ._layers import Dense, Dropout

__all__ = [
    "AdditiveAttention",
    "DotProductAttention",
    "MultiHeadAttention",
    "PositionalEncoding",
    "attend",
]


def _check_qkv(where: str, q: tuple[int, ...], k: tuple[int, ...], v: tuple[int, ...]) -> None:
    if q[0] != k[0] or k[0] != v[0] or k[1] != v[1] or q[-1] != k[-1] or q[2:-1] != k[2:-1]:
        raise ShapeError(
            f"{where}: queries {q}, keys {k} and values {v} do not fit; they need the same "
            "batch size, keys and values the same number of steps, and queries and keys "
            "the same number of features."
        )


def _mask4(valid_lens: Any, b: Any, shape: tuple[int, int, int], like: Any, where: str) -> Any:
    """The keep mask ``(B, 1, Q or 1, K)`` of ``valid_lens`` for scores ``(B, Q, K)``."""
    return _ops.expand_dims(key_mask(valid_lens, shape, like, where), 1)


def _composed(q: Any, k: Any, v: Any, keep: Any, dropout: Block | None) -> tuple[Any, Any]:
    """The book's attention from the ops: ``(output (B, Q, H, Dv), weights (B, H, Q, K))``."""
    b = active()
    d = b.shape(q)[-1]
    scores = _ops.matmul(_ops.transpose(q, (0, 2, 1, 3)), _ops.transpose(k, (0, 2, 3, 1)))
    scores = scores / math.sqrt(d)
    if keep is not None:
        scores = _ops.where(keep, scores, b.full((), MASK_VALUE, b.dtype(scores), device_for(b, scores)))
    weights = _ops.softmax(scores, axis=-1)
    dropped = weights if dropout is None else dropout(weights)
    out = _ops.matmul(dropped, _ops.transpose(v, (0, 2, 1, 3)))
    return _ops.transpose(out, (0, 2, 1, 3)), weights


def attend(q: Any, k: Any, v: Any, valid_lens: Any, dropout: Block | None = None,
           where: str = "attention") -> Any:
    """Scaled dot-product attention of ``q`` ``(B, Q, H, D)`` over ``k`` ``(B, K, H, D)``
    and ``v`` ``(B, K, H, Dv)``, keys at positions ``>= valid_lens`` (``(B,)`` or
    ``(B, Q)``, or None) masked as the book does; returns ``(B, Q, H, Dv)``.

    ``dropout`` (a `Dropout` block) is applied to the attention weights in training
    mode, as in the book; it forces the composed path.
    """
    b = active()
    qs, ks, vs = tuple(b.shape(q)), tuple(b.shape(k)), tuple(b.shape(v))
    if len(qs) != 4 or len(ks) != 4 or len(vs) != 4:
        raise ShapeError(f"{where}: expects (batch, steps, heads, features) tensors; got {qs}, {ks}, {vs}.")
    _check_qkv(where, qs, ks, vs)
    dropping = dropout is not None and getattr(dropout, "_rate", 0.0) > 0.0 and _autograd.is_training()
    if not dropping:
        keep = None
        if valid_lens is not None:
            # A query with no valid key attends uniformly to every key in the book (all
            # scores -1e6). The fused kernel gets that case as "keep every key" with a
            # zero query (all scores 0): the same weights, the same gradients.
            vl = lengths_tensor(valid_lens, (qs[0], qs[1], ks[1]), q, where)
            some = _ops.greater(vl, b.full((), 0.0, "float32", device_for(b, vl)))
            vl = _ops.where(some, vl, b.full((), float(ks[1]), "float32", device_for(b, vl)))
            keep = _mask4(vl, b, (qs[0], qs[1], ks[1]), q, where)
            lshape = tuple(b.shape(some))
            scale = _ops.reshape(b.cast(some, b.dtype(q)), lshape + (1,) * (4 - len(lshape)))
            fused = b.attention(q * scale, k, v, keep)
        else:
            fused = b.attention(q, k, v, None)
        if fused is not None:
            return fused
    keep = None if valid_lens is None else _mask4(valid_lens, b, (qs[0], qs[1], ks[1]), q, where)
    out, _ = _composed(q, k, v, keep, dropout if dropping else None)
    return out


class _WeightsRecord:
    """What `DotProductAttention.attention_weights` recomputes the weights from."""

    __slots__ = ("k", "q", "valid_lens")

    def __init__(self, q: Any, k: Any, valid_lens: Any) -> None:
        self.q, self.k, self.valid_lens = q, k, valid_lens


class DotProductAttention(Block):
    """Scaled dot-product attention (the book's §11.3): ``softmax(Q Kᵀ / sqrt(d)) V``
    with the keys beyond ``valid_lens`` masked and dropout on the weights.

    ``attn(queries (B, Q, d), keys (B, K, d), values (B, K, v), valid_lens=None)``
    returns ``(B, Q, v)``; ``valid_lens`` is ``(B,)`` or ``(B, Q)``. It runs the
    framework's fused kernel where there is one (`attend`). ``attention_weights``
    (``(B, Q, K)``, before dropout, as in the book) is computed from the last call's
    queries and keys when read.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> attn = nn.DotProductAttention(dropout=0.5)
    >>> q, kv = ops.ones((2, 1, 2)), ops.reshape(ops.arange(20, dtype="float32"), (2, 10, 1))
    >>> out = attn(q, ops.ones((2, 10, 2)), kv, ops.tensor([2, 6]))
    >>> ops.to_numpy(out).ravel().tolist()
    [0.5, 12.5]
    >>> ops.shape(attn.attention_weights)
    (2, 1, 10)
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = Dropout(dropout)
        self._record: _WeightsRecord | None = None

    def forward(self, queries: Any, keys: Any, values: Any, valid_lens: Any = None) -> Any:
        b = active()
        qs, ks, vs = tuple(b.shape(queries)), tuple(b.shape(keys)), tuple(b.shape(values))
        if len(qs) != 3 or len(ks) != 3 or len(vs) != 3:
            raise ShapeError(
                f"{self._describe()} expects queries (batch, queries, d), keys (batch, keys, d) "
                f"and values (batch, keys, v); got {qs}, {ks}, {vs}."
            )
        q = _ops.reshape(queries, (qs[0], qs[1], 1, qs[2]))
        k = _ops.reshape(keys, (ks[0], ks[1], 1, ks[2]))
        v = _ops.reshape(values, (vs[0], vs[1], 1, vs[2]))
        out = self.attend_heads(q, k, v, valid_lens)
        return _ops.reshape(out, (qs[0], qs[1], vs[2]))

    def attend_heads(self, q: Any, k: Any, v: Any, valid_lens: Any) -> Any:
        """`attend` over ``(B, steps, heads, features)`` tensors (what `MultiHeadAttention`
        calls: no reshaping of the heads into the batch), recording the weights."""
        object.__setattr__(self, "_record", _WeightsRecord(q, k, valid_lens))
        return attend(q, k, v, valid_lens, self.dropout, self._describe())

    @property
    def attention_weights(self) -> Any:
        """The last call's attention weights, ``(B * heads, Q, K)`` (the book's layout:
        heads of one batch element next to each other), before dropout."""
        rec = self._record
        if rec is None:
            raise D2LCompatError(f"{self._describe()} has no attention weights yet: call it first.")
        b = active()
        qs, ks = tuple(b.shape(rec.q)), tuple(b.shape(rec.k))
        # Recomputed outside the forward: in the backend's scope for the queries' device
        # (several devices in one process), as a forward pass would run.
        scope = b.forward_scope((rec.q,))
        with scope if scope is not None else contextlib.nullcontext():
            keep = None if rec.valid_lens is None else _mask4(
                rec.valid_lens, b, (qs[0], qs[1], ks[1]), rec.q, self._describe())
            _, weights = _composed(rec.q, rec.k, rec.k, keep, None)
            return _ops.reshape(weights, (qs[0] * qs[2], qs[1], ks[1]))

    def _extra_repr(self) -> str:
        return f"dropout={self.dropout._rate}"


class AdditiveAttention(Block):
    """Additive attention (the book's §11.3.2, MXNet tab): ``w_vᵀ tanh(W_q q + W_k k)``
    scores, masked softmax, dropout, weighted values. Children ``W_k``, ``W_q``, ``w_v``
    (``Dense`` without bias, ``flatten=False``).

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> attn = nn.AdditiveAttention(num_hiddens=8, dropout=0.1); attn.initialize()
    >>> q, k = ops.ones((2, 1, 20)), ops.ones((2, 10, 2))
    >>> v = ops.reshape(ops.arange(80, dtype="float32"), (2, 10, 4))
    >>> ops.shape(attn(q, k, v, ops.tensor([2, 6]))), list(attn.collect_params())
    ((2, 1, 4), ['W_k.weight', 'W_q.weight', 'w_v.weight'])
    """

    def __init__(self, num_hiddens: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.W_k = Dense(num_hiddens, use_bias=False, flatten=False)
        self.W_q = Dense(num_hiddens, use_bias=False, flatten=False)
        self.w_v = Dense(1, use_bias=False, flatten=False)
        self.dropout = Dropout(dropout)
        self.attention_weights: Any = None

    def forward(self, queries: Any, keys: Any, values: Any, valid_lens: Any = None) -> Any:
        queries, keys = self.W_q(queries), self.W_k(keys)
        features = _ops.tanh(_ops.expand_dims(queries, 2) + _ops.expand_dims(keys, 1))
        scores = _ops.squeeze(self.w_v(features), axis=-1)
        weights = _ops.masked_softmax(scores, valid_lens)
        object.__setattr__(self, "attention_weights", weights)
        return _ops.matmul(self.dropout(weights), values)


class MultiHeadAttention(Block):
    """Multi-head attention (the book's §11.5, MXNet tab): ``W_q``, ``W_k``, ``W_v``
    project to ``num_hiddens`` features split into ``num_heads`` heads, each head runs
    `DotProductAttention` (``attention``), ``W_o`` mixes the concatenated heads. All
    four are ``Dense(num_hiddens, use_bias=use_bias, flatten=False)``.

    ``attn(queries (B, Q, dq), keys (B, K, dk), values (B, K, dv), valid_lens)``
    returns ``(B, Q, num_hiddens)``; ``valid_lens`` is ``(B,)``, ``(B, Q)`` or None.
    The heads stay a separate axis all the way to the fused kernel (no repeat of
    ``valid_lens`` per head, no copy into the batch axis); the numbers are the book's.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> attn = nn.MultiHeadAttention(num_hiddens=100, num_heads=5, dropout=0.5)
    >>> attn.initialize()
    >>> X, Y = ops.ones((2, 4, 100)), ops.ones((2, 6, 100))
    >>> ops.shape(attn(X, Y, Y, ops.tensor([3, 2])))
    (2, 4, 100)
    >>> [k for k in attn.collect_params()]
    ['W_q.weight', 'W_k.weight', 'W_v.weight', 'W_o.weight']
    """

    def __init__(self, num_hiddens: int, num_heads: int, dropout: float = 0.0, use_bias: bool = False) -> None:
        super().__init__()
        if int(num_heads) < 1 or int(num_hiddens) % int(num_heads):
            raise D2LCompatError(
                f"MultiHeadAttention: num_hiddens={num_hiddens} must be a positive multiple "
                f"of num_heads={num_heads} (each head gets num_hiddens / num_heads features)."
            )
        self.num_heads = int(num_heads)
        self.attention = DotProductAttention(dropout)
        self.W_q = Dense(num_hiddens, use_bias=use_bias, flatten=False)
        self.W_k = Dense(num_hiddens, use_bias=use_bias, flatten=False)
        self.W_v = Dense(num_hiddens, use_bias=use_bias, flatten=False)
        self.W_o = Dense(num_hiddens, use_bias=use_bias, flatten=False)

    def _heads(self, x: Any) -> Any:
        b = active()
        s = tuple(b.shape(x))
        if len(s) != 3:
            raise ShapeError(
                f"{self._describe()} expects (batch, steps, features) inputs; got shape {s}."
            )
        h = self.num_heads
        return _ops.reshape(x, (s[0], s[1], h, s[2] // h))

    def forward(self, queries: Any, keys: Any, values: Any, valid_lens: Any = None) -> Any:
        q = self._heads(self.W_q(queries))
        k = self._heads(self.W_k(keys))
        v = self._heads(self.W_v(values))
        out = self.attention.attend_heads(q, k, v, valid_lens)
        s = tuple(active().shape(out))
        return self.W_o(_ops.reshape(out, (s[0], s[1], s[2] * s[3])))

    def transpose_qkv(self, X: Any) -> Any:
        """The book's helper: ``(B, T, num_hiddens)`` to ``(B * num_heads, T, num_hiddens
        / num_heads)``."""
        X = self._heads(X)
        s = tuple(active().shape(X))
        return _ops.reshape(_ops.transpose(X, (0, 2, 1, 3)), (s[0] * s[2], s[1], s[3]))

    def transpose_output(self, X: Any) -> Any:
        """The book's helper, the reverse of `transpose_qkv`."""
        s = tuple(active().shape(X))
        h = self.num_heads
        X = _ops.reshape(X, (s[0] // h, h, s[1], s[2]))
        return _ops.reshape(_ops.transpose(X, (0, 2, 1, 3)), (s[0] // h, s[1], h * s[2]))

    def _extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"


def positional_table(max_len: int, num_hiddens: int) -> np.ndarray:
    """The book's ``P`` (``(1, max_len, num_hiddens)`` float32): ``sin(i / 10000^(2j/d))``
    in column ``2j``, ``cos`` of the same in column ``2j + 1`` (computed in float64)."""
    P = np.zeros((1, max_len, num_hiddens), dtype=np.float64)
    X = np.arange(max_len, dtype=np.float64).reshape(-1, 1) / np.power(
        10000.0, np.arange(0, num_hiddens, 2, dtype=np.float64) / num_hiddens)
    P[0, :, 0::2] = np.sin(X)
    P[0, :, 1::2] = np.cos(X[:, : num_hiddens // 2])
    return P.astype(np.float32)


class PositionalEncoding(Block):
    """The book's sinusoidal positional encoding (§11.6.3): ``X + P[:, :T, :]`` then
    dropout, ``P[0, i, 2j] = sin(i / 10000^(2j/d))``, ``P[0, i, 2j+1] = cos(...)``.
    ``P`` is a constant table, not a parameter (not saved). ``pe(X, offset=t)`` adds
    the rows ``t .. t + T - 1`` instead: what a decoder fed one token at a time needs
    (the book's always adds row 0 there, docs/sequence.md).

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> pe = nn.PositionalEncoding(num_hiddens=4, dropout=0.0)
    >>> [round(float(v), 3) for v in ops.to_numpy(pe(ops.zeros((1, 2, 4))))[0, 1]]
    [0.841, 0.54, 0.01, 1.0]
    """

    def __init__(self, num_hiddens: int, dropout: float = 0.0, max_len: int = 1000) -> None:
        super().__init__()
        if int(num_hiddens) < 1 or int(max_len) < 1:
            raise D2LCompatError(
                f"PositionalEncoding needs num_hiddens >= 1 and max_len >= 1; got "
                f"{num_hiddens}, {max_len}."
            )
        self.dropout = Dropout(dropout)
        self._table = positional_table(int(max_len), int(num_hiddens))
        # On d2lcompat's default device, where the parameters are created: P is an input
        # of a compiled function beside them (a tensor attribute).
        self._P = active().from_numpy(self._table, "float32", _device.resolve(None))

    @property
    def P(self) -> Any:
        """The table ``(1, max_len, num_hiddens)`` as a native tensor (the book's ``P``)."""
        return self._P

    def forward(self, X: Any, offset: int = 0) -> Any:
        b = active()
        s = tuple(b.shape(X))
        _, max_len, d = self._table.shape
        offset = int(offset)
        if len(s) != 3 or s[2] != d or offset < 0 or offset + s[1] > max_len:
            raise ShapeError(
                f"{self._describe()} expects (batch, steps, {d}) inputs with offset + steps "
                f"<= max_len = {max_len}; got shape {s} at offset {offset}. Pass max_len= for "
                "longer sequences."
            )
        P = self._P
        if b.dtype(X) != "float32":
            P = b.cast(P, b.dtype(X))
        dev = device_for(b, X)
        # P is a tensor attribute: an input (traced) of a compiled function too.
        if dev is not None and not b.is_traced(P) and b.device_of(P) != dev:
            P = b.move(P, dev, copy=False)
        return self.dropout(X + P[:, offset: offset + s[1], :])

    def _extra_repr(self) -> str:
        return f"num_hiddens={self._table.shape[2]}, max_len={self._table.shape[1]}"
