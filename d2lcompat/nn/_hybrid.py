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

from .. import _state
from .. import autograd as _autograd
from .._errors import CompileFallbackWarning, UnsupportedError
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
      succeeds, one `CompileFallbackWarning` names the block and the block stays eager.
      A compiler that runs such parts as Python by itself and says so
      (``Backend.compile_breaks``: Paddle's SOT) gets the same warning, once, and the
      block stays compiled.
    * Tensor attributes of the tree are inputs too, and the state the forward writes
      (`d2lcompat._state`) comes out as outputs, written back after the call.
    * A change of the tree below the block (``Block._version``: a child or parameter
      added, replaced or removed) makes the next call eager, then builds again.
    """

    __slots__ = (
        "_attrs", "_block", "_breaks", "_compiled", "_eager", "_errors", "_params", "_scope",
        "_traced",
        "_version", "_warned", "_written",
    )

    def __init__(self, block: Block, eager: Callable[..., Any]) -> None:
        self._block = block
        self._eager = eager
        self._compiled: Callable[..., Any] | None = None
        self._params: tuple[Parameter, ...] = ()
        self._errors: tuple[type[BaseException], ...] = ()
        # True once a compiled call has returned (the first one traces).
        self._traced = False
        self._attrs: tuple[_state.TensorAttr, ...] = ()  # tensor attributes: inputs too
        self._written: list[Any] = []  # what the last trace wrote (`_state` targets)
        self._version = -1  # the block's `_version` when built
        self._breaks: Callable[[], Sequence[str]] | None = None  # Backend.compile_breaks
        self._warned = False  # the graph-break warning is given once per block
        self._scope = _state.Scope()  # collects the compiled forward's state writes

    def __call__(self, *args: Any) -> Any:
        compiled = self._compiled
        if compiled is None or _TRAINING[-1] or self._block._version != self._version:
            return self._uncompiled(args)
        if not self._traced:
            # The first compiled call traces, swapping tracers into the parameters: one
            # thread at a time (the others then run what it traced).
            with FIRST_CALL_LOCK:
                out = self._run(compiled, args)
                self._traced = True
                return out
        return self._run(compiled, args)

    def _run(self, compiled: Callable[..., Any], args: Sequence[Any]) -> Any:
        values = [p._var for p in self._params]
        attrs = self._attrs
        if attrs:
            values += [a._var for a in attrs]
        try:
            out, new = compiled(values, *args)
        except self._errors as exc:
            self._scope.writes.clear()  # what the failed trace recorded
            return self._fall_back(exc, args)
        except BaseException:
            self._scope.writes.clear()
            raise
        if new:
            self._commit(new)
        breaks = self._breaks
        if breaks is not None:
            reasons = breaks()
            if reasons:
                self._broke(reasons)
        return out

    def _broke(self, reasons: Sequence[str]) -> None:
        # The compiler ran parts of the forward as Python by itself (Paddle SOT graph
        # breaks) and keeps compiling the rest, re-tracing as usual: say so once.
        if self._warned:
            return
        self._warned = True
        shown = "; ".join(_clip(r) for r in reasons[:3])
        warnings.warn(
            f"{self._block._describe()} is compiled by {active().name} only in parts: its "
            f"compiler runs the rest as Python ({shown}). The results are right, the speed "
            "is not that of one graph; write that part with ops, or leave the block "
            "un-hybridized.",
            CompileFallbackWarning,
            stacklevel=5,
        )

    def _commit(self, new: Sequence[Any]) -> None:
        # The state the compiled forward wrote (`_state`): concrete values now, written
        # where they belong (or recorded for an enclosing autograd.grad).
        written = self._written
        _state.apply_updates({i: (t, v) for i, (t, v) in enumerate(zip(written, new))})
        known = {a.key for a in self._attrs}
        if any(isinstance(t, tuple) and _state.attr_key(*t) not in known for t in written):
            self._compiled = None  # a new tensor attribute: the next call builds again

    def _uncompiled(self, args: Sequence[Any]) -> Any:
        stale = self._compiled is None or self._block._version != self._version
        if not stale:
            return self._eager(*args)
        with FIRST_CALL_LOCK:  # build the compiled function once, whatever the threads
            out = self._eager(*args)
            if self._compiled is None or self._block._version != self._version:
                # First call, or the tree changed (a child added after the first call):
                # the eager run above created any new deferred parameter; trace again.
                self._build()
            return out

    def _build(self) -> None:
        b = active()
        params = tuple(self._block.collect_params().values())
        if any(p._var is None for p in params):
            return  # still deferred (the forward did not reach every parameter): try again
        version = self._block._version
        attrs = tuple(_state.tensor_attrs(self._block))
        n = len(params)
        eager = self._eager
        written = self._written
        scopes = _state._SCOPES
        scope = self._scope  # made outside: a tracer would break its graph on a new object

        def fn(values: Sequence[Any], *args: Any) -> Any:
            # `autograd.substituted`, written out: a plain try/finally is what every
            # tracer (dynamo, autograph, SOT, jax) follows without a graph break. The
            # tensor attributes are inputs as well, and whatever state the forward
            # writes leaves as an output (STYLE.md lesson 16), never as a tracer.
            saved = [p._var for p in params]
            for p, v in zip(params, values):
                p._var = v
            if attrs:
                old = [a.block.__dict__[a.name] for a in attrs]
                for a, v in zip(attrs, values[n:]):
                    a.block.__dict__[a.name] = v
            scopes.append(scope)
            try:
                out = eager(*args)
            finally:
                scopes.pop()
                if scope.saved:
                    scope.restore()
                for p, v in zip(params, saved):
                    p._var = v
                if attrs:
                    for a, v in zip(attrs, old):
                        a.block.__dict__[a.name] = v
            writes = scope.writes
            if not writes:
                return out, ()
            written[:] = [t for t, _ in writes.values()]
            new = [v for _, v in writes.values()]
            writes.clear()
            return out, new

        # The name shows up in the framework's traces, profiles and error messages.
        fn.__name__ = fn.__qualname__ = f"hybridized_{type(self._block).__name__}"
        self._params = params
        self._attrs = attrs
        self._version = version
        self._errors = tuple(b.COMPILE_FALLBACK_ERRORS)
        self._compiled = b.compile(fn)
        self._traced = False  # the next compiled call traces (under FIRST_CALL_LOCK)
        self._breaks = b.compile_breaks if b.REPORTS_COMPILE_BREAKS else None

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
            CompileFallbackWarning,
            stacklevel=5,
        )
        return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return _clip(text[0] if text else "")


def _clip(line: str) -> str:
    return line if len(line) <= 160 else line[:157] + "..."


def hybridize(block: Block, active_: bool) -> None:
    """Install (``active_=True``) or remove the compiled ``forward`` of ``block``."""
    from ._block import _changed

    # Back to the class's eager forward. A new forward is a new structure for a
    # Sequential above: its layout chains leave a hybridized child out.
    block.__dict__.pop("forward", None)
    _changed(block)
    if not active_:
        return
    b = active()
    if not b.SUPPORTS_COMPILE:
        raise UnsupportedError(f"{b.name} does not support compilation (hybridize)")
    object.__setattr__(block, "forward", _Hybridized(block, block.forward))
