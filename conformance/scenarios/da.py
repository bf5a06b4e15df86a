"""DA — data (API.md §16)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

import d2lcompat
from d2lcompat import data, ops

from .._registry import Context, Unsupported, scenario


def _batches(loader: data.DataLoader) -> list[list[int]]:
    return [ops.to_numpy(b[1]).tolist() for b in loader]


@scenario("DA01", "DataLoader covers every sample once per epoch, honours drop_last, same seed same batches")
def da01(ctx: Context) -> None:
    n = 23
    X = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64)
    ds = data.ArrayDataset(X, y)
    plain = data.DataLoader(ds, batch_size=5)
    assert len(plain) == 5
    got = list(plain)
    assert [ops.shape(b[0]) for b in got] == [(5, 3)] * 4 + [(3, 3)]
    # int64 labels arrive as the backend holds int64 (int32 under JAX without x64)
    int64_here = ops.dtype(ops.tensor(np.zeros(1, np.int64)))
    assert ops.dtype(got[0][0]) == "float32" and ops.dtype(got[0][1]) == int64_here
    assert d2lcompat.device_of(got[0][0]) == d2lcompat.default_device()
    np.testing.assert_array_equal(np.concatenate([ops.to_numpy(b[0]) for b in got]), X)
    dropped = data.DataLoader(ds, batch_size=5, drop_last=True)
    assert len(dropped) == 4 and [len(b) for b in _batches(dropped)] == [5] * 4
    # Shuffled: every sample once per epoch; the order is NumPy's for that seed, so it is
    # the same on every backend; a new order each epoch; the same seed repeats it all.
    loader = data.DataLoader(ds, batch_size=4, shuffle=True, seed=7)
    epochs = [_batches(loader) for _ in range(3)]
    rng = np.random.default_rng(7)
    for epoch in epochs:
        flat = [i for b in epoch for i in b]
        assert sorted(flat) == list(range(n))
        assert flat == rng.permutation(n).tolist()
    assert epochs[0] != epochs[1]
    again = data.DataLoader(ds, batch_size=4, shuffle=True, seed=7)
    assert [_batches(again) for _ in range(3)] == epochs
    # Features stay with their labels.
    for xb, yb in data.DataLoader(ds, batch_size=6, shuffle=True, seed=1):
        np.testing.assert_array_equal(ops.to_numpy(xb)[:, 0], ops.to_numpy(yb) * 3)
    # Without a seed the order comes from d2lcompat.seed.
    d2lcompat.seed(5)
    a = _batches(data.DataLoader(ds, batch_size=4, shuffle=True))
    d2lcompat.seed(5)
    assert _batches(data.DataLoader(ds, batch_size=4, shuffle=True)) == a
    # No prefetch: the same batches.
    same = data.DataLoader(ds, batch_size=4, shuffle=True, seed=7, prefetch=False)
    assert _batches(same) == epochs[0]


def _idx(path: Path, arr: np.ndarray, code: int, gz: bool = False) -> None:
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@scenario("DA02", "digits loads with the documented shapes and labels; IDX (Fashion-MNIST) files read")
def da02(ctx: Context) -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise Unsupported(
            'scikit-learn is not installed: pip install ".[data]" -c constraints.txt'
        ) from None
    X, y = data.digits()
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert 0.0 <= X.min() and X.max() == 1.0
    assert sorted(set(y.tolist())) == list(range(10))
    assert np.bincount(y).min() >= 170
    assert y[:10].tolist() == list(range(10))
    # Fashion-MNIST from IDX files (written here: nothing is downloaded).
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 5).astype(np.uint8)
    root = Path(ctx.tmp)
    _idx(root / "train-images-idx3-ubyte", images, 0x08)
    _idx(root / "train-labels-idx1-ubyte.gz", labels, 0x08, gz=True)
    Xf, yf = data.fashion_mnist(root)
    assert Xf.shape == (5, 1, 28, 28) and Xf.dtype == np.float32 and yf.dtype == np.int64
    np.testing.assert_allclose(Xf[:, 0] * 255, images, atol=1e-4)
    assert yf.tolist() == labels.tolist()
    batch = next(iter(data.DataLoader(data.ArrayDataset(Xf, yf), batch_size=5)))
    assert ops.shape(batch[0]) == (5, 1, 28, 28)
