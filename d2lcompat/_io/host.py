"""Host values: constants of the format, tensors on the host, dtype narrowing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import CheckpointError, D2LCompatError
from .._registry import active

if TYPE_CHECKING:
    pass

from . import stformat as _stformat

FORMAT_VERSION = 1

META_FORMAT = "d2lcompat.format"
META_VERSION = "d2lcompat.version"
META_BACKEND = "d2lcompat.backend"
META_KIND = "d2lcompat.kind"
META_STRUCTURE = "d2lcompat.structure"
META_SOURCE = "d2lcompat.source"

PathLike = str | os.PathLike[str]

_CODES = _stformat.CODES
_storage_dtype = _stformat.storage_dtype


# ------------------------------------------------------------------ host values
@dataclass(frozen=True)
class _Entry:
    """One tensor on the host: a little-endian NumPy array; bfloat16 is held as its
    uint16 bit patterns, so that no NumPy bfloat16 type (ml_dtypes) is needed."""

    dtype: str
    array: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    def describe(self) -> str:
        return f"shape {self.shape}, {self.dtype}"


def _entry_from_numpy(arr: np.ndarray, what: str) -> _Entry:
    from .._dtypes import canonical

    if arr.dtype.name == "bfloat16":  # an ml_dtypes array: keep the bits
        return _Entry("bfloat16", np.asarray(arr, order="C").view(np.uint16).astype("<u2"))
    try:
        dtype = canonical(arr.dtype)
    except D2LCompatError:
        raise CheckpointError(
            f"Cannot save {what}: its dtype {arr.dtype} is not one d2lcompat stores "
            f"({', '.join(_CODES.values())}). Cast it first (ops.cast(x, 'float32'))."
        ) from None
    return _Entry(dtype, np.asarray(arr, dtype=_storage_dtype(dtype), order="C"))


def _entry_from_native(x: Any, what: str) -> _Entry:
    """A native tensor (or a NumPy array) on the host, dtype unchanged; no copy where
    the framework can lend its host memory (`Backend.host_view`)."""
    b = active()
    if isinstance(x, (np.ndarray, np.generic)):
        return _entry_from_numpy(np.asarray(x), what)
    if not b.is_tensor(x):
        raise CheckpointError(
            f"Cannot save {what}: expected a {b.name} tensor or a NumPy array, received "
            f"{type(x).__name__}. Convert it with d2lcompat.ops.tensor(...) first."
        )
    dtype = b.dtype(x)
    if dtype == "bfloat16":
        # float32 holds every bfloat16 exactly; its top 16 bits are the bfloat16 bits.
        f32 = np.asarray(b.to_numpy(b.cast(x, "float32")), dtype="<f4", order="C")
        return _Entry("bfloat16", (f32.view("<u4") >> 16).astype("<u2"))
    return _Entry(dtype, np.asarray(b.host_view(x), dtype=_storage_dtype(dtype), order="C"))


def _held(dtype: str) -> str:
    """The dtype the running backend holds a ``dtype`` value in (int64 -> int32 on a
    backend without 64-bit types: JAX with ``jax_enable_x64`` off)."""
    from .._dtypes import stored_as

    return stored_as(dtype, active().SUPPORTED_DTYPES)


def _host_value(dtype: str, arr: np.ndarray) -> np.ndarray:
    """What the adapter's ``from_numpy``/``new_variable``/``assign_host`` get (with
    ``dtype=_held(dtype)``): bfloat16 goes as float32, which converts to bfloat16
    exactly; a narrowed dtype is cast here (its range was checked, `_value_problem`)."""
    if dtype == "bfloat16":
        return (arr.astype("<u4") << 16).view("<f4")
    held = _held(dtype)
    if held != dtype:
        return arr.astype(np.dtype(held))
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def _value_problem(name: str, dtype: str, arr: np.ndarray) -> str | None:
    """What is wrong with the values of a stored tensor, or None: a bool that holds
    other bytes than 0 and 1, a value that does not fit the narrower dtype the
    backend holds it in."""
    if dtype == "bool" and arr.size and arr.view(np.uint8).max() > 1:
        return f"'{name}' is bool but holds bytes other than 0 and 1"
    held = _held(dtype)
    if held == dtype or not arr.size:
        return None
    if np.dtype(held).kind == "i":
        info = np.iinfo(np.dtype(held))
        lo, hi = int(arr.min()), int(arr.max())
        bad: float = lo if lo < info.min else hi if hi > info.max else 0
        ok = info.min <= lo and hi <= info.max
    else:
        finite = arr[np.isfinite(arr)]
        big = float(np.abs(finite).max()) if finite.size else 0.0
        ok = big <= float(np.finfo(np.dtype(held)).max)
        bad = big
    if ok:
        return None
    b = active()
    return (
        f"'{name}' is {dtype} and holds {bad!r}, which does not fit the {held} the "
        f"{b.name} backend holds {dtype} values in while its 64-bit types are off; turn "
        'them on first (under jax: jax.config.update("jax_enable_x64", True))'
    )


def _to_native(dtype: str, arr: np.ndarray, device: tuple[str, int] | None) -> Any:
    return active().from_numpy(_host_value(dtype, arr), _held(dtype), device)


