"""`Block.hybridize`: the forward pass compiled by the framework's own compiler.

Where is the compiled path decided? `hybridize` installs a `_Hybridized` object as
the block's ``forward`` *instance attribute*. It shadows the class's ``forward``, so
`Block.__call__` is unchanged and a block that is not hybridized pays nothing;
``hybridize(False)`` deletes the attribute.

The compiled function is ``fn(values, *args)``: it substitutes ``values`` for the
parameters' stored values (the mechanism of `Block.functional_call`) and runs the
class's eager ``forward``. The parameters are inputs of the compiled function, never
constants baked into it, so ``set_data``, ``load_parameters`` and optimizer steps are
seen by the next call without re-tracing.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import autograd as _autograd
from .._errors import D2LCompatWarning, UnsupportedError
from .._parameter import FIRST_CALL_LOCK
from .._registry import active

if TYPE_CHECKING:
    from .._parameter import Parameter
    from ._block import Block

__all__ = ["hybridize"]

_TRAINING = _autograd._TRAINING  # the mode stack: read directly on every call


class _Hybridized:
    """The compiled ``forward`` of one block (installed by `hybridize`).

    * The first call runs eagerly: it creates deferred parameters and marks every block
      of the tree ready, so nothing of that happens while the framework traces.
    * Later calls pass the current parameter values to the compiled function; the
      framework re-traces on new input shapes as it always does.
    * In training mode (``autograd.record()``/``train_mode()``) the block runs eagerly:
      Dropout draws its masks from d2lcompat's seeded host generator, which a trace
      would freeze into one constant mask.
    * When the compiler rejects Python control flow that depends on values (one of
      ``Backend.COMPILE_FALLBACK_ERRORS``), the call is re-run eagerly; if that
      succeeds, one `D2LCompatWarning` names the block and the block stays eager.
    """

    __slots__ = ("_block", "_compiled", "_eager", "_errors", "_params", "_traced")

    def __init__(self, block: Block, eager: Callable[..., Any]) -> None:
        self._block = block
        self._eager = eager
        self._compiled: Callable[..., Any] | None = None
        self._params: tuple[Parameter, ...] = ()
        self._errors: tuple[type[BaseException], ...] = ()
        # True once a compiled call has returned (the first one traces).
        self._traced = False

    def __call__(self, *args: Any) -> Any:
        compiled = self._compiled
        if compiled is None or _TRAINING[-1]:
            return self._uncompiled(args)
        if not self._traced:
            # The first compiled call traces, swapping tracers into the parameters: one
            # thread at a time (the others then run what it traced).
            with FIRST_CALL_LOCK:
                try:
                    out = compiled([p._var for p in self._params], *args)
                except self._errors as exc:
                    return self._fall_back(exc, args)
                self._traced = True
                return out
        try:
            return compiled([p._var for p in self._params], *args)
        except self._errors as exc:
            return self._fall_back(exc, args)

    def _uncompiled(self, args: Sequence[Any]) -> Any:
        if self._compiled is not None:
            return self._eager(*args)
        with FIRST_CALL_LOCK:  # build the compiled function once, whatever the threads
            out = self._eager(*args)
            if self._compiled is None:
                self._build()
            return out

    def _build(self) -> None:
        b = active()
        params = tuple(self._block.collect_params().values())
        if any(p._var is None for p in params):
            return  # still deferred (the forward did not reach every parameter): try again
        eager = self._eager

        def fn(values: Sequence[Any], *args: Any) -> Any:
            # `autograd.substituted`, written out: a plain try/finally is what every
            # tracer (dynamo, autograph, SOT, jax) follows without a graph break.
            saved = [p._var for p in params]
            for p, v in zip(params, values):
                p._var = v
            try:
                return eager(*args)
            finally:
                for p, v in zip(params, saved):
                    p._var = v

        # The name shows up in the framework's traces, profiles and error messages.
        fn.__name__ = fn.__qualname__ = f"hybridized_{type(self._block).__name__}"
        self._params = params
        self._errors = tuple(b.COMPILE_FALLBACK_ERRORS)
        self._compiled = b.compile(fn)

    def _fall_back(self, exc: BaseException, args: Sequence[Any]) -> Any:
        # A genuine error of the forward pass raises again here, eagerly, with its own
        # message; the compiled path is kept for the inputs that work.
        out = self._eager(*args)
        block = self._block
        object.__setattr__(block, "forward", self._eager)
        warnings.warn(
            f"{block._describe()} cannot be compiled by {active().name} "
            f"({type(exc).__name__}: {_first_line(exc)}); it runs eagerly from now on. "
            "Python control flow that depends on tensor values cannot be traced: express "
            "it with ops (ops.where) or leave this block un-hybridized.",
            D2LCompatWarning,
            stacklevel=4,
        )
        return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= 160 else line[:157] + "..."


def hybridize(block: Block, active_: bool) -> None:
    """Install (``active_=True``) or remove the compiled ``forward`` of ``block``."""
    block.__dict__.pop("forward", None)  # back to the class's eager forward
    if not active_:
        return
    b = active()
    if not b.SUPPORTS_COMPILE:
        raise UnsupportedError(f"{b.name} does not support compilation (hybridize)")
    object.__setattr__(block, "forward", _Hybridized(block, block.forward))
