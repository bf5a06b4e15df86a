"""Small real datasets: scikit-learn's digits, and Fashion-MNIST / MNIST from IDX files.

Nothing here downloads anything: `digits` reads the copy bundled inside scikit-learn
(the optional extra ``.[data]``), `fashion_mnist` the files a user already has.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import DataError

__all__ = ["digits", "fashion_mnist", "read_idx"]

#: IDX type codes (the third byte of the magic number) -> big-endian NumPy dtypes.
_IDX_TYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 handwritten digits (1797 samples, 10 classes).

    Returns
    -------
    images : numpy.ndarray
        ``(1797, 1, 8, 8)`` float32 in [0, 1] (the 0..16 grey levels divided by 16).
    labels : numpy.ndarray
        ``(1797,)`` int64 in 0..9.

    Raises
    ------
    DataError
        When scikit-learn is not installed: ``pip install ".[data]" -c constraints.txt``.

    Examples
    --------
    >>> from d2lcompat import data
    >>> X, y = data.digits()
    >>> X.shape, X.dtype.name, y[:5].tolist()
    ((1797, 1, 8, 8), 'float32', [0, 1, 2, 3, 4])
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "d2lcompat.data.digits() reads the copy of the digits dataset bundled with "
            "scikit-learn, which is not installed. Install the data extra from the d2lcompat "
            'checkout: pip install ".[data]" -c constraints.txt'
        ) from None
    bunch: Any = load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return images, np.asarray(bunch.target, dtype=np.int64)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (the format of MNIST and Fashion-MNIST), plain or gzipped.

    Returns the array with the dimensions and the dtype the file declares (native
    byte order).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from d2lcompat import data
    >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte")
    >>> _ = open(path, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    >>> data.read_idx(path).tolist()
    [7, 2, 1]
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DataError(f"Cannot read the IDX file {p}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(
            f"{p} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}). Pass an "
            "MNIST/Fashion-MNIST '*-idx?-ubyte' file, gzipped or not."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{p}: truncated IDX header ({len(raw)} bytes for {ndim} dimensions).")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    want = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != want:
        raise DataError(
            f"{p}: the header declares shape {shape} of {dtype.str} ({want} bytes of data) "
            f"but the file holds {len(raw) - header}. The file is truncated or corrupt."
        )
    arr = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (root / name).is_file():
            return root / name
    raise DataError(
        f"No {stem}[.gz] in {root}. Put the Fashion-MNIST IDX files there (d2lcompat "
        "downloads nothing)."
    )


def fashion_mnist(
    root: str | os.PathLike[str], train: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST (or MNIST: same file names and format) from the IDX files in ``root``.

    Reads ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (``train=True``)
    or the ``t10k-`` pair, each optionally gzipped.

    Returns
    -------
    images : numpy.ndarray
        ``(N, 1, H, W)`` float32 in [0, 1].
    labels : numpy.ndarray
        ``(N,)`` int64.

    Examples
    --------
    >>> from d2lcompat import data
    >>> X, y = data.fashion_mnist("~/data/fashion-mnist")  # doctest: +SKIP
    >>> X.shape, y.shape  # doctest: +SKIP
    ((60000, 1, 28, 28), (60000,))
    """
    folder = Path(root).expanduser()
    prefix = "train" if train else "t10k"
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{folder}: expected images (N, H, W) and labels (N,); got {images.shape} and "
            f"{labels.shape}."
        )
    out = (images.astype(np.float32) / 255.0)[:, None, :, :]
    return out, labels.astype(np.int64)
