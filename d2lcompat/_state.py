"""State that a forward pass updates: running statistics and tensor attributes.

Where is state written? Two kinds of state change during a forward pass:

* a layer calls `set_state(param, value)` for a parameter with ``grad_req='null'``
  (BatchNorm's running statistics);
* a block assigns a tensor to one of its plain attributes — the book's from-scratch
  BatchNorm writes ``self.moving_mean = ...`` in ``forward`` — which
  `Block.__setattr__` hands to `write_attr`.

Outside any gradient computation or compiled function the value is written at once.
Inside `d2lcompat.autograd.grad`, a compiled `d2lcompat.train_step` or a hybridized
forward the pass runs as a traced or differentiated function, where keeping the value
would leak a tracer (JAX) or a graph node: there the write is *collected*
(`collecting`) and the caller applies it afterwards (`apply_updates`), with the new
value detached from the gradient graph. State is an output, not a side effect
(STYLE.md lesson 16): a compiled function returns the collected values next to its
result, and tensor attributes are *inputs* of it too (`tensor_attrs`), so a compiled
forward never bakes an old value in as a constant.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._registry import active

if TYPE_CHECKING:
    from ._parameter import Parameter
    from .nn._block import Block

__all__ = [
    "Scope",
    "TensorAttr",
    "apply_updates",
    "attr_key",
    "close_scope",
    "collecting",
    "open_scope",
    "set_state",
    "substituted_attrs",
    "tensor_attrs",
    "write_attr",
]

_MISSING = object()


class TensorAttr:
    """A tensor attribute ``block.<name>``: an input of compiled functions (`tensor_attrs`)."""

    __slots__ = ("block", "name")

    def __init__(self, block: Block, name: str) -> None:
        self.block = block
        self.name = name

    @property
    def _var(self) -> Any:
        return self.block.__dict__.get(self.name)

    @property
    def key(self) -> str:
        return attr_key(self.block, self.name)

    def __repr__(self) -> str:
        return f"{self.block._describe()}.{self.name}"


def attr_key(block: Block, name: str) -> str:
    """The `Scope` key of ``block.<name>``: a string, which every tracer takes as a dict
    key (Paddle's SOT takes no tuples)."""
    return name + "@" + str(id(block))


class Scope:
    """The writes of one `collecting` scope. ``writes`` is ``{key: (target, detached
    value)}`` where a target is a `Parameter` (key ``id(param)``) or a ``(block, name)``
    tuple for a tensor attribute (key `attr_key`); ``saved`` keeps each written attribute's value from before
    the scope, which the scope puts back when it closes (nothing traced is left behind).
    Plain dicts in a plain object: what every tracer follows without a graph break."""

    __slots__ = ("saved", "writes")

    def __init__(self) -> None:
        self.writes: dict[Any, tuple[Any, Any]] = {}
        self.saved: dict[Any, tuple[Block, str, Any]] = {}

    def restore(self) -> None:
        for block, name, old in self.saved.values():
            if old is _MISSING:
                block.__dict__.pop(name, None)
            else:
                block.__dict__[name] = old
        self.saved.clear()


#: One scope per open `collecting`; the innermost collects.
_SCOPES: list[Scope] = []


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
        _SCOPES[-1].writes[id(param)] = (param, value)  # the last write of a step wins
    else:
        param._var = b.assign(param._var, value)


def write_attr(block: Block, name: str, value: Any) -> None:
    """``block.<name> = value`` for a tensor ``value`` (called by `Block.__setattr__`).

    The attribute takes the value at once, so the rest of the forward pass reads it;
    inside a `collecting` scope the write is also recorded (detached) and the old value
    comes back when the scope closes, until the caller applies the recorded one.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> from d2lcompat._state import collecting
    >>> blk = nn.Block(); blk.count = ops.zeros(())
    >>> with collecting() as scope:
    ...     blk.count = blk.count + 1
    >>> ops.item(blk.count), [ops.item(v) for _, v in scope.values()]
    (0.0, [1.0])
    """
    if _SCOPES:
        scope = _SCOPES[-1]
        key = attr_key(block, name)
        if key not in scope.saved:
            scope.saved[key] = (block, name, block.__dict__.get(name, _MISSING))
        # A plain tuple as the target: a tracer follows it, not a new object.
        scope.writes[key] = ((block, name), active().stop_gradient(value))
    block.__dict__[name] = value


def open_scope() -> Scope:
    """Start collecting state writes in a new innermost `Scope` (close it with
    `close_scope`, in a ``finally``): what `collecting` and
    `d2lcompat.autograd.call_substituted` both do, without a generator."""
    scope = Scope()
    _SCOPES.append(scope)
    return scope


def close_scope(scope: Scope) -> None:
    """End the innermost scope ``scope``: the tensor attributes it saw written get their
    old values back (no traced value is left behind); ``scope.writes`` stays."""
    _SCOPES.pop()
    scope.restore()


@contextlib.contextmanager
def collecting() -> Iterator[dict[Any, tuple[Any, Any]]]:
    """Collect the state writes of the forward passes run inside the ``with``; yields
    ``{key: (target, value)}`` (`Scope.writes`)."""
    scope = open_scope()
    try:
        yield scope.writes
    finally:
        close_scope(scope)


def apply_updates(updates: dict[Any, tuple[Any, Any]]) -> None:
    """Write collected updates (concrete values) into their targets. Inside another
    `collecting` scope (a hybridized block run inside `autograd.grad`) they are recorded
    there instead, for that scope's caller to apply."""
    if not updates:
        return
    from ._parameter import Parameter

    for target, value in updates.values():
        if isinstance(target, Parameter):
            set_state(target, value)
        else:
            write_attr(target[0], target[1], value)


def tensor_attrs(root: Block) -> list[TensorAttr]:
    """Every plain attribute of ``root``'s tree that holds a tensor, in tree order: the
    state a compiled function takes as input (and returns when the forward writes it)."""
    b = active()
    out: list[TensorAttr] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        block = stack.pop()
        if id(block) in seen:
            continue
        seen.add(id(block))
        for name, value in block.__dict__.items():
            if name != "forward" and b.is_tensor(value):
                out.append(TensorAttr(block, name))
        stack.extend(reversed(list(block._children.values())))
    return out


@contextlib.contextmanager
def substituted_attrs(attrs: Sequence[TensorAttr], values: Sequence[Any]) -> Iterator[None]:
    """Use ``values`` as the attributes' values inside the ``with`` (the inputs of a
    compiled function), and put the old ones back after it."""
    saved = [a.block.__dict__.get(a.name, _MISSING) for a in attrs]
    try:
        for a, v in zip(attrs, values):
            a.block.__dict__[a.name] = v
        yield
    finally:
        for a, old in zip(attrs, saved):
            if old is _MISSING:
                a.block.__dict__.pop(a.name, None)
            else:
                a.block.__dict__[a.name] = old
