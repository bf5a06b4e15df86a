"""`ArrayDataset` and `DataLoader`.

Where is the batch order decided? `DataLoader._order`: a permutation drawn on the host
from a NumPy generator (the loader's own, seeded by ``seed``, or d2lcompat's seeded
generator), so it is the same on every backend. Where is the prefetch? `DataLoader.__iter__`
hands the gathering and the conversion of the next batch to a one-worker
`concurrent.futures.ThreadPoolExecutor` while the caller works on the current one (NumPy
fancy indexing and the host-to-device copy release the GIL).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .. import _device
from .._errors import DataError
from .._random import generator
from .._registry import active

__all__ = ["ArrayDataset", "DataLoader"]


def _host(array: Any) -> np.ndarray:
    b = active()
    return b.to_numpy(array) if b.is_tensor(array) else np.asarray(array)


class ArrayDataset:
    """Samples made of rows of equally long arrays (NumPy arrays, lists or native
    tensors; kept on the host): ``dataset[i]`` is the tuple of the ``i``-th rows (one
    array: the row itself).

    Examples
    --------
    >>> import numpy as np
    >>> from d2lcompat import data
    >>> ds = data.ArrayDataset(np.zeros((5, 2)), np.arange(5))
    >>> len(ds), ds[3][1]
    (5, 3)
    """

    def __init__(self, *arrays: Any) -> None:
        if not arrays:
            raise DataError("ArrayDataset needs at least one array.")
        hosts = []
        for i, a in enumerate(arrays):
            try:
                hosts.append(_host(a))
            except ValueError as exc:  # a ragged list: NumPy's "inhomogeneous shape"
                raise DataError(
                    f"ArrayDataset: array {i} cannot be made one NumPy array ({exc}). Pass "
                    "arrays whose rows all have the same shape."
                ) from None
        self.arrays: tuple[np.ndarray, ...] = tuple(hosts)
        lengths = [len(a) if a.ndim else 0 for a in self.arrays]
        if len(set(lengths)) != 1:
            raise DataError(
                f"ArrayDataset needs arrays of the same length (first axis); got lengths "
                f"{lengths}. Pass features and labels of the same samples."
            )
        self._n = lengths[0]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> Any:
        rows = tuple(a[index] for a in self.arrays)
        return rows[0] if len(rows) == 1 else rows

    def take(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        """The rows at ``indices`` of every array (one fancy-indexing copy each)."""
        return tuple(a[indices] for a in self.arrays)


def _stack(dataset: Any, indices: np.ndarray) -> tuple[np.ndarray, ...]:
    """Any dataset with ``__len__``/``__getitem__``: its samples stacked field by field."""
    samples = [dataset[int(i)] for i in indices]
    if not isinstance(samples[0], tuple):
        return (np.stack([_host(s) for s in samples]),)
    return tuple(np.stack([_host(s[k]) for s in samples]) for k in range(len(samples[0])))


class DataLoader:
    """Mini-batches of a dataset as native tensors on the default device.

    Parameters
    ----------
    dataset : ArrayDataset or any object with ``__len__`` and ``__getitem__``
    batch_size : int
    shuffle : bool
        A new order each epoch, drawn from the loader's generator.
    drop_last : bool
        Drop the last batch when it is smaller than ``batch_size``.
    seed : int, optional
        Seeds the loader's own generator: the same seed gives the same batches in the
        same order, epoch after epoch, on every backend. None draws from d2lcompat's
        generator (`d2lcompat.seed`).
    prefetch : bool
        Prepare the next batch in a background thread while the current one is used.

    Each batch is a tuple with one tensor per array of the dataset (a single tensor
    for a one-array dataset), dtypes unchanged (float32 images, int64 labels).

    Examples
    --------
    >>> import numpy as np
    >>> from d2lcompat import data, ops
    >>> ds = data.ArrayDataset(np.arange(10))
    >>> loader = data.DataLoader(ds, batch_size=4, shuffle=True, drop_last=True, seed=0)
    >>> len(loader), [ops.shape(x) for x in loader]
    (2, [(4,), (4,)])
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
        prefetch: bool = True,
    ) -> None:
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int | np.integer)
            or batch_size < 1
        ):
            raise DataError(
                f"DataLoader: batch_size must be a positive int (samples per batch); "
                f"received {batch_size!r}."
            )
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise DataError(
                f"DataLoader needs a dataset with __len__ and __getitem__; got "
                f"{type(dataset).__name__}. Wrap arrays in data.ArrayDataset."
            )
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.prefetch = bool(prefetch)
        self._rng = None if seed is None else np.random.default_rng(int(seed))

    def __len__(self) -> int:
        n, bs = len(self.dataset), self.batch_size
        return n // bs if self.drop_last else -(-n // bs)

    def _order(self) -> list[np.ndarray]:
        n = len(self.dataset)
        if self.shuffle:
            rng = self._rng if self._rng is not None else generator()
            order = rng.permutation(n)
        else:
            order = np.arange(n)
        bs = self.batch_size
        stop = (n // bs) * bs if self.drop_last else n
        return [order[i : i + bs] for i in range(0, stop, bs)]

    def _load(self, indices: np.ndarray, device: tuple[str, int] | None) -> Any:
        ds = self.dataset
        fields: Sequence[np.ndarray] = (
            ds.take(indices) if isinstance(ds, ArrayDataset) else _stack(ds, indices)
        )
        b = active()
        out = tuple(b.from_numpy(f, None, device) for f in fields)
        return out[0] if len(out) == 1 else out

    def __iter__(self) -> Iterator[Any]:
        batches = self._order()  # drawn now, so the order never depends on timing
        device = _device.resolve(None)
        if not self.prefetch or len(batches) < 2:
            for idx in batches:
                yield self._load(idx, device)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="d2lcompat-prefetch") as pool:
            pending: Future[Any] = pool.submit(self._load, batches[0], device)
            for idx in batches[1:]:
                current, pending = pending, pool.submit(self._load, idx, device)
                yield current.result()
            yield pending.result()
