"""`Embedding`: a lookup table of ``input_dim`` vectors of size ``output_dim``.

The adapter's one primitive is `Backend.take` (``F.embedding``, ``tf.gather``,
``paddle.nn.functional.embedding``, ``jnp.take``).
"""

from __future__ import annotations

from typing import Any

from .. import ops as _ops
from .._errors import D2LCompatError
from .._parameter import Parameter
from .._registry import active
from ._block import Block

__all__ = ["Embedding"]

_INTEGER_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


class Embedding(Block):
    """Maps integer indices in ``[0, input_dim)`` to rows of ``weight``
    (``(input_dim, output_dim)``): an input of shape ``S`` gives ``S + (output_dim,)``.
    Float indices are truncated to integers, as in Gluon.

    Examples
    --------
    >>> from d2lcompat import nn, ops, init
    >>> emb = nn.Embedding(10, 4); emb.initialize(init.Constant(0.5))
    >>> ops.shape(emb(ops.tensor([[1, 2, 3]]))), emb.weight.shape
    ((1, 3, 4), (10, 4))
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        dtype: str = "float32",
        weight_initializer: Any = None,
    ) -> None:
        super().__init__()
        if int(input_dim) < 1 or int(output_dim) < 1:
            raise D2LCompatError(
                f"Embedding needs input_dim >= 1 and output_dim >= 1; got {input_dim}, "
                f"{output_dim}."
            )
        self._in, self._out = int(input_dim), int(output_dim)
        self.weight = Parameter((self._in, self._out), dtype=dtype, init=weight_initializer)

    def forward(self, x: Any) -> Any:
        b = active()
        # A tuple lookup, not str.startswith(tuple): Paddle's SOT traces the former
        # without a graph break.
        if b.dtype(x) not in _INTEGER_DTYPES:
            x = _ops.cast(x, "int64")
        return b.take(self.weight.data(), x)

    def _extra_repr(self) -> str:
        return f"{self._in} -> {self._out}"
