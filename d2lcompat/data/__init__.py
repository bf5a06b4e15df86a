"""Data (``d2lcompat.data``): datasets and a loader yielding native tensors.

* `ArrayDataset` and `DataLoader`: the same batches, in the same order, for the same
  seed on every backend (the order comes from a NumPy generator), with the next batch
  prepared in the background while the current one is used.
* `digits`: scikit-learn's bundled 8x8 handwritten digits (the ``data`` extra:
  ``pip install ".[data]" -c constraints.txt``); `fashion_mnist` and `read_idx`: Fashion-MNIST (or MNIST) from
  the IDX files a user already has. Nothing is ever downloaded.
* Text (chapter 9): `tokenize`, `Vocab`, `truncate_pad`, `SequenceLoader` (the book's
  random and sequential partitioning, seeded), `bleu`, `time_machine` (the user's copy).

Examples
--------
>>> import numpy as np
>>> from d2lcompat import data, ops
>>> ds = data.ArrayDataset(np.arange(10, dtype=np.float32), np.arange(10))
>>> [ops.to_numpy(y).tolist() for _, y in data.DataLoader(ds, batch_size=4)]
[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
"""

from .._errors import DataError
from ._datasets import digits, fashion_mnist, read_idx
from ._loader import ArrayDataset, DataLoader
from ._text import SequenceLoader, Vocab, bleu, time_machine, tokenize, truncate_pad

__all__ = [
    "ArrayDataset",
    "DataError",
    "DataLoader",
    "SequenceLoader",
    "Vocab",
    "bleu",
    "digits",
    "fashion_mnist",
    "read_idx",
    "time_machine",
    "tokenize",
    "truncate_pad",
]
