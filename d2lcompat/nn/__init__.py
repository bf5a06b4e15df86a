"""Blocks (``d2lcompat.nn``): the Gluon vocabulary of Dive into Deep Learning, chapter 5."""

from ._block import Block, ParameterDict
from ._layers import (
    Activation,
    BlockDict,
    BlockList,
    Dense,
    Dropout,
    Flatten,
    Lambda,
    ParameterList,
    Sequential,
)

__all__ = [
    "Activation",
    "Block",
    "BlockDict",
    "BlockList",
    "Dense",
    "Dropout",
    "Flatten",
    "Lambda",
    "ParameterDict",
    "ParameterList",
    "Sequential",
]
