"""Reading Keras 3 ``.weights.h5`` files (``model.save_weights(path)``) with h5py.

Only *how* to read lives here; the core (`d2lcompat._io`) maps the Keras paths
(``layers/dense_1/vars/0``) to structural names and transposes kernels.
"""

from __future__ import annotations

from typing import Any

_HDF5 = b"\x89HDF\r\n\x1a\n"


def read_keras_weights(path: str) -> tuple[str, dict[str, Any]] | None:
    """``("keras", {h5 path: array})`` for every dataset of a Keras 3 weights file, in
    file order; None when ``path`` is not an HDF5 file."""
    with open(path, "rb") as f:
        if f.read(8) != _HDF5:
            return None
    import h5py

    out: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    if not out:
        raise ValueError("the HDF5 file holds no weights")
    return "keras", out
