"""`Trainer` (Gluon's) and `train_step`, the whole training step as one function.

Where is the compiled step decided? `train_step` returns a `TrainStep`. Each call
checks whether the net is hybridized: if not, it runs the eager step
(`d2lcompat.autograd.grad` + `Trainer.step`); if so, it builds once a pure function
``step(values, scalars, X, y) -> (mean loss, new values)`` — forward, loss, backward
and the optimizer's rule together, with every parameter, running statistic and
optimizer slot as explicit inputs and outputs — and hands it to the adapter's
`Backend.compile_train_step`: ``jax.jit`` with donated buffers, a ``tf.function``
that assigns the variables inside the graph, or the eager function where compiling
does not pay (torch, paddle; see docs/training.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _state
from . import autograd as _autograd
from . import ops as _ops
from . import optim as _optim
from . import parallel as _parallel
from ._clip import _check_max_norm, global_norm_scale
from ._errors import CheckpointError, D2LCompatError
from ._parameter import Parameter
from ._registry import active

if TYPE_CHECKING:
    from .nn._block import Block

__all__ = ["TrainStep", "Trainer", "train_step"]

_STEP_KEY = "__trainer__.num_update"
_LR_KEY = "__trainer__.lr"


class Trainer:
    """Applies an optimizer to a set of parameters (Gluon's ``gluon.Trainer``).

    Parameters
    ----------
    params : ParameterDict, dict or iterable of Parameter
        Usually ``net.collect_params()``; tied parameters are updated once.
    optimizer : str or Optimizer
        ``'sgd'``, ``'adam'``, ``'adamw'``, ``'rmsprop'`` or an `optim.Optimizer`.
    optimizer_params : dict, optional
        Hyper-parameters, with Gluon's keys (``learning_rate``, ``wd``, ``momentum``,
        ``beta1``, ``beta2``, ``epsilon``) or the keyword names (``lr``, ...).
    clip_global_norm : float, optional
        Before each update, rescale the gradients (already scaled by ``1 / batch_size``)
        so that their joint L2 norm is at most this (`d2lcompat.clip_global_norm`), in
        `step` and inside the compiled `train_step` alike.

    Examples
    --------
    >>> import d2lcompat
    >>> from d2lcompat import nn, ops, autograd, init
    >>> net = nn.Dense(1, in_units=2, use_bias=False); net.initialize(init.Constant(1.0))
    >>> trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5})
    >>> X = ops.ones((4, 2))
    >>> _ = autograd.grad(lambda: ops.sum(net(X)), net.collect_params())
    >>> trainer.step(batch_size=4)          # gradient 4 per weight, scaled by 1/4
    >>> ops.to_numpy(net.weight.data()).tolist()
    [[0.5, 0.5]]
    """

    def __init__(
        self,
        params: Mapping[str, Parameter] | Iterable[Parameter],
        optimizer: str | _optim.Optimizer = "sgd",
        optimizer_params: Mapping[str, Any] | None = None,
        clip_global_norm: float | None = None,
    ) -> None:
        self.clip_global_norm = None if clip_global_norm is None else _check_max_norm(clip_global_norm)
        if optimizer_params is not None and not isinstance(optimizer_params, Mapping):
            raise _optim.OptimizerError(
                f"Trainer: optimizer_params must be a dict such as {{'learning_rate': 0.1}}; "
                f"received {type(optimizer_params).__name__}."
            )
        self._optimizer = _optim.create(optimizer, params, **dict(optimizer_params or {}))
        if not self._optimizer.params:
            raise _optim.OptimizerError(
                "Trainer got no parameters; pass net.collect_params() (after creating the net)."
            )

    # ------------------------------------------------------------ attributes
    @property
    def optimizer(self) -> _optim.Optimizer:
        """The optimizer (its hyper-parameters, slots and step count)."""
        return self._optimizer

    @property
    def learning_rate(self) -> float:
        """The current learning rate."""
        return self._optimizer.lr

    def set_learning_rate(self, lr: float) -> None:
        """Change the learning rate (seen by the next step, compiled or not)."""
        self._optimizer.lr = _optim._base._number("Trainer", "learning_rate", lr, 0.0, low_open=True)

    # ----------------------------------------------------------------- steps
    def step(self, batch_size: int, ignore_stale_grad: bool = False) -> None:
        """All-reduce the gradients (when several workers train) and update every
        parameter with its gradient scaled by ``1 / batch_size``.

        The gradients are those `d2lcompat.autograd.grad` stored (or the framework's
        own backward pass). A trainable parameter without a gradient raises, unless
        ``ignore_stale_grad=True`` (then it is left unchanged), as in Gluon.
        """
        self.allreduce_grads()
        self.update(batch_size, ignore_stale_grad)

    def allreduce_grads(self) -> None:
        """Average each gradient over the workers (`d2lcompat.parallel`); a no-op on
        one worker."""
        if _parallel.world_size() <= 1:
            return
        todo = [(n, p, p.grad()) for n, p in self._optimizer.trainable()]
        todo = [t for t in todo if t[2] is not None]
        reduced = _parallel.all_reduce_mean([g for _, _, g in todo])
        for (_, p, _), g in zip(todo, reduced):
            p._grad = g

    def update(self, batch_size: int, ignore_stale_grad: bool = False) -> None:
        """Update the parameters from their gradients (no all-reduce)."""
        scale = _scale(batch_size)
        todo = []
        for name, p in self._optimizer.trainable():
            g = p.grad()
            if g is None:
                if p._var is None:
                    p._raise_uninitialized()
                if ignore_stale_grad:
                    continue
                raise D2LCompatError(
                    f"Trainer.step: parameter '{name}' has no gradient. Compute gradients "
                    "with d2lcompat.autograd.grad(...) first, or pass ignore_stale_grad=True "
                    "to skip parameters the loss does not use."
                )
            todo.append((name, p, g))
        if self.clip_global_norm is not None and todo:
            # Gluon's clip_global_norm on the gradients of the mean loss (times 1/batch).
            _, clip = global_norm_scale([g * scale for _, _, g in todo], self.clip_global_norm)
            todo = [(n, p, g * _ops.cast(clip, active().dtype(g))) for n, p, g in todo]
        self._optimizer.apply(todo, scale)

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        self._optimizer.zero_grad()

    # ---------------------------------------------------------------- states
    def save_states(self, path: str | os.PathLike[str]) -> None:
        """Save the optimizer state (slots, step count, learning rate) to ``path``, in
        d2lcompat's portable safetensors format (atomic, loadable on any backend)."""
        from ._io import save

        opt = self._optimizer
        b = active()
        out: dict[str, Any] = {}
        for name, p in opt.trainable():
            if p._var is None:
                continue
            for slot_name, var in zip(opt.slot_names, opt.slots_of(name, p)):
                out[f"{name}.{slot_name}"] = b.to_numpy(b.read(var))
        out[_STEP_KEY] = np.asarray(opt.num_update, dtype=np.int32)
        out[_LR_KEY] = np.asarray(opt.lr, dtype=np.float32)
        save(path, out)

    def load_states(self, path: str | os.PathLike[str]) -> None:
        """Load a state saved by `save_states`. Every name and shape is checked before
        anything changes; a mismatch raises one `CheckpointError` listing the problems."""
        from ._io import load

        opt = self._optimizer
        b = active()
        data = load(path)
        if not isinstance(data, dict) or _STEP_KEY not in data:
            raise CheckpointError(f"{os.fspath(path)!r} is not a Trainer state (no {_STEP_KEY!r}).")
        plan: list[tuple[list[Any], int, Any]] = []
        problems: list[str] = []
        expected = {_STEP_KEY, _LR_KEY}
        for name, p in opt.trainable():
            if p._var is None:
                problems.append(f"parameter '{name}' is not initialized yet")
                continue
            slots = opt.slots_of(name, p)
            for i, slot_name in enumerate(opt.slot_names):
                key = f"{name}.{slot_name}"
                expected.add(key)
                if key not in data:
                    problems.append(f"missing {key!r}")
                    continue
                got = tuple(b.shape(data[key]))
                if got != tuple(p.shape):
                    problems.append(f"{key!r} has shape {got}, the parameter {tuple(p.shape)}")
                    continue
                plan.append((slots, i, data[key]))
        extra = sorted(set(data) - expected)
        if extra:
            problems.append(f"unexpected entries {extra[:5]} (another optimizer or model?)")
        if problems:
            raise CheckpointError(
                f"Cannot load the trainer state {os.fspath(path)!r} into {opt!r}: "
                + "; ".join(problems)
                + ". Load a state saved by the same optimizer for the same parameters."
            )
        for slots, i, value in plan:
            var = slots[i]
            value = b.move(b.cast(value, b.dtype(var)), b.device_of(var), copy=False)
            slots[i] = b.assign(var, value)
        opt._t = int(_ops.item(data[_STEP_KEY]))
        if _LR_KEY in data:
            opt.lr = float(_ops.item(data[_LR_KEY]))

    def __repr__(self) -> str:
        return f"Trainer({self._optimizer!r}, {len(self._optimizer.params)} parameters)"


def _scale(batch_size: Any) -> float:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size <= 0:
        raise D2LCompatError(
            f"batch_size must be a positive int (the number of samples the gradients sum "
            f"over); received {batch_size!r}."
        )
    return 1.0 / int(batch_size)


class TrainStep:
    """One training step: ``step(X, y)`` runs forward, loss, backward and the update,
    and returns the mean loss of the batch (a native 0-d tensor). See `train_step`."""

    def __init__(self, net: Block, loss: Callable[..., Any], trainer: Trainer) -> None:
        self._net = net
        self._loss = loss
        self._trainer = trainer
        self._compiled: dict[bool, Callable[..., Any]] = {}  # by "returns the predictions"
        self._key: tuple[Any, ...] = ()
        self._params: list[Parameter] = []  # trainable, then others (inputs of the step)
        self._slot_lists: list[list[Any]] = []  # the optimizer's slot lists, in that order
        self._batch: Any = None  # the last batch size, and its 1/batch_size
        self._scale = 1.0
        self._n_train = 0

    # ------------------------------------------------------------------ eager
    def _eager(self, X: Any, y: Any) -> Any:
        trainer, net, loss = self._trainer, self._net, self._loss
        b = active()

        def objective() -> tuple[Any, Any]:
            pred = net(X)
            value = loss(pred, y)
            return _ops.sum(value), (value, pred)

        with _autograd.train_mode():
            _, (per_sample, pred), _ = _autograd.grad_with_aux(
                objective, dict(trainer.optimizer.trainable())
            )
        trainer.step(int(b.shape(X)[0]))
        return _ops.mean(per_sample), pred

    # --------------------------------------------------------------- compiled
    def _build(self, X: Any, y: Any, outputs: bool) -> None:
        b = active()
        net, loss = self._net, self._loss
        opt = self._trainer.optimizer
        if any(p._var is None for p in net.collect_params().values()):
            # Deferred shapes: one eager step creates the parameters (and is a step).
            raise _NeedsEager
        train = [p for _, p in opt.trainable()]
        names = [n for n, _ in opt.trainable()]
        ids = {id(p) for p in train}
        others: list[Parameter] = []
        for p in net.collect_params().values():
            if id(p) not in ids and all(p is not q for q in others):
                others.append(p)
        params = train + others
        n_train, n_all = len(train), len(params)
        slot_counts = [len(opt.slots_of(n, p)) for n, p in zip(names, train)]
        index = {id(p): i for i, p in enumerate(params)}
        clip_norm = self._trainer.clip_global_norm

        def step(values: Sequence[Any], scalars: Any, X: Any, y: Any) -> tuple[Any, list[Any]]:
            fixed = list(values[n_train:n_all])

            def objective(weights: Sequence[Any]) -> tuple[Any, tuple[list[Any], Any]]:
                with _autograd.substituted(params, list(weights) + fixed), \
                        _state.collecting() as updates, _autograd.train_mode():
                    pred = net(X)
                    value = loss(pred, y)
                new_state: list[Any] = [None] * (n_all - n_train)
                for p, v in updates.values():
                    i = index.get(id(p))
                    if i is not None and i >= n_train:
                        new_state[i - n_train] = v
                kept = b.stop_gradient(pred) if outputs else None
                return _ops.sum(value), (new_state, kept)

            total, grads, (new_state, pred) = b.value_and_grad_aux(objective, values[:n_train])
            s = [scalars[i] for i in range(len(opt.scalars(1)) + 1)]
            scale, rule_s = s[0], s[1:]
            if clip_norm is not None:
                _, clip = global_norm_scale([g * scale for g in grads], clip_norm)
                grads = [g * _ops.cast(clip, b.dtype(g)) for g in grads]
            new_w: list[Any] = []
            new_slots: list[Any] = []
            k = n_all
            for w, g, n in zip(values[:n_train], grads, slot_counts):
                w = b.stop_gradient(b.read(w))
                slots = [b.read(v) for v in values[k : k + n]]
                # Gradients carry no graph (the differentiation is over): no stop_gradient.
                nw, ns = opt.rule(w, g * scale, slots, rule_s)
                new_w.append(nw)
                new_slots.extend(ns)
                k += n
            mean = total * scale  # the batch's mean loss: its sum times 1/batch
            return ((mean, pred) if outputs else mean), new_w + new_state + new_slots

        step.__name__ = step.__qualname__ = f"train_step_{type(net).__name__}"
        self._params = params
        self._n_train = n_train
        self._slot_lists = [opt.slots_of(n, p) for n, p in zip(names, train)]
        self._compiled[outputs] = self._compile_step(step)
        self._key = self._structure()

    def _compile_step(self, step: Callable[..., Any]) -> Callable[..., Any]:
        """The adapter's compiled ``step`` (`d2lcompat.parallel` compiles it sharded)."""
        return active().compile_train_step(step)

    def _structure(self) -> tuple[Any, ...]:
        opt = self._trainer.optimizer
        # The learning rate is an input of the compiled step; the other hyper-parameters
        # are constants of it, so changing one (the optimizer's `version`) builds the
        # step again, as does a new set of parameters of the trainer.
        return (opt.version, len(opt.params), self._trainer.clip_global_norm)

    def _run_compiled(self, X: Any, y: Any, outputs: bool) -> Any:
        # The hot path of a compiled step: a few Python operations around one call of
        # the framework's compiled function (a small model's step takes ~50 µs).
        opt = self._trainer._optimizer
        if self._key != self._structure():
            self._compiled.clear()
        compiled = self._compiled.get(outputs)
        if compiled is None:
            self._build(X, y, outputs)
            compiled = self._compiled[outputs]
        n = X.shape[0]
        if n != self._batch:
            self._scale = _scale(int(n))
            self._batch = n
        opt._t += 1
        scalars = (self._scale, *opt.scalars(opt._t))
        params = self._params
        values = [p._var for p in params]
        for slots in self._slot_lists:
            values += slots
        out, new = compiled(values, scalars, X, y)
        for p, v in zip(params, new):
            p._var = v
        k = len(params)
        for slots in self._slot_lists:
            m = len(slots)
            slots[:] = new[k : k + m]
            k += m
        return out  # type: ignore[no-any-return]

    def __call__(self, X: Any, y: Any) -> Any:
        return self._step(X, y, False)

    def with_outputs(self, X: Any, y: Any) -> tuple[Any, Any]:
        """One step, returning ``(mean loss, predictions)``: the network's outputs on
        ``X`` before the update, cut from the graph (what `fit` measures accuracy on)."""
        return self._step(X, y, True)  # type: ignore[no-any-return]

    def _step(self, X: Any, y: Any, outputs: bool) -> Any:
        # Several workers: the eager step, whose Trainer.step all-reduces the gradients
        # (the compiled step applies them inside the compiled function).
        b = active()
        compiled = "forward" in self._net.__dict__ and b.SUPPORTS_COMPILE and b.COMPILES_TRAIN_STEP
        if compiled and _parallel.world_size() <= 1:
            try:
                return self._run_compiled(X, y, outputs)
            except _NeedsEager:
                pass
        mean, pred = self._eager(X, y)
        return (mean, pred) if outputs else mean


class _NeedsEager(Exception):
    """Internal: the net still has deferred parameters; run one eager step first."""


def train_step(
    net: Block, loss: Callable[..., Any], trainer: Trainer, devices: Sequence[Any] | None = None
) -> TrainStep:
    """The training step of ``net`` under ``loss`` and ``trainer``: ``step(X, y)`` runs
    forward, loss, backward and the optimizer update, and returns the batch's mean loss.

    The gradient is that of the summed per-sample loss scaled by ``1 / batch_size``
    (Gluon's ``l.backward(); trainer.step(batch_size)``). Eagerly (``net`` not
    hybridized) it is exactly that loop, and stores the gradients in
    ``param.grad()``. After ``net.hybridize()`` it is one compiled function of the
    framework — forward, backward and update together — with the same numbers; the
    compiled step keeps no gradients (``param.grad()`` is not updated) and, under
    JAX, donates the parameter and optimizer buffers (arrays read from
    ``param.data()`` before a step are invalid after it; read them again).

    Parameters
    ----------
    net : Block
    loss : callable
        ``loss(pred, label)`` returning one value per sample (a `d2lcompat.loss` block).
    trainer : Trainer
    devices : list of Device, optional
        Split each batch over these devices of this process (data parallel, §17).

    Examples
    --------
    >>> import d2lcompat
    >>> from d2lcompat import nn, ops, loss, init
    >>> d2lcompat.seed(0)
    >>> net = nn.Dense(1, in_units=2); net.initialize(init.Constant(0.0))
    >>> trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    >>> step = d2lcompat.train_step(net, loss.L2Loss(), trainer)
    >>> X, y = ops.ones((4, 2)), ops.ones((4, 1))
    >>> round(float(ops.item(step(X, y))), 4), round(float(ops.item(step(X, y))), 4)
    (0.5, 0.245)
    """
    if devices is not None and len(devices) > 1:
        # The framework's engine splits each batch over the devices (parallel.DeviceParallel).
        return _parallel.data_parallel_step(net, loss, trainer, devices)  # type: ignore[return-value]
    return TrainStep(net, loss, trainer)
