"""Gradients, the same on every backend (``d2lcompat.autograd``).

`grad` runs a closure and differentiates it with the framework's own machinery
(torch/paddle backward, a TensorFlow ``GradientTape``, ``jax.value_and_grad``). It
substitutes each parameter's value by a fresh leaf while the closure runs — the
very mechanism of `Block.functional_call` — so a parameter used twice (tied)
receives the sum of both uses' gradients, on every backend alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from . import _state
from ._parameter import Parameter
from ._registry import active
from ._semantics import item_assignment_error

__all__ = ["grad", "is_training", "predict_mode", "record", "train_mode"]

_TRAINING = [False]


def is_training() -> bool:
    """Whether blocks run in training mode (dropout active).

    Examples
    --------
    >>> from d2lcompat import autograd
    >>> autograd.is_training()
    False
    """
    return _TRAINING[-1]


@contextlib.contextmanager
def train_mode() -> Iterator[None]:
    """Run blocks in training mode inside the ``with`` (dropout active).

    Examples
    --------
    >>> from d2lcompat import autograd
    >>> with autograd.train_mode():
    ...     autograd.is_training()
    True
    """
    _TRAINING.append(True)
    try:
        yield
    finally:
        _TRAINING.pop()


@contextlib.contextmanager
def predict_mode() -> Iterator[None]:
    """Run blocks in inference mode inside the ``with`` (dropout off)."""
    _TRAINING.append(False)
    try:
        yield
    finally:
        _TRAINING.pop()


#: Gluon's name: ``with autograd.record():`` turns training mode on.
record = train_mode


def _swap(params: Sequence[Parameter], values: Sequence[Any]) -> list[Any]:
    """Put ``values`` in the parameters; return the values they held."""
    saved = [p._var for p in params]
    for p, v in zip(params, values):
        p._var = v
    return saved


@contextlib.contextmanager
def substituted(params: Sequence[Parameter], values: Sequence[Any]) -> Iterator[None]:
    """Use ``values`` in place of the parameters' stored values inside the ``with``
    (private: the mechanism of `functional_call` and `grad`)."""
    saved = [p._var for p in params]
    try:
        _swap(params, values)
        yield
    finally:
        _swap(params, saved)


def call_substituted(
    params: Sequence[Parameter], values: Sequence[Any], fn: Callable[[], Any]
) -> tuple[Any, dict[Any, tuple[Any, Any]]]:
    """``fn()`` with ``values`` substituted for the parameters' values and its state
    writes collected: ``with substituted(params, values), _state.collecting() as w:
    out = fn()``, returning ``(out, w)``, as one plain call (no generator context
    managers: the hot path of `grad` and of the eager `train_step`). Private."""
    saved = [p._var for p in params]
    scope = _state.open_scope()
    try:
        _swap(params, values)
        out = fn()
    finally:
        _state.close_scope(scope)  # tensor attributes written by fn: no tracer left
        _swap(params, saved)
    return out, scope.writes


def _named(params: Mapping[str, Parameter] | Iterable[Parameter]) -> list[tuple[str, Parameter]]:
    if isinstance(params, Parameter):
        return [(params.name, params)]
    if hasattr(params, "items"):
        return list(params.items())  # type: ignore[union-attr]
    return [(p.name, p) for p in params]


def grad(
    fn: Callable[[], Any], params: Mapping[str, Parameter] | Iterable[Parameter]
) -> tuple[Any, dict[str, Any]]:
    """Evaluate ``fn()`` (a closure returning a scalar tensor) and its gradient with
    respect to ``params``.

    Returns ``(value, {name: gradient})`` and stores each gradient in
    ``param.grad()`` following ``grad_req``: ``'write'`` overwrites, ``'add'``
    accumulates over calls, ``'null'`` (constants) is skipped.

    Examples
    --------
    >>> from d2lcompat import nn, ops, autograd, init
    >>> lin = nn.Dense(1, in_units=1, use_bias=False); lin.initialize(init.Constant(3.0))
    >>> net = nn.Sequential(lin, lin)
    >>> x = ops.ones((1, 1))
    >>> y, g = autograd.grad(lambda: ops.sum(net(x)), net.collect_params())
    >>> ops.item(y), ops.item(g["0.weight"])
    (9.0, 6.0)
    """
    if not callable(fn):
        raise TypeError(
            f"autograd.grad: the first argument is a closure returning the loss, got "
            f"{type(fn).__name__}: write autograd.grad(lambda: loss(net(X), y), params)."
        )
    value, _, out = grad_with_aux(lambda: (fn(), None), params)
    return value, out


def grad_with_aux(
    fn: Callable[[], tuple[Any, Any]], params: Mapping[str, Parameter] | Iterable[Parameter]
) -> tuple[Any, Any, dict[str, Any]]:
    """`grad` of a closure returning ``(scalar, aux)``; returns ``(value, aux, grads)``
    with ``aux`` cut from the graph (concrete under JAX too). Private: the eager
    `d2lcompat.train_step` returns the per-sample losses through ``aux``."""
    named = [(n, p) for n, p in _named(params) if p.grad_req != "null"]
    plist = [p for _, p in named]
    if any(p._var is None for p in plist):
        # Deferred parameters are created by a first forward pass, run once outside the
        # gradient computation (as a PyTorch user's lazy modules would be).
        with _state.collecting():  # a shape probe: it must not move running statistics
            fn()
        for p in plist:
            if p._var is None:
                p._raise_uninitialized()
    if not plist:  # nothing to differentiate (every parameter has grad_req 'null')
        value, aux = fn()
        return value, aux, {}
    value, aux, grads = Differentiator(named)(fn)
    return value, aux, dict(zip([n for n, _ in named], grads))


class Differentiator:
    """`grad_with_aux` for a fixed list of initialized ``(name, parameter)`` pairs
    (``grad_req`` not ``'null'``), decided once: the eager `train_step` keeps one per
    structure so that a step's Python is the substitution, the framework's
    value-and-grad, and the gradients stored. Private.

    Each parameter's value is substituted by a fresh leaf while ``fn`` runs, so a
    parameter used twice (tied) receives the sum of both uses' gradients.

    ``held`` (the eager `train_step`'s): the net's other parameters, which the
    differentiation must leave alone; with it the adapter's `Backend.value_and_grad_step`
    differentiates, keeping its decisions for this structure in a plan of its own.
    """

    __slots__ = ("_held", "_params", "_plan")

    def __init__(
        self, named: Sequence[tuple[str, Parameter]], held: Sequence[Parameter] | None = None
    ) -> None:
        self._params = [p for _, p in named]
        self._held = None if held is None else list(held)
        self._plan: dict[str, Any] = {}

    def __call__(
        self, fn: Callable[[], tuple[Any, Any]], check: bool = True, inputs: Sequence[Any] = ()
    ) -> tuple[Any, Any, list[Any]]:
        """``(value, aux, gradients in order)``; stores each gradient (``grad_req``).
        ``check=False`` skips the scalar check (the caller built the scalar itself);
        ``inputs``: the batch tensors (for `Backend.value_and_grad_step`)."""
        b = active()
        plist = self._params
        changed: list[Any] = []  # a Parameter, or a (block, name) tensor attribute

        def pure(values: Sequence[Any]) -> tuple[Any, tuple[Any, list[Any]]]:
            # Running statistics written by the forward pass (BatchNorm) are collected and
            # returned as aux, then written after the gradient: inside the differentiated
            # function they are traced values (JAX) or part of the graph.
            (out, aux), updates = call_substituted(plist, values, fn)
            if check:
                _check_scalar(b, out)
            if updates:
                changed.extend(p for p, _ in updates.values())
            if aux is not None:
                aux = _tree_stop(b, aux)
            return out, (aux, [v for _, v in updates.values()])

        read = b.read
        held = self._held
        try:
            if held is None:
                value, grads, (aux, new_state) = b.value_and_grad_aux(pure, [read(p._var) for p in plist])
            else:
                value, grads, (aux, new_state) = b.value_and_grad_step(
                    pure, [read(p._var) for p in plist], [p._var for p in held], inputs, self._plan
                )
        except Exception as exc:
            translated = b.translate_grad_error(exc) or item_assignment_error(
                exc, "The closure given to autograd.grad"
            )
            if translated is None:
                raise
            raise translated from exc
        if changed:
            _state.apply_updates({id(p): (p, v) for p, v in zip(changed, new_state)})
        out: list[Any] = []
        for p, g in zip(plist, grads):
            if p._grad_req == "add" and p._grad is not None:
                g = p._grad + g
            p._grad = g
            out.append(g)
        return value, aux, out


def _tree_stop(b: Any, aux: Any) -> Any:
    if isinstance(aux, list | tuple):
        return type(aux)(_tree_stop(b, a) for a in aux)
    return b.stop_gradient(aux)


def _check_scalar(b: Any, out: Any) -> None:
    """``out`` must be a tensor with one element (what a loss is)."""
    from ._errors import ShapeError

    if not b.is_tensor(out):
        raise TypeError(
            f"autograd.grad: the closure must return a scalar tensor (the loss), got "
            f"{type(out).__name__}. Return e.g. ops.sum(loss(net(X), y))."
        )
    shape = tuple(b.shape(out))
    size = 1
    for d in shape:
        size *= d
    if size != 1:
        raise ShapeError(
            f"autograd.grad: the closure returned a tensor of shape {shape}; the gradient "
            "needs a scalar. Reduce it first: ops.sum(...) or ops.mean(...)."
        )
