"""d2lcompat.data: ArrayDataset, DataLoader, digits and the IDX reader (DA01/DA02 cover
the cross-backend guarantees; these cover the mechanics and the errors)."""

from __future__ import annotations

import gzip
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import data, ops
from d2lcompat._registry import active


def _idx(path: Path, arr: np.ndarray, code: int = 0x08) -> Path:
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(head + arr.astype(arr.dtype.newbyteorder(">")).tobytes())
    return path


def test_loader_yields_native_tensors_with_dtypes_kept() -> None:
    ds = data.ArrayDataset(np.zeros((7, 2), np.float32), np.arange(7), [1.5] * 7)
    batches = list(data.DataLoader(ds, batch_size=3))
    assert len(batches) == 3
    x, y, z = batches[0]
    assert all(active().is_tensor(t) for t in (x, y, z))
    # 64-bit values arrive as the backend holds them (32-bit under JAX without x64)
    from d2lcompat._dtypes import stored_as

    have = active().SUPPORTED_DTYPES
    assert (ops.dtype(x), ops.dtype(y), ops.shape(batches[-1][0])) == (
        "float32", stored_as("int64", have), (1, 2))
    assert ops.dtype(z) == stored_as("float64", have)


def test_single_array_dataset_yields_single_tensors() -> None:
    loader = data.DataLoader(data.ArrayDataset(np.arange(5)), batch_size=2, drop_last=True)
    assert [ops.to_numpy(b).tolist() for b in loader] == [[0, 1], [2, 3]]


def test_native_tensors_are_accepted_and_any_dataset_works() -> None:
    ds = data.ArrayDataset(ops.arange(6, dtype="float32"), ops.arange(6))
    assert float(ds[2][0]) == 2.0

    class Squares:
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
            return np.full((2,), i * i, np.float32), i

    (x, y), = list(data.DataLoader(Squares(), batch_size=4))
    assert ops.to_numpy(x)[:, 0].tolist() == [0, 1, 4, 9] and ops.to_numpy(y).tolist() == [0, 1, 2, 3]


def test_prefetch_prepares_the_next_batch_while_the_step_runs() -> None:
    seen: list[str] = []

    class Slow:
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> np.ndarray:
            seen.append(threading.current_thread().name)
            return np.array([i], np.float32)

    loader = data.DataLoader(Slow(), batch_size=1)
    it = iter(loader)
    next(it)
    time.sleep(0.2)  # the "step": meanwhile the worker gathers the next batch
    assert len(seen) >= 2
    assert all(name.startswith("d2lcompat-prefetch") for name in seen)
    assert len(list(it)) == 3
    serial: list[str] = []
    Slow.__getitem__ = lambda self, i: serial.append(threading.current_thread().name) or np.zeros(1)  # type: ignore[method-assign]
    list(data.DataLoader(Slow(), batch_size=1, prefetch=False))
    assert set(serial) == {threading.current_thread().name}


def test_loader_errors() -> None:
    with pytest.raises(data.DataError, match="same length"):
        data.ArrayDataset(np.zeros(3), np.zeros(4))
    with pytest.raises(data.DataError, match="batch_size"):
        data.DataLoader(data.ArrayDataset(np.zeros(3)), batch_size=0)
    with pytest.raises(data.DataError, match="__len__ and __getitem__"):
        data.DataLoader(42, batch_size=2)
    assert issubclass(data.DataError, d2lcompat.D2LCompatError)


def test_seeded_order_is_numpys() -> None:
    ds = data.ArrayDataset(np.arange(10))
    got = [ops.to_numpy(b).tolist() for b in data.DataLoader(ds, 4, shuffle=True, seed=11)]
    want = np.random.default_rng(11).permutation(10)
    assert sum(got, []) == want.tolist()


def test_read_idx_plain_gzip_and_dtypes(tmp_path: Path) -> None:
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert data.read_idx(_idx(tmp_path / "a-idx3-ubyte", a)).tolist() == a.tolist()
    f = np.linspace(-1, 1, 6).astype(np.float32).reshape(2, 3)
    g = tmp_path / "f.gz"
    raw = bytes([0, 0, 0x0D, 2]) + struct.pack(">2I", 2, 3) + f.astype(">f4").tobytes()
    g.write_bytes(gzip.compress(raw))
    out = data.read_idx(g)
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, f)


def test_read_idx_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(data.DataError, match="not an IDX file"):
        data.read_idx(bad)
    short = _idx(tmp_path / "short", np.arange(10, dtype=np.uint8))
    short.write_bytes(short.read_bytes()[:-3])
    with pytest.raises(data.DataError, match="truncated or corrupt"):
        data.read_idx(short)
    with pytest.raises(data.DataError, match="Cannot read"):
        data.read_idx(tmp_path / "missing")


def test_fashion_mnist_reader(tmp_path: Path) -> None:
    imgs = np.random.default_rng(0).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    _idx(tmp_path / "t10k-images-idx3-ubyte", imgs)
    _idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([9, 0, 3], np.uint8))
    X, y = data.fashion_mnist(tmp_path, train=False)
    assert X.shape == (3, 1, 28, 28) and X.dtype == np.float32 and X.max() <= 1.0
    assert y.tolist() == [9, 0, 3] and y.dtype == np.int64
    with pytest.raises(data.DataError, match="train-images-idx3-ubyte"):
        data.fashion_mnist(tmp_path, train=True)


def test_digits(monkeypatch: Any) -> None:
    pytest.importorskip("sklearn", reason="the [data] extra is not installed")
    X, y = data.digits()
    assert X.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    import builtins

    real = builtins.__import__

    def no_sklearn(name: str, *args: Any, **kw: Any) -> Any:
        if name.startswith("sklearn"):
            raise ImportError(name)
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(data.DataError, match=r'pip install "\.\[data\]" -c constraints.txt'):
        data.digits()
