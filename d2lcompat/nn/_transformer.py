"""The Transformer's blocks (the book's §11.7, MXNet tab): `AddNorm`, `PositionWiseFFN`,
`TransformerEncoderBlock`, `TransformerDecoderBlock`. Same names, children and state
handling as the book, so its encoder and decoder classes run unchanged on top."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import autograd as _autograd
from .. import ops as _ops
from .._registry import active
from ..ops._sequence import device_for
from ._attention import MultiHeadAttention
from ._block import Block
from ._layers import Dense, Dropout
from ._norm import LayerNorm

__all__ = ["AddNorm", "PositionWiseFFN", "TransformerDecoderBlock", "TransformerEncoderBlock"]


class PositionWiseFFN(Block):
    """The position-wise feed-forward network: ``dense2(relu(dense1(X)))`` over the last
    axis (``Dense(..., flatten=False)``).

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> ffn = nn.PositionWiseFFN(4, 8); ffn.initialize()
    >>> ops.shape(ffn(ops.ones((2, 3, 4))))
    (2, 3, 8)
    """

    def __init__(self, ffn_num_hiddens: int, ffn_num_outputs: int) -> None:
        super().__init__()
        self.dense1 = Dense(ffn_num_hiddens, flatten=False, activation="relu")
        self.dense2 = Dense(ffn_num_outputs, flatten=False)

    def forward(self, X: Any) -> Any:
        return self.dense2(self.dense1(X))


class AddNorm(Block):
    """Residual connection then layer normalization: ``ln(dropout(Y) + X)``.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> add_norm = nn.AddNorm(0.5); add_norm.initialize()
    >>> ops.shape(add_norm(ops.ones((2, 3, 4)), ops.ones((2, 3, 4))))
    (2, 3, 4)
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = Dropout(dropout)
        self.ln = LayerNorm()

    def forward(self, X: Any, Y: Any) -> Any:
        return self.ln(self.dropout(Y) + X)


class TransformerEncoderBlock(Block):
    """One Transformer encoder block: self-attention with ``valid_lens`` then the
    position-wise FFN, each followed by `AddNorm`.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> blk = nn.TransformerEncoderBlock(24, 48, 8, 0.5); blk.initialize()
    >>> ops.shape(blk(ops.ones((2, 100, 24)), ops.tensor([3, 2])))
    (2, 100, 24)
    """

    def __init__(
        self, num_hiddens: int, ffn_num_hiddens: int, num_heads: int, dropout: float = 0.0,
        use_bias: bool = False,
    ) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(num_hiddens, num_heads, dropout, use_bias)
        self.addnorm1 = AddNorm(dropout)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, num_hiddens)
        self.addnorm2 = AddNorm(dropout)

    def forward(self, X: Any, valid_lens: Any = None) -> Any:
        Y = self.addnorm1(X, self.attention(X, X, X, valid_lens))
        return self.addnorm2(Y, self.ffn(Y))


class TransformerDecoderBlock(Block):
    """The ``i``-th Transformer decoder block: masked self-attention, encoder-decoder
    attention, FFN, each followed by `AddNorm`.

    ``blk(X, state)`` returns ``(output, state)``; ``state`` is the book's list
    ``[enc_outputs, enc_valid_lens, [cache of block 0, block 1, ...]]``. The block
    appends ``X`` to its cache ``state[2][i]`` (None at the start) and attends to the
    whole cache, so greedy decoding feeds one step at a time. In training mode
    (``autograd.record()``) query ``t`` sees keys ``0..t`` only (valid lengths
    ``1..T``); in predict mode every cached key.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> enc = ops.ones((2, 100, 24))
    >>> blk = nn.TransformerDecoderBlock(24, 48, 8, 0.5, 0); blk.initialize()
    >>> state = [enc, ops.tensor([3, 2]), [None]]
    >>> Y, state = blk(ops.ones((2, 100, 24)), state)
    >>> ops.shape(Y), ops.shape(state[2][0])
    ((2, 100, 24), (2, 100, 24))
    """

    def __init__(
        self, num_hiddens: int, ffn_num_hiddens: int, num_heads: int, dropout: float, i: int
    ) -> None:
        super().__init__()
        self.i = int(i)
        self.attention1 = MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.addnorm1 = AddNorm(dropout)
        self.attention2 = MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.addnorm2 = AddNorm(dropout)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, num_hiddens)
        self.addnorm3 = AddNorm(dropout)

    def forward(self, X: Any, state: Any) -> Any:
        b = active()
        enc_outputs, enc_valid_lens = state[0], state[1]
        if state[2][self.i] is None:
            key_values = X
        else:
            key_values = _ops.concat([state[2][self.i], X], axis=1)
        state[2][self.i] = key_values
        if _autograd.is_training():
            batch_size, num_steps = b.shape(X)[:2]
            lens = np.tile(np.arange(1, num_steps + 1, dtype=np.float32), (batch_size, 1))
            dec_valid_lens = b.from_numpy(lens, "float32", device_for(b, X))
        else:
            dec_valid_lens = None
        X2 = self.attention1(X, key_values, key_values, dec_valid_lens)
        Y = self.addnorm1(X, X2)
        Y2 = self.attention2(Y, enc_outputs, enc_outputs, enc_valid_lens)
        Z = self.addnorm2(Y, Y2)
        return self.addnorm3(Z, self.ffn(Z)), state
