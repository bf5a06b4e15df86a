"""Reading PaddlePaddle ``.pdparams`` files (``paddle.save(layer.state_dict(), path)``).

A ``.pdparams`` is a pickle: the core calls this only when the user passed
``trusted=True``. Only *how* to read lives here; the core maps names and transposes
``nn.Linear`` weights, which Paddle stores ``(in, out)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import paddle

_PICKLE = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def read_pdparams(path: str) -> tuple[str, dict[str, Any]] | None:
    """``("paddle", {name: array})`` from a ``paddle.save``d state_dict, or None when
    ``path`` is not a pickle."""
    with open(path, "rb") as f:
        if not f.read(2).startswith(_PICKLE):
            return None
    obj = paddle.load(path, return_numpy=True)
    if not isinstance(obj, Mapping):
        raise ValueError(f"the file holds a {type(obj).__name__}, not a state_dict")
    out: dict[str, Any] = {}

    def flatten(tree: Mapping[Any, Any], prefix: str) -> None:
        for k, v in tree.items():
            if isinstance(v, Mapping):
                flatten(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    flatten(obj, "")
    return "paddle", out
