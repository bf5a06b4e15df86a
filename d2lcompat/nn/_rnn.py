"""Recurrent layers and cells: Gluon's ``gluon.rnn`` (`RNN`, `LSTM`, `GRU`, `RNNCell`,
`LSTMCell`, `GRUCell`).

The core owns the "what": Gluon's parameter names (``l0_i2h_weight`` ...
``r1_h2h_bias``) and shapes, deferred ``input_size``, the ``TNC``/``NTC`` layouts, the
states and their checks, dropout between layers (drawn from d2lcompat's seeded
generator, so it is the same on every backend) and the equations (`step`). The
adapter's one primitive, `Backend.rnn`, runs a stack of layers over a whole ``TNC``
sequence with its framework's fused kernel (``torch._VF.lstm``, Paddle's ``rnn`` op) or
a compiled scan of `step` (`scan_layers`: ``jax.lax.scan``, a TensorFlow while loop).

Gate order (Gluon's, and the order of the rows of every weight): LSTM ``i, f, c, o``;
GRU ``r, z, n`` with ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`` and
``h' = (1 - z) * n + z * h``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from .. import autograd as _autograd
from .. import ops as _ops
from .._dtypes import canonical as _canonical
from .._errors import D2LCompatError, ShapeError
from .._parameter import Parameter
from .._random import generator
from .._registry import active
from ._block import Block

__all__ = ["GRU", "GRUCell", "LSTM", "LSTMCell", "RNN", "RNNCell", "scan_layers", "step"]

#: Gates per mode: the first dimension of every weight is ``gates * hidden_size``.
GATES = {"rnn_relu": 1, "rnn_tanh": 1, "lstm": 4, "gru": 3}
_LAYOUTS = ("TNC", "NTC")


# --------------------------------------------------------------------- equations
def step(mode: str, gx: Any, carry: Sequence[Any], w_hh_t: Any, b_hh: Any,
         mark: Callable[[Any], Any] | None = None) -> tuple[Any, ...]:
    """One time step of Gluon's equations on native tensors (``d2lcompat.ops``).

    ``gx`` is the input's projection ``x · W_ihᵀ + b_ih`` (``(N, G*H)``), ``carry`` the
    states ``(h,)`` or ``(h, c)``, ``w_hh_t`` the transposed ``W_hh`` (``(H, G*H)``,
    transposed once outside the loop), ``b_hh`` its bias or None where ``gx`` already
    holds it (`scan_layers` folds it there but for GRU); ``mark`` (LSTM only; an
    identity for the values) is applied to the pre-activation gates ``(N, 4H)``, for an
    adapter that tags them (`Remat`); returns the new states.
    Adapters without a fused kernel scan it (`scan_layers`)."""
    h = carry[0]
    gh = _ops.matmul(h, w_hh_t)
    if b_hh is not None:  # None: already added to ``gx`` (`scan_layers`)
        gh = gh + b_hh
    # The gates by one split each (a slice per gate cost XLA's CPU backend ~15 % of an
    # LSTM's gradient, docs/performance.md).
    if mode == "lstm":
        z = gx + gh
        if mark is not None:
            z = mark(z)
        i, f, c_tilde, o = _ops.split(z, 4, -1)
        c = _ops.sigmoid(f) * carry[1] + _ops.sigmoid(i) * _ops.tanh(c_tilde)
        return (_ops.sigmoid(o) * _ops.tanh(c), c)
    if mode == "gru":
        x_r, x_z, x_n = _ops.split(gx, 3, -1)
        h_r, h_z, h_n = _ops.split(gh, 3, -1)
        r = _ops.sigmoid(x_r + h_r)
        z = _ops.sigmoid(x_z + h_z)
        n = _ops.tanh(x_n + r * h_n)
        return ((1.0 - z) * n + z * h,)
    act = _ops.relu if mode == "rnn_relu" else _ops.tanh
    return (act(gx + gh),)


#: ``scan(fn, carry, xs, reverse) -> (final carry, stacked carry[0] of each step)``:
#: the framework's compiled loop over the first axis of ``xs``; with ``reverse`` it runs
#: from the last step to the first and still stacks each output at its own step.
Scan = Callable[[Callable[[tuple[Any, ...], Any], tuple[Any, ...]], tuple[Any, ...], Any, bool],
                tuple[tuple[Any, ...], Any]]


#: ``hoist(T, N, C, H) -> bool``: whether `scan_layers` computes the input projection of
#: all ``T`` steps before the loop (one matrix product) rather than inside it, for a
#: layer of ``H`` units over ``C`` input features and a batch of ``N``.
Hoist = Callable[[int, int, int, int], bool]


#: ``(mark, wrap)``: how an adapter rematerialises an LSTM layer whose input projection
#: runs inside the loop. ``wrap(body)`` is the step body the scan differentiates, keeping
#: for the backward pass only the carry and what ``mark`` tagged in `step` (the
#: pre-activation gates) and recomputing the rest; both leave the values unchanged
#: (JAX: ``jax.checkpoint`` with a names policy, ``d2lcompat_jax._adapter``).
Remat = tuple[Callable[[Any], Any],
              Callable[[Callable[[tuple[Any, ...], Any], tuple[Any, ...]]],
                       Callable[[tuple[Any, ...], Any], tuple[Any, ...]]]]


def scan_layers(
    mode: str,
    x: Any,
    states: Sequence[Any],
    weights: Sequence[Any],
    num_layers: int,
    bidirectional: bool,
    scan: Scan,
    hoist: bool | Hoist = True,
    remat: Remat | None = None,
) -> tuple[Any, list[Any]]:
    """`Backend.rnn` from `step` and a framework's ``scan`` (JAX, TensorFlow call it
    inside their compiled functions). Where ``hoist`` says so (a bool, or a `Hoist`
    asked per layer), the input projection of all time steps is one matrix product per
    layer and direction and only ``h · W_hhᵀ`` runs inside the loop; otherwise the loop
    projects each step's input itself (faster on XLA's CPU backend at some sizes:
    ``d2lcompat_jax._adapter.hoists_input_projection``). ``remat`` (`Remat`) wraps the
    step of an LSTM layer that projects inside the loop."""
    dirs = 2 if bidirectional else 1
    finals: list[list[Any]] = [[] for _ in states]
    for layer in range(num_layers):
        outs = []
        for d in range(dirs):
            k = layer * dirs + d
            w_ih, w_hh, b_ih, b_hh = weights[4 * k : 4 * k + 4]
            if mode != "gru":  # GRU's b_hn sits inside r * (...): it stays
                b_ih = b_ih + b_hh  # one add of two vectors; none inside the loop
                b_hh = None
            carry = tuple(s[k] for s in states)
            w_hh = _ops.transpose(w_hh)  # once, not at every step (nor in the backward loop)
            if isinstance(hoist, bool):
                hoisted = hoist
            else:
                t_, n_, c_ = x.shape
                hoisted = hoist(t_, n_, c_, w_hh.shape[0])
            xs = _ops.linear(x, w_ih, b_ih) if hoisted else x
            w_ih_t = None if hoisted else _ops.transpose(w_ih)  # once, outside the loop

            remat_here = remat if remat is not None and mode == "lstm" and not hoisted else None
            mark = None if remat_here is None else remat_here[0]

            def body(c: tuple[Any, ...], g: Any, w: Any = w_hh, b: Any = b_hh,
                     wi: Any = w_ih_t, bi: Any = b_ih, m: Any = mark) -> tuple[Any, ...]:
                if wi is not None:  # not hoisted: this step's input projection
                    g = _ops.matmul(g, wi) + bi
                return step(mode, g, c, w, b, m)

            last, hs = scan(body if remat_here is None else remat_here[1](body), carry, xs,
                            d == 1)
            outs.append(hs)
            for i, s in enumerate(last):
                finals[i].append(s)
        x = outs[0] if dirs == 1 else _ops.concat(outs, axis=-1)
    return x, [_ops.stack(f, axis=0) for f in finals]


# ------------------------------------------------------------------------ layers
def _check_args(kind: str, hidden_size: Any, num_layers: Any, dropout: Any, layout: str) -> None:
    if int(hidden_size) < 1:
        raise D2LCompatError(f"{kind}: hidden_size must be >= 1; got {hidden_size}.")
    if int(num_layers) < 1:
        raise D2LCompatError(f"{kind}: num_layers must be >= 1; got {num_layers}.")
    if not 0.0 <= float(dropout) < 1.0:
        raise D2LCompatError(f"{kind}: dropout must be in [0, 1); got {dropout}.")
    if layout not in _LAYOUTS:
        raise D2LCompatError(
            f"{kind}: layout must be 'TNC' (time, batch, features) or 'NTC'; got {layout!r}."
        )


def _rnn_mode(kind: str, activation: str) -> str:
    if activation not in ("relu", "tanh"):
        raise D2LCompatError(f"{kind}: activation must be 'relu' or 'tanh'; got {activation!r}.")
    return f"rnn_{activation}"


class _RNNLayer(Block):
    """The body of `RNN`, `LSTM` and `GRU`: parameters, states, layouts, dropout."""

    _n_states: ClassVar[int] = 1

    def __init__(
        self,
        mode: str,
        hidden_size: int,
        num_layers: int,
        layout: str,
        dropout: float,
        bidirectional: bool,
        input_size: int,
        i2h_weight_initializer: Any,
        h2h_weight_initializer: Any,
        i2h_bias_initializer: Any,
        h2h_bias_initializer: Any,
        dtype: str,
    ) -> None:
        super().__init__()
        kind = type(self).__name__
        _check_args(kind, hidden_size, num_layers, dropout, layout)
        self._mode = mode
        self._hidden = int(hidden_size)
        self._layers = int(num_layers)
        self._layout = layout
        self._dropout = float(dropout)
        self._dirs = 2 if bidirectional else 1
        self._input_size = int(input_size)
        self._dtype = _canonical(dtype)  # traced code casts to it without parsing
        gh = GATES[mode] * self._hidden
        # Gluon's registration order: per layer, per direction, i2h/h2h weights then biases.
        names: list[str] = []
        for i in range(self._layers):
            n_in = self._input_size if i == 0 else self._hidden * self._dirs
            for j in "lr"[: self._dirs]:
                for suffix, shape, init in (
                    ("i2h_weight", (gh, n_in), i2h_weight_initializer),
                    ("h2h_weight", (gh, self._hidden), h2h_weight_initializer),
                    ("i2h_bias", (gh,), i2h_bias_initializer),
                    ("h2h_bias", (gh,), h2h_bias_initializer),
                ):
                    name = f"{j}{i}_{suffix}"
                    setattr(self, name, Parameter(shape, dtype=dtype, init=init))
                    names.append(name)
        self._names = tuple(names)

    # ------------------------------------------------------------------ states
    def state_info(self, batch_size: int = 0) -> list[dict[str, Any]]:
        """The shape and layout of each state (Gluon's ``state_info``)."""
        shape = (self._layers * self._dirs, int(batch_size), self._hidden)
        return [{"shape": shape, "__layout__": "LNC"} for _ in range(self._n_states)]

    def begin_state(self, batch_size: int = 0, func: Any = None, device: Any = None,
                    dtype: Any = None) -> list[Any]:
        """The initial states: zeros of shape ``(num_layers * directions, batch_size,
        hidden_size)``, one for RNN/GRU (``[h]``), two for LSTM (``[h, c]``). ``func``
        (Gluon's), e.g. ``ops.zeros``, is called as ``func(shape)`` instead.

        Examples
        --------
        >>> from d2lcompat import nn, ops
        >>> [ops.shape(s) for s in nn.LSTM(8, num_layers=2).begin_state(3)]
        [(2, 3, 8), (2, 3, 8)]
        """
        if int(batch_size) < 1:
            raise D2LCompatError(
                f"{self._describe()}.begin_state: batch_size must be >= 1; got {batch_size}."
            )
        shape = (self._layers * self._dirs, int(batch_size), self._hidden)
        if func is not None:
            return [func(shape) for _ in range(self._n_states)]
        return [_ops.zeros(shape, dtype=dtype or self._dtype, device=device)
                for _ in range(self._n_states)]

    # ----------------------------------------------------------------- forward
    def infer_shape(self, x: Any, *args: Any) -> None:
        shape = self._check_input(x)
        n_in = int(shape[2])
        gh = GATES[self._mode] * self._hidden
        for j in "lr"[: self._dirs]:
            getattr(self, f"{j}0_i2h_weight").shape = (gh, n_in)
        self._input_size = n_in

    def _check_input(self, x: Any) -> tuple[Any, ...]:
        shape = tuple(x.shape)
        if len(shape) != 3:
            raise ShapeError(
                f"{self._describe()} expects a 3-D input in layout {self._layout!r} "
                f"({'time, batch, features' if self._layout == 'TNC' else 'batch, time, features'}); "
                f"received shape {shape}."
            )
        return shape

    def forward(self, x: Any, states: Any = None) -> Any:
        shape = self._check_input(x)
        want = self.l0_i2h_weight._shape[1]
        if shape[2] != want and shape[2] is not None:
            raise ShapeError(
                f"{self._describe()} expects inputs with {want} features (the last axis); "
                f"received shape {shape}. Re-create the layer or feed {want} features."
            )
        batch = shape[1] if self._layout == "TNC" else shape[0]
        given = states is not None
        if not given:
            states = self._zero_states(x, batch)
        else:
            if not isinstance(states, (list, tuple)):
                states = [states]
            states = list(states)
            self._check_states(states, batch)
        if self._layout == "NTC":
            x = _ops.transpose(x, (1, 0, 2))
        out, new = self._run(x, states)
        if self._layout == "NTC":
            out = _ops.transpose(out, (1, 0, 2))
        return (out, new) if given else out

    def _zero_states(self, x: Any, batch: Any) -> list[Any]:
        # Zeros built from the input and a weight, never from a device lookup: they land
        # on the input's device and trace under every compiler (a symbolic batch size in
        # a relaxed tf.function, Paddle's SOT, which cannot read a traced tensor's place).
        tnc = x if self._layout == "TNC" else _ops.transpose(x, (1, 0, 2))
        col = tnc[0, :, :1] * 0.0  # (N, 1) zeros (NaN where the input is not finite)
        row = self.l0_h2h_weight.data()[:1, :] * 0.0  # (1, H) zeros
        z = active().cast(col, self._dtype) * row  # a canonical name: no parsing to trace
        lead = self._layers * self._dirs
        # Constants for the gradient: built from the input and a weight, but no path of
        # the backward pass (the fused kernels skip the states' gradient: torch's LSTM
        # layer 7.35 -> 6.94 ms at the char LSTM's size, benchmarks/rnn.py).
        zeros = active().stop_gradient(_ops.stack([z] * lead, axis=0))
        return [zeros] * self._n_states

    def _check_states(self, states: list[Any], batch: int) -> None:
        want = (self._layers * self._dirs, batch, self._hidden)
        if len(states) != self._n_states:
            raise ShapeError(
                f"{self._describe()} takes {self._n_states} state tensor(s) "
                f"({'[h, c]' if self._n_states == 2 else '[h]'}); received {len(states)}. "
                "Use layer.begin_state(batch_size)."
            )
        for i, s in enumerate(states):
            got = tuple(s.shape)
            if got != want and None not in got:
                raise ShapeError(
                    f"{self._describe()}: state {i} has shape {got}; expected {want} "
                    "(num_layers * directions, batch, hidden_size). Use "
                    "layer.begin_state(batch_size)."
                )

    def _weights(self) -> list[Any]:
        out = []
        for n in self._names:  # a loop, not a comprehension over self: Paddle's SOT tracer
            out.append(getattr(self, n).data())
        return out

    def _run(self, x: Any, states: list[Any]) -> tuple[Any, list[Any]]:
        b = active()
        weights = self._weights()
        bi = self._dirs == 2
        if self._dropout == 0.0 or self._layers == 1 or not _autograd.is_training():
            return b.rnn(self._mode, x, states, weights, self._layers, bi)
        # Dropout between layers: one layer at a time, masks from the seeded generator.
        d = self._dirs
        finals: list[list[Any]] = [[] for _ in states]
        for layer in range(self._layers):
            if layer:
                keep = generator().random(tuple(x.shape)) >= self._dropout
                mask = b.from_numpy(
                    keep.astype(np.float32) / (1.0 - self._dropout), b.dtype(x), b.device_of(x)
                )
                x = x * mask
            sl = slice(layer * d, (layer + 1) * d)
            part = []
            for s in states:
                part.append(s[sl])
            x, new = b.rnn(self._mode, x, part,
                           weights[4 * d * layer : 4 * d * (layer + 1)], 1, bi)
            for f, s in zip(finals, new):
                f.append(s)
        return x, [_ops.concat(f, axis=0) for f in finals]

    def _extra_repr(self) -> str:
        n_in = self._input_size or None
        parts = [f"{n_in} -> {self._hidden}", self._layout]
        if self._layers != 1:
            parts.append(f"num_layers={self._layers}")
        if self._dropout:
            parts.append(f"dropout={self._dropout}")
        if self._dirs == 2:
            parts.append("bidirectional")
        return ", ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._extra_repr()})"


class RNN(_RNNLayer):
    """A multi-layer Elman RNN, ``h_t = activation(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``
    (Gluon's ``rnn.RNN``; the default activation is Gluon's ``'relu'``, not PyTorch's
    ``'tanh'``).

    ``layer(X)`` returns the output ``(T, N, directions * hidden_size)`` (``NTC``:
    ``(N, T, ...)``); ``layer(X, states)`` returns ``(output, new_states)``. Parameters
    ``l0_i2h_weight (hidden_size, input_size)``, ``l0_h2h_weight``, ``l0_i2h_bias``,
    ``l0_h2h_bias``, ``r0_...`` for the reverse direction, ``l1_...`` for the next layer.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> layer = nn.RNN(16, num_layers=2); layer.initialize()
    >>> ops.shape(layer(ops.ones((5, 3, 10)))), layer.l0_i2h_weight.shape
    ((5, 3, 16), (16, 10))
    """

    def __init__(
        self,
        hidden_size: int,
        num_layers: int = 1,
        activation: str = "relu",
        layout: str = "TNC",
        dropout: float = 0.0,
        bidirectional: bool = False,
        input_size: int = 0,
        i2h_weight_initializer: Any = None,
        h2h_weight_initializer: Any = None,
        i2h_bias_initializer: Any = "zeros",
        h2h_bias_initializer: Any = "zeros",
        dtype: str = "float32",
    ) -> None:
        super().__init__(_rnn_mode("RNN", activation), hidden_size, num_layers, layout, dropout,
                         bidirectional, input_size, i2h_weight_initializer,
                         h2h_weight_initializer, i2h_bias_initializer, h2h_bias_initializer, dtype)


class LSTM(_RNNLayer):
    """A multi-layer LSTM (Gluon's ``rnn.LSTM``), gates ``i, f, c, o`` along the rows of
    each weight (``(4 * hidden_size, ...)``); states ``[h, c]``.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> lstm = nn.LSTM(8, num_layers=2, bidirectional=True); lstm.initialize()
    >>> X = ops.ones((5, 3, 4))
    >>> out, (h, c) = lstm(X, lstm.begin_state(3))
    >>> ops.shape(out), ops.shape(h), lstm.r1_i2h_weight.shape
    ((5, 3, 16), (4, 3, 8), (32, 16))
    """

    _n_states: ClassVar[int] = 2

    def __init__(
        self,
        hidden_size: int,
        num_layers: int = 1,
        layout: str = "TNC",
        dropout: float = 0.0,
        bidirectional: bool = False,
        input_size: int = 0,
        i2h_weight_initializer: Any = None,
        h2h_weight_initializer: Any = None,
        i2h_bias_initializer: Any = "zeros",
        h2h_bias_initializer: Any = "zeros",
        dtype: str = "float32",
    ) -> None:
        super().__init__("lstm", hidden_size, num_layers, layout, dropout, bidirectional,
                         input_size, i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, dtype)


class GRU(_RNNLayer):
    """A multi-layer GRU (Gluon's ``rnn.GRU``), gates ``r, z, n`` along the rows of each
    weight (``(3 * hidden_size, ...)``); ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``,
    ``h' = (1 - z) * n + z * h``.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> gru = nn.GRU(8, layout="NTC"); gru.initialize()
    >>> ops.shape(gru(ops.ones((3, 5, 4)))), gru.l0_h2h_weight.shape
    ((3, 5, 8), (24, 8))
    """

    def __init__(
        self,
        hidden_size: int,
        num_layers: int = 1,
        layout: str = "TNC",
        dropout: float = 0.0,
        bidirectional: bool = False,
        input_size: int = 0,
        i2h_weight_initializer: Any = None,
        h2h_weight_initializer: Any = None,
        i2h_bias_initializer: Any = "zeros",
        h2h_bias_initializer: Any = "zeros",
        dtype: str = "float32",
    ) -> None:
        super().__init__("gru", hidden_size, num_layers, layout, dropout, bidirectional,
                         input_size, i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, dtype)


# ------------------------------------------------------------------------- cells
class _Cell(Block):
    """The body of the cells: one layer, one direction, one time step per call."""

    _n_states: ClassVar[int] = 1

    def __init__(
        self,
        mode: str,
        hidden_size: int,
        input_size: int,
        i2h_weight_initializer: Any,
        h2h_weight_initializer: Any,
        i2h_bias_initializer: Any,
        h2h_bias_initializer: Any,
        dtype: str,
    ) -> None:
        super().__init__()
        if int(hidden_size) < 1:
            raise D2LCompatError(f"{type(self).__name__}: hidden_size must be >= 1; got {hidden_size}.")
        self._mode = mode
        self._hidden = int(hidden_size)
        self._input_size = int(input_size)
        self._dtype = dtype
        gh = GATES[mode] * self._hidden
        self.i2h_weight = Parameter((gh, self._input_size), dtype=dtype, init=i2h_weight_initializer)
        self.h2h_weight = Parameter((gh, self._hidden), dtype=dtype, init=h2h_weight_initializer)
        self.i2h_bias = Parameter((gh,), dtype=dtype, init=i2h_bias_initializer)
        self.h2h_bias = Parameter((gh,), dtype=dtype, init=h2h_bias_initializer)

    def state_info(self, batch_size: int = 0) -> list[dict[str, Any]]:
        """The shape and layout of each state (Gluon's ``state_info``)."""
        return [{"shape": (int(batch_size), self._hidden), "__layout__": "NC"}
                for _ in range(self._n_states)]

    def begin_state(self, batch_size: int = 0, func: Any = None, device: Any = None,
                    dtype: Any = None) -> list[Any]:
        """Zero states ``(batch_size, hidden_size)``: ``[h]``, or ``[h, c]`` for
        `LSTMCell`."""
        if int(batch_size) < 1:
            raise D2LCompatError(
                f"{self._describe()}.begin_state: batch_size must be >= 1; got {batch_size}."
            )
        shape = (int(batch_size), self._hidden)
        if func is not None:
            return [func(shape) for _ in range(self._n_states)]
        return [_ops.zeros(shape, dtype=dtype or self._dtype, device=device)
                for _ in range(self._n_states)]

    def infer_shape(self, x: Any, *args: Any) -> None:
        shape = tuple(x.shape)
        if len(shape) < 2:
            raise ShapeError(f"{self._describe()} expects inputs (batch, features); got {shape}.")
        self.i2h_weight.shape = (GATES[self._mode] * self._hidden, int(shape[-1]))
        self._input_size = int(shape[-1])

    def _states(self, states: Any, batch: int) -> list[Any]:
        if not isinstance(states, (list, tuple)):
            states = [states]
        states = list(states)
        want = (batch, self._hidden)
        if len(states) != self._n_states:
            raise ShapeError(
                f"{self._describe()} takes {self._n_states} state tensor(s); received "
                f"{len(states)}. Use cell.begin_state(batch_size)."
            )
        for i, s in enumerate(states):
            got = tuple(s.shape)
            if got != want and None not in got:
                raise ShapeError(
                    f"{self._describe()}: state {i} has shape {got}; expected {want} "
                    "(batch, hidden_size). Use cell.begin_state(batch_size)."
                )
        return states

    def _run_sequence(self, x: Any, states: list[Any]) -> tuple[Any, list[Any]]:
        """The cell over a whole ``TNC`` sequence, with the adapter's fused primitive."""
        want = self.i2h_weight._shape[1]
        if x.shape[-1] != want and x.shape[-1] is not None:
            raise ShapeError(
                f"{self._describe()} expects inputs with {want} features; received shape "
                f"{tuple(x.shape)}."
            )
        weights = [self.i2h_weight.data(), self.h2h_weight.data(), self.i2h_bias.data(),
                   self.h2h_bias.data()]
        out, new = active().rnn(self._mode, x, [_ops.expand_dims(s, 0) for s in states],
                                weights, 1, False)
        return out, [s[0] for s in new]

    def forward(self, x: Any, states: Any) -> tuple[Any, list[Any]]:
        if len(x.shape) != 2:
            raise ShapeError(
                f"{self._describe()} expects one time step (batch, features); received shape "
                f"{tuple(x.shape)}. Use unroll() for a sequence."
            )
        st = self._states(states, x.shape[0])
        out, new = self._run_sequence(_ops.expand_dims(x, 0), st)
        return out[0], new

    def unroll(
        self,
        length: int,
        inputs: Any,
        begin_state: Any = None,
        layout: str = "NTC",
        merge_outputs: bool | None = None,
        valid_length: Any = None,
    ) -> tuple[Any, list[Any]]:
        """Run the cell over ``length`` time steps (Gluon's ``unroll``): ``inputs`` is a
        tensor in ``layout`` or a list of ``length`` tensors ``(batch, features)``. Returns
        ``(outputs, states)``; ``outputs`` is one tensor in ``layout`` when
        ``merge_outputs`` is True (or None with a tensor input), else a list. The whole
        sequence runs as one call of the adapter's fused kernel.

        Examples
        --------
        >>> from d2lcompat import nn, ops
        >>> cell = nn.LSTMCell(6); cell.initialize()
        >>> out, (h, c) = cell.unroll(4, ops.ones((2, 4, 3)))
        >>> ops.shape(out), ops.shape(h)
        ((2, 4, 6), (2, 6))
        """
        if layout not in _LAYOUTS:
            raise D2LCompatError(f"unroll: layout must be 'TNC' or 'NTC'; got {layout!r}.")
        if valid_length is not None:
            raise D2LCompatError(
                "unroll(valid_length=...) is not supported; mask the outputs with "
                "ops.sequence_mask instead."
            )
        listed = isinstance(inputs, (list, tuple))
        if listed:
            if len(inputs) != int(length):
                raise ShapeError(f"unroll: length={length} but {len(inputs)} inputs were given.")
            x = _ops.stack(list(inputs), axis=0)
        else:
            x = inputs if layout == "TNC" else _ops.transpose(inputs, (1, 0, 2))
            if len(x.shape) != 3 or x.shape[0] != int(length):
                raise ShapeError(
                    f"unroll: expected {length} time steps in layout {layout!r}; received "
                    f"shape {tuple(inputs.shape)}."
                )
        if not self._ready:
            self._prepare(x[0])
        batch = x.shape[1]
        st = self.begin_state(batch, device=_device_of(x)) if begin_state is None else begin_state
        out, new = self._run_sequence(x, self._states(st, batch))
        merge = (not listed) if merge_outputs is None else merge_outputs
        if not merge:
            return [out[t] for t in range(int(length))], new
        return (out if layout == "TNC" else _ops.transpose(out, (1, 0, 2))), new

    def _extra_repr(self) -> str:
        return f"{self._input_size or None} -> {self._hidden}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._extra_repr()})"


def _device_of(x: Any) -> Any:
    b = active()
    if b.is_traced(x):
        return None
    from .._device import device_of

    return device_of(x)


class RNNCell(_Cell):
    """One step of an Elman RNN (Gluon's ``rnn.RNNCell``; its default activation is
    ``'tanh'``, unlike the `RNN` layer's ``'relu'``). Parameters ``i2h_weight``,
    ``h2h_weight``, ``i2h_bias``, ``h2h_bias``: one layer of `RNN` without the ``l0_``.

    Examples
    --------
    >>> from d2lcompat import nn, ops
    >>> cell = nn.RNNCell(5); cell.initialize()
    >>> out, [h] = cell(ops.ones((2, 3)), cell.begin_state(2))
    >>> ops.shape(out), ops.shape(h)
    ((2, 5), (2, 5))
    """

    def __init__(
        self,
        hidden_size: int,
        activation: str = "tanh",
        i2h_weight_initializer: Any = None,
        h2h_weight_initializer: Any = None,
        i2h_bias_initializer: Any = "zeros",
        h2h_bias_initializer: Any = "zeros",
        input_size: int = 0,
        dtype: str = "float32",
    ) -> None:
        super().__init__(_rnn_mode("RNNCell", activation), hidden_size, input_size,
                         i2h_weight_initializer, h2h_weight_initializer, i2h_bias_initializer,
                         h2h_bias_initializer, dtype)


class LSTMCell(_Cell):
    """One step of an LSTM (Gluon's ``rnn.LSTMCell``), gates ``i, f, c, o``; states
    ``[h, c]``, each ``(batch, hidden_size)``."""

    _n_states: ClassVar[int] = 2

    def __init__(
        self,
        hidden_size: int,
        i2h_weight_initializer: Any = None,
        h2h_weight_initializer: Any = None,
        i2h_bias_initializer: Any = "zeros",
        h2h_bias_initializer: Any = "zeros",
        input_size: int = 0,
        dtype: str = "float32",
    ) -> None:
        super().__init__("lstm", hidden_size, input_size, i2h_weight_initializer,
                         h2h_weight_initializer, i2h_bias_initializer, h2h_bias_initializer, dtype)


class GRUCell(_Cell):
    """One step of a GRU (Gluon's ``rnn.GRUCell``), gates ``r, z, n``."""

    def __init__(
        self,
        hidden_size: int,
        i2h_weight_initializer: Any = None,
        h2h_weight_initializer: Any = None,
        i2h_bias_initializer: Any = "zeros",
        h2h_bias_initializer: Any = "zeros",
        input_size: int = 0,
        dtype: str = "float32",
    ) -> None:
        super().__init__("gru", hidden_size, input_size, i2h_weight_initializer,
                         h2h_weight_initializer, i2h_bias_initializer, h2h_bias_initializer, dtype)
