"""Layout chains: runs of `Sequential` children that the adapter keeps in NHWC.

Where is it decided which children of a `Sequential` run in the framework's preferred
layout? `plan`, once per structure (the Sequential's ``_version``), only where the
backend says its conv and pool kernels are channels-last (``Backend.LAYOUT_CHAINS``:
TensorFlow). A *chain* is a run of two or more consecutive children that

* are of exactly one of these types (a subclass may override ``forward``): `Conv2D`
  (no activation, or an elementwise one), `MaxPool2D`, `AvgPool2D`, `BatchNorm` over
  axis 1, `Activation` of an elementwise function, or a plain `Sequential` made only of
  such children (its children join the chain);
* have no ``forward`` of their own instance (hybridized, or replaced by the user);
* are ready (the first call, which creates deferred parameters, ran per layer);
* start with a conv or pool layer (what makes the input 4-D): a BatchNorm or an
  activation before the first one runs on its own, in NCHW, as it would anyway.

`Chain` converts the NCHW input once (`Backend.to_nhwc`), runs each layer's
``_forward_nhwc`` (the same checks and values as its ``forward``, NHWC in and out),
and converts the result back (`Backend.to_nchw`). What the user sees does not
change: the chain's result is NCHW, a child called on its own gets and returns NCHW,
and a child whose ``forward`` is hybridized or replaced (to observe it) leaves the
chain: assigning or deleting a block's ``forward`` changes the structure's version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._registry import active

if TYPE_CHECKING:
    from ._block import Block
    from ._layers import Sequential

__all__ = ["Chain", "plan"]

#: The activations that are elementwise, so layout-free (not softmax / log_softmax).
ELEMENTWISE = frozenset({"relu", "sigmoid", "tanh", "softrelu", "softsign"})

_HEAD = 1  # conv or pool: may start a chain (its input must be 4-D; it checks that)
_TAIL = 2  # BatchNorm, activation: may only continue one


class Chain:
    """Consecutive layout-sensitive layers run in NHWC, NCHW at the two ends."""

    __slots__ = ("layers",)

    def __init__(self, layers: tuple[Block, ...]) -> None:
        self.layers = layers

    def __call__(self, x: Any) -> Any:
        layers = self.layers
        if len(x.shape) != 4:  # not an image batch: the first layer's own error
            for layer in layers:
                x = layer(x)
            return x
        b = active()
        x = b.to_nhwc(x)
        for layer in layers:
            x = layer._forward_nhwc(x)  # type: ignore[attr-defined]
        return b.to_nchw(x)

    def __repr__(self) -> str:
        return f"Chain({', '.join(type(layer).__name__ for layer in self.layers)})"


def _role(block: Block, pending: list[Block]) -> int:
    """`_HEAD`, `_TAIL`, or 0 for a block that cannot be in a chain (noted in
    ``pending`` when only because it is not ready yet)."""
    from ._conv import Conv2D
    from ._layers import Activation
    from ._norm import BatchNorm
    from ._pool import AvgPool2D, MaxPool2D

    if not block._ready:
        pending.append(block)
        return 0
    if "forward" in block.__dict__:
        return 0
    kind = type(block)
    if kind is Conv2D:
        act = block._act_name  # type: ignore[attr-defined]
        return _HEAD if act is None or act in ELEMENTWISE else 0
    if kind is MaxPool2D or kind is AvgPool2D:
        return _HEAD
    if kind is BatchNorm:
        return _TAIL if block._axis in (1, -3) else 0  # type: ignore[attr-defined]
    if kind is Activation:
        return _TAIL if block._name in ELEMENTWISE else 0  # type: ignore[attr-defined]
    return 0


def _leaves(block: Block, pending: list[Block]) -> list[tuple[Block, int]] | None:
    """``block`` as chainable layers with their roles, or None when it cannot be in a
    chain. A plain `Sequential` all of whose children can is its children."""
    from ._layers import Sequential

    if type(block) is Sequential:
        if not block._ready:
            pending.append(block)
            return None
        if "forward" in block.__dict__:
            return None
        out: list[tuple[Block, int]] = []
        for child in block._sequence():
            inner = _leaves(child, pending)
            if inner is None:
                return None
            out += inner
        return out or None
    role = _role(block, pending)
    return [(block, role)] if role else None


def plan(seq: Sequential) -> tuple[Any, ...] | None:
    """What ``seq.forward`` runs: its children and `Chain` objects, in order; None when
    there is no chain (the plain loop). Cached on ``seq`` with its ``_version``, except
    while some block is not ready yet (its first call creates deferred parameters)."""
    steps: list[Any] = []
    run: list[Block] = []  # the layers of the chain being built
    members: list[Block] = []  # the children they come from
    pending: list[Block] = []

    def close() -> None:
        if len(run) >= 2:
            steps.append(Chain(tuple(run)))
        else:
            steps.extend(members)
        run.clear()
        members.clear()

    for child in seq._sequence():
        leaves = _leaves(child, pending)
        if leaves is None or (not run and leaves[0][1] != _HEAD):
            # Not chainable; or a BatchNorm / activation (or a Sequential starting with
            # one) before any conv or pool: it runs on its own, in NCHW.
            close()
            steps.append(child)
            continue
        run.extend(leaf for leaf, _ in leaves)
        members.append(child)
    close()
    result = tuple(steps) if any(isinstance(s, Chain) for s in steps) else None
    if not pending:
        object.__setattr__(seq, "_plan", (seq._version, result))
    return result
