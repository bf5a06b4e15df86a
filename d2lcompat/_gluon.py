"""Gluon (MXNet) spellings accepted as aliases, and hints for the ones that cannot be.

docs/gluon-porting.md lists them. An alias exists only where it means exactly what the
d2lcompat spelling means; elsewhere the error names the d2lcompat spelling.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ctx_alias", "hint"]


def ctx_alias(device: Any, ctx: Any, where: str) -> Any:
    """``device``, or Gluon's ``ctx=`` given for it (not both).

    Examples
    --------
    >>> ctx_alias(None, "cpu", "initialize")
    'cpu'
    """
    if ctx is None:
        return device
    if device is not None:
        raise TypeError(f"{where}: pass device= (d2lcompat) or ctx= (Gluon's name), not both.")
    return ctx


#: Gluon attribute names with no alias, and what to write instead.
_HINTS = {
    "ctx": "a block has no single device; use param.list_devices() or "
    "d2lcompat.device_of(tensor) (Gluon's x.ctx)",
    "context": "use d2lcompat.device_of(tensor) (Gluon's x.context)",
    "list_ctx": "use param.list_devices()",
    "copyto": "use d2lcompat.copy_to(x, device)",
    "as_in_ctx": "use d2lcompat.to_device(x, device)",
    "as_in_context": "use d2lcompat.to_device(x, device)",
    "prefix": "d2lcompat names are structural (block.name, collect_params() keys); "
    "there is no prefix",
    "cast": "cast parameters with param.set_data(ops.cast(param.data(), dtype))",
}


def hint(obj: Any, name: str) -> AttributeError:
    """The AttributeError for ``obj.name``, naming the d2lcompat spelling for Gluon names."""
    extra = _HINTS.get(name)
    msg = f"{type(obj).__name__} has no attribute {name!r}"
    if extra:
        msg += f" ({extra}; see docs/gluon-porting.md)"
    return AttributeError(msg)
