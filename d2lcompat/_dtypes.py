"""Canonical dtype names and their NumPy equivalents."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._backend import DTYPES
from ._errors import DTypeError

__all__ = ["NARROWER", "canonical", "numpy_dtype", "stored_as"]

_ALIASES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "int": "int64",
    "long": "int64",
    "bool_": "bool",
}


#: What a backend without 64-bit types (JAX with ``jax_enable_x64`` off) gives instead.
NARROWER = {"int64": "int32", "float64": "float32"}


def stored_as(dtype: str, supported: frozenset[str]) -> str:
    """The dtype a backend that supports ``supported`` holds a ``dtype`` value in.

    Examples
    --------
    >>> stored_as("int64", frozenset({"int32", "float32"}))
    'int32'
    """
    if dtype not in supported and dtype in NARROWER:
        return NARROWER[dtype]
    return dtype


def canonical(dtype: Any) -> str:
    """The canonical name of ``dtype`` (a string, a NumPy dtype or a framework dtype)."""
    if isinstance(dtype, str):
        name = dtype
    else:
        name = getattr(dtype, "name", None) or str(dtype)
    name = name.rsplit(".", 1)[-1].lower()
    name = _ALIASES.get(name, name)
    if name not in DTYPES:
        raise DTypeError(f"Unknown dtype {dtype!r}; d2lcompat knows {', '.join(DTYPES)}.")
    return name


def numpy_dtype(name: str) -> np.dtype[Any]:
    """The NumPy dtype for a canonical name (bfloat16 through ml_dtypes, a dependency)."""
    if name == "bfloat16":
        # Imported here: ml_dtypes costs ~0.05-0.1 s at start-up and torch/paddle users
        # rarely need it (benchmarks/, import time).
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)
