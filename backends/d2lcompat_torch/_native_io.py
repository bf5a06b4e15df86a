"""Reading PyTorch's own checkpoint files (a ``state_dict`` saved with ``torch.save``).

Only *how* to read lives here; the core (`d2lcompat._io`) maps names and validates.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch

#: The start of a torch.save file: a zip archive (torch >= 1.6) or a legacy pickle.
_MAGICS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _flatten(tree: Mapping[Any, Any], prefix: str, out: dict[str, Any]) -> None:
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            _flatten(v, name + ".", out)
        else:
            out[name] = v


def read_state_dict(path: str) -> tuple[str, dict[str, Any]] | None:
    """``("structural", {name: tensor})`` from a ``torch.save``d state_dict, or None when
    ``path`` is not a torch.save file. Uses ``weights_only=True``: no code runs."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head.startswith(_MAGICS):
        return None
    with warnings.catch_warnings():  # "pickle protocol 4 detected": the refusal follows
        warnings.simplefilter("ignore", UserWarning)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"the file holds a {type(obj).__name__}, not a state_dict; save "
            "model.state_dict() instead"
        )
    out: dict[str, Any] = {}
    _flatten(obj, "", out)
    return "structural", out
