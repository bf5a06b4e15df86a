"""Blocks (``d2lcompat.nn``): the Gluon vocabulary of Dive into Deep Learning, chapter 5."""

from ._attention import (
    AdditiveAttention,
    DotProductAttention,
    MultiHeadAttention,
    PositionalEncoding,
)
from ._block import Block, ParameterDict
from ._conv import Conv1D, Conv2D
from ._embedding import Embedding
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
from ._norm import BatchNorm, LayerNorm
from ._pool import AvgPool1D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool1D, MaxPool2D
from ._rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from ._transformer import AddNorm, PositionWiseFFN, TransformerDecoderBlock, TransformerEncoderBlock

__all__ = [
    "Activation",
    "AddNorm",
    "AdditiveAttention",
    "AvgPool1D",
    "AvgPool2D",
    "BatchNorm",
    "Block",
    "BlockDict",
    "BlockList",
    "Conv1D",
    "Conv2D",
    "Dense",
    "DotProductAttention",
    "Dropout",
    "Embedding",
    "Flatten",
    "GRU",
    "GRUCell",
    "GlobalAvgPool2D",
    "GlobalMaxPool2D",
    "Lambda",
    "LSTM",
    "LSTMCell",
    "LayerNorm",
    "MaxPool1D",
    "MaxPool2D",
    "MultiHeadAttention",
    "ParameterDict",
    "ParameterList",
    "PositionWiseFFN",
    "PositionalEncoding",
    "RNN",
    "RNNCell",
    "Sequential",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
]
