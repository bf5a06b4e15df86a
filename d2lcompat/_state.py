"""State that a forward pass updates: BatchNorm's running statistics.

Where are running statistics written? A layer calls `set_state(param, value)` from its
``forward`` for a parameter with ``grad_req='null'``. Outside any gradient computation
or compiled step the value is written at once. Inside `d2lcompat.autograd.grad` or a
compiled `d2lcompat.train_step` the forward pass runs as a traced or differentiated
function, where writing would leak a tracer (JAX) or record the write in the graph:
there the update is *collected* (`collecting`) and the caller applies it afterwards,
with the new value detached from the gradient graph. A compiled step returns the
collected values as outputs of the compiled function, next to the new parameters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._registry import active

if TYPE_CHECKING:
    from ._parameter import Parameter

__all__ = ["apply_updates", "collecting", "set_state"]

#: One list per open `collecting` scope; the innermost collects.
_SCOPES: list[dict[int, tuple[Parameter, Any]]] = []


def set_state(param: Parameter, value: Any) -> None:
    """Set the non-trainable ``param`` (running statistics) to ``value`` from a forward pass.

    Examples
    --------
    >>> import d2lcompat
    >>> from d2lcompat import ops
    >>> from d2lcompat._state import set_state
    >>> p = d2lcompat.Parameter((2,), init="zeros", grad_req="null"); p.initialize()
    >>> set_state(p, ops.ones((2,)))
    >>> ops.to_numpy(p.data()).tolist()
    [1.0, 1.0]
    """
    b = active()
    value = b.stop_gradient(value)
    if _SCOPES:
        _SCOPES[-1][id(param)] = (param, value)  # the last write of a step wins
    else:
        param._var = b.assign(param._var, value)


@contextlib.contextmanager
def collecting() -> Iterator[dict[int, tuple[Parameter, Any]]]:
    """Collect the `set_state` writes of the forward passes run inside the ``with``."""
    scope: dict[int, tuple[Parameter, Any]] = {}
    _SCOPES.append(scope)
    try:
        yield scope
    finally:
        _SCOPES.pop()


def apply_updates(updates: dict[int, tuple[Parameter, Any]]) -> None:
    """Write collected updates (concrete values) into their parameters."""
    if not updates:
        return
    b = active()
    for param, value in updates.values():
        param._var = b.assign(param._var, value)
