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

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _state
from . import autograd as _autograd
from . import ops as _ops
from . import optim as _optim
from . import parallel as _parallel
from ._clip import _check_max_norm, clip_scaled, global_norm_scale
from ._errors import CheckpointError, D2LCompatError, DataError, NonFiniteLossError
from ._io.stformat import stored_nbytes
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
        self._allreduce_grads_with([])

    def _allreduce_grads_with(self, extra: Sequence[Any]) -> list[Any]:
        """`allreduce_grads`, averaging the tensors ``extra`` in the same all-reduce (one
        flat buffer per dtype: no extra round trip); returns them averaged."""
        if _parallel.world_size() <= 1:
            return list(extra)
        todo = [(n, p, p._current_grad()) for n, p in self._optimizer.trainable()]
        todo = [t for t in todo if t[2] is not None]
        reduced = _parallel.all_reduce_mean([*extra, *(g for _, _, g in todo)])
        for (_, p, _), g in zip(todo, reduced[len(extra):]):
            p._grad = g
        return reduced[:len(extra)]

    def update(self, batch_size: int, ignore_stale_grad: bool = False) -> None:
        """Update the parameters from their gradients (no all-reduce)."""
        scale = _scale(batch_size)
        todo = []
        for name, p in self._optimizer.trainable():
            g = p._current_grad()
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
            _, clipped = clip_scaled([g for _, _, g in todo], self.clip_global_norm, scale)
            todo = [(n, p, g) for (n, p, _), g in zip(todo, clipped)]
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

    def __init__(
        self, net: Block, loss: Callable[..., Any], trainer: Trainer, stop_on_nan: bool = False
    ) -> None:
        self._net = net
        self._loss = loss
        self._trainer = trainer
        self._stop_on_nan = bool(stop_on_nan)
        # The loss's host-side label check (`Loss.check_labels`), run at the entry of a
        # compiled step, where the labels are concrete and the loss sees tracers.
        self._check_labels: Callable[..., None] | None = (
            getattr(loss, "check_labels", None) if getattr(loss, "checks_labels", False) else None
        )
        # The loss's sum over the batch where it has a cheaper one than ops.sum of the
        # per-sample values (`Loss._summed`: L2Loss), decided once: the eager step
        # differentiates that sum.
        make = getattr(loss, "_summed", None)
        self._summed: Callable[[Any, Any], Any] | None = make() if callable(make) else None
        self._pred_shape: tuple[int, ...] | None = None  # of the last eager step
        self._compiled: dict[bool, Callable[..., Any]] = {}  # by "returns the predictions"
        self._key: tuple[Any, ...] = ()
        self._params: list[Parameter] = []  # trainable, then others (inputs of the step)
        self._slot_lists: list[list[Any]] = []  # the optimizer's slot lists, in that order
        self._batch: Any = None  # the last batch size, and its 1/batch_size
        self._scale = 1.0
        self._n_train = 0
        self._attrs: list[_state.TensorAttr] = []  # tensor attributes (state), after the slots
        # The eager step's plan (`_eager_plan`): its structure key, differentiator, params.
        self._eager_key: tuple[Any, ...] = ()
        self._eager_diff: _autograd.Differentiator | None = None
        self._eager_vars: list[Parameter] = []
        self._eager_concat: tuple[int, ...] | None = None  # the probe's form (`_probe_concatenates`)
        # Several workers, eager step: the compiled all-reduce and update
        # (`_reduce_and_update`), by the structure it was built for; False: not possible.
        self._reduce_update: Any = None
        self._reduce_update_key: tuple[Any, ...] = ()

    # ------------------------------------------------------------------ eager
    def _eager(self, X: Any, y: Any) -> Any:
        trainer, net, loss = self._trainer, self._net, self._loss
        b = active()
        diff = self._eager_plan()
        if diff is None:  # deferred parameters, or nothing to train: the general path
            return self._eager_general(X, y)

        summed = self._summed

        def objective() -> tuple[Any, Any]:
            pred = net(X)
            if summed is not None:  # the loss's own sum over the batch (`Loss._summed`)
                return summed(pred, y), pred
            return _ops.sum(loss(pred, y)), pred

        training = _autograd._TRAINING
        training.append(True)
        try:
            total, pred, grads = diff(objective, check=False, inputs=(X, y))  # a sum: a scalar
        finally:
            training.pop()
        n = b.shape(X)[0]
        if n != self._batch:
            self._scale = _scale(int(n))
            self._batch = n
        self._pred_shape = tuple(b.shape(pred))
        if _parallel.world_size() > 1:
            mean = self._reduce_and_update(total)
            if mean is None:
                mean = self._update_checked(total * self._scale, self._eager_vars, int(n))
            return mean, pred
        # The batch's mean loss, NaN whenever a gradient is not finite (`_eager_general`).
        try:
            mean = _checked_mean(total, self._scale, grads, self._eager_concat)
        except Exception:  # noqa: BLE001 - parameters moved to several devices since
            self._eager_concat = ()
            mean = _checked_mean(total, self._scale, grads)
        if self._stop_on_nan and not math.isfinite(float(_ops.item(mean))):
            raise NonFiniteLossError(_nan_message(mean))  # before the update
        trainer.step(int(n))
        return mean, pred

    def _update_checked(self, mean: Any, params: Sequence[Parameter], n: int) -> Any:
        """The update of an eager step on several workers: the gradients are averaged
        first, together with a flag that is NaN where a worker's loss is not finite, and
        the NaN check reads the averaged values, so every worker raises
        `NonFiniteLossError` (before any update) or none does — one worker stopping alone
        would leave the others waiting in the next all-reduce."""
        trainer = self._trainer
        (flag,) = trainer._allreduce_grads_with([mean * 0.0])
        grads = [g for g in (p._current_grad() for p in params) if g is not None]
        mean = _checked_mean(mean + flag, 1.0, grads)
        if self._stop_on_nan and not math.isfinite(float(_ops.item(mean))):
            raise NonFiniteLossError(_nan_message(mean))
        trainer.update(n)
        return mean

    def _reduce_and_update(self, total: Any) -> Any:
        """The rest of an eager step on several workers as ONE compiled call where the
        adapter compiles the collective into a step and asks for it
        (`Backend.SUPPORTS_DISTRIBUTED_TRAIN_STEP`, `Backend.COMPILES_DISTRIBUTED_UPDATE`):
        the all-reduce of the gradients (and of the NaN flag), the probe, clipping and
        the optimizer's rule — what `_update_checked` does with an eager all-reduce and
        eager updates, with the same numbers. The forward and backward pass stay eager;
        ``param.grad()`` is the averaged gradient afterwards, as there. None where it
        does not apply (then `_update_checked` runs)."""
        b = active()
        if not (b.SUPPORTS_DISTRIBUTED_TRAIN_STEP and b.COMPILES_DISTRIBUTED_UPDATE):
            return None
        params = self._eager_vars
        grads = [p._current_grad() for p in params]
        if any(g is None for g in grads):
            return None
        key = (self._eager_key, self._structure())
        if key != self._reduce_update_key:
            self._reduce_update = _reduce_update_runner(self, params, grads, total)
            self._reduce_update_key = key
        run = self._reduce_update
        if run is False:
            return None
        return run(total, grads)

    def _eager_plan(self) -> _autograd.Differentiator | None:
        """What the eager step differentiates, decided once per structure (the trainer's
        parameters, their ``grad_req``); None while a parameter is still deferred."""
        opt = self._trainer._optimizer
        params = opt._params
        key = (opt.version, len(params), *[p._grad_req for p in params.values()])
        if key != self._eager_key:
            named = opt.trainable()
            # The net's parameters this step does not differentiate (frozen, or not the
            # trainer's): the adapter keeps them out of its gradient computation.
            ids = {id(p) for _, p in named}
            held: list[Parameter] = []
            for p in self._net.collect_params().values():
                if id(p) not in ids:
                    ids.add(id(p))
                    held.append(p)
            self._eager_diff = _autograd.Differentiator(named, held) if named else None
            self._eager_key = key
            self._eager_vars = [p for _, p in named]
            self._eager_concat = None
        for p in self._eager_vars:
            if p._var is None:
                return None
        if self._eager_concat is None:  # once the values exist: the probe's form
            self._eager_concat = _probe_concatenates(active(), [p._var for p in self._eager_vars])
        return self._eager_diff

    def _eager_general(self, X: Any, y: Any) -> Any:
        trainer, net, loss = self._trainer, self._net, self._loss
        b = active()

        def objective() -> tuple[Any, Any]:
            pred = net(X)
            value = loss(pred, y)
            return _ops.sum(value), (value, pred)

        trainable = dict(trainer.optimizer.trainable())
        with _autograd.train_mode():
            _, (per_sample, pred), grads = _autograd.grad_with_aux(objective, trainable)
        self._pred_shape = tuple(b.shape(pred))
        # NaN when the loss or any gradient is not finite (0 otherwise), so the reported
        # loss is NaN whenever the update would use a NaN: a ReLU or a max that drops
        # a NaN input can leave the loss finite while the gradients are not.
        if _parallel.world_size() > 1:
            mean = _ops.mean(per_sample)
            return self._update_checked(mean, list(trainable.values()), int(b.shape(X)[0])), pred
        mean = _checked_mean(_ops.mean(per_sample), 1.0, list(grads.values()))
        if self._stop_on_nan and not math.isfinite(float(_ops.item(mean))):
            raise NonFiniteLossError(_nan_message(mean))  # before the update
        trainer.step(int(b.shape(X)[0]))
        return mean, pred

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
        guard = self._stop_on_nan
        slot_counts = [len(opt.slots_of(n, p)) for n, p in zip(names, train)]
        index = {id(p): i for i, p in enumerate(params)}
        # Tensor attributes (the book's from-scratch BatchNorm keeps its moving
        # statistics so) are inputs after the slots and come out as outputs: state is
        # an output, not a side effect (`_state`).
        attrs = _state.tensor_attrs(net)
        attr_index = {a.key: i for i, a in enumerate(attrs)}
        n_slots = sum(slot_counts)
        clip_norm = self._trainer.clip_global_norm
        concat = _probe_concatenates(b, [p._var for p in train])

        refuse_state = self._refuse_replica_state
        # With the NaN guard every gradient stays alive until the probe has read them
        # all; where the adapter allocates a compiled call's temporaries anew each call
        # (JAX on the CPU: tens of MB mapped and faulted in per step, 9 ms of a 24 ms
        # deep-MLP step), the gradients are outputs instead, written into buffers
        # donated back every step (`Backend.GUARDED_STEP_KEEPS_GRADS`).
        keep_grads = (
            guard and b.GUARDED_STEP_KEEPS_GRADS and self._grads_out
            and _parallel.world_size() == 1
            and sum(stored_nbytes(b.dtype(p._var), b.shape(p._var)) for p in train)
            >= _KEEP_GRADS_BYTES
        )
        n_attr_end = n_all + n_slots + len(attrs)

        def step(
            values: Sequence[Any], scalars: Any, X: Any, y: Any,
            reduce: Callable[[list[Any]], list[Any]] | None = None,
        ) -> tuple[Any, list[Any]]:
            # ``reduce``: given by an adapter that runs this step once per replica on its
            # shard (`Backend.compile_train_step_sharded`); it turns the shard's loss sum
            # and gradient sums into those of the batch the step was given.
            fixed = list(values[n_train:n_all])
            attr_values = list(values[n_all + n_slots : n_attr_end])

            def objective(weights: Sequence[Any]) -> tuple[Any, tuple[list[Any], Any, list[Any]]]:
                with _autograd.substituted(params, list(weights) + fixed), \
                        _state.substituted_attrs(attrs, attr_values), \
                        _state.collecting() as updates, _autograd.train_mode():
                    pred = net(X)
                    value = loss(pred, y)
                new_state: list[Any] = [None] * (n_all - n_train)
                new_attrs: list[Any] = [None] * len(attrs)
                for key, (p, v) in updates.items():
                    if isinstance(p, tuple):  # a tensor attribute (block, name)
                        j = attr_index.get(key)
                        if j is None:  # a new tensor attribute: build the step again
                            raise _NeedsEager
                        new_attrs[j] = v
                        continue
                    i = index.get(id(p))
                    if i is not None and i >= n_train:
                        new_state[i - n_train] = v
                kept = b.stop_gradient(pred) if outputs else None
                return _ops.sum(value), (new_state, kept, new_attrs)

            total, grads, (new_state, pred, new_attrs) = b.value_and_grad_aux(
                objective, values[:n_train]
            )
            if reduce is not None:
                if refuse_state and any(v is not None for v in new_state + new_attrs):
                    raise _replica_state_error()
                total, *grads = reduce([total, *grads])  # the framework's all-reduce
            probe = total * 0.0 + _nonfinite_probe(grads, concat)  # 0, or NaN (see _eager)
            s = [scalars[i] for i in range(len(opt.scalars(1)) + 1)]
            scale, rule_s = s[0], s[1:]
            new_w, new_slots = _clipped_rule(
                opt, values[:n_train], grads, values[n_all:], slot_counts, scale, rule_s, clip_norm
            )
            mean = total * scale + probe  # the batch's mean loss: its sum times 1/batch
            new = new_w + new_state + new_slots + new_attrs
            if guard:
                new = _kept_if_nan(probe, new, values)
            if keep_grads:  # the gradients into the donated buffers (a None keeps its own)
                new += [v if g is None else g for g, v in zip(grads, values[n_attr_end:])]
            return ((mean, pred) if outputs else mean), new

        step.__name__ = step.__qualname__ = f"train_step_{type(net).__name__}"
        self._params = params
        self._n_train = n_train
        self._slot_lists = [opt.slots_of(n, p) for n, p in zip(names, train)]
        self._attrs = attrs
        scratch = [_ops.zeros_like(p._var) for p in train] if keep_grads else []
        self._compiled[outputs] = self._runner(
            self._compile_step(step), params, self._slot_lists, attrs, outputs, scratch
        )
        self._key = self._structure()

    def _runner(
        self,
        compiled: Callable[..., Any],
        params: list[Parameter],
        slot_lists: list[list[Any]],
        attrs: list[_state.TensorAttr],
        outputs: bool,
        scratch: list[Any],
    ) -> Callable[[Any, Any], Any]:
        """The per-call path of a compiled step, fixed once per structure: the argument
        layout (parameters, the optimizer's slots, tensor attributes, then ``scratch``:
        the buffers the gradients are written into, where `_build` keeps them) is decided
        here, so a call is the batch check (once per shape signature), the label check
        (if the loss has one), a list of the current values, one call of the
        framework's compiled function, and the new values written back
        (``param.data()`` stays current).

        Everything that can wait runs after the compiled function was called: JAX and
        TensorFlow return before the computation ends, and on a CPU the work before
        the call delays the computation itself, the work after it overlaps it."""
        opt = self._trainer._optimizer
        state = opt.__dict__  # the step count, bumped without Optimizer.__setattr__
        scalars_of = opt.scalars
        n_params = len(params)
        check_labels = self._check_labels
        guard = self._stop_on_nan
        b = active()
        # Several devices in this process (TensorFlow's compiled function puts its
        # non-variable outputs on the first): a tensor attribute keeps its device.
        mix = bool(attrs) and b.may_mix_devices()
        # Only the optimizers with slots (SGD without momentum has none) cost a step.
        slotted = [(i, s) for i, s in enumerate(slot_lists) if s]
        starts: list[int] = []
        k = n_params
        for _, slots in slotted:
            starts.append(k)
            k += len(slots)
        n_slot_end = k
        n_attr_end = k + len(attrs)
        # The last batch's shape signature, validated (`_check_batch`), and its
        # 1/batch_size: a batch of the same shapes as the last one is not checked again.
        seen: list[Any] = [None, 1.0]
        # What `_structure` reads, read here directly: the runner says `_STALE` (and
        # the caller takes the general path) when any of it changed since `_build`.
        trainer = self._trainer
        trainer_params, world = opt._params, _parallel._STATE
        key = self._structure()

        def run(X: Any, y: Any) -> Any:
            if (
                (state.get("_version", 0), len(trainer_params), self._stop_on_nan,
                 trainer.clip_global_norm, world["world_size"]) != key
            ):
                return _STALE
            try:
                sig = (X.shape, y.shape)
            except AttributeError:  # a list, or a Python scalar: checked on every call
                sig = None
            if sig is None or sig != seen[0]:
                _check_batch(b, X, y)
                xs = b.shape(X) if b.is_tensor(X) else np.shape(X)
                seen[1] = _scale(int(xs[0]))
                seen[0] = sig
            scale = seen[1]
            if check_labels is not None:
                if self._pred_shape is None:
                    self._learn_pred_shape(X)
                check_labels(self._pred_shape, y)
            t = state["_t"] + 1
            state["_t"] = t
            values = [p._var for p in params]
            for _, slots in slotted:
                values += slots
            if attrs:
                values += [a._var for a in attrs]
                # Where each tensor attribute lives, read before the call (JAX donates them).
                places = [b.device_of(a._var) for a in attrs] if mix else None
            if scratch:
                values += scratch
            try:
                out, new = compiled(values, (scale, *scalars_of(t)), X, y)
            except _NeedsEager:  # raised while tracing: nothing has changed
                state["_t"] = t - 1
                self._compiled.clear()
                raise
            except D2LCompatError:  # refused while tracing (`_replica_state_error`)
                state["_t"] = t - 1
                raise
            # After the call: the framework computes while the new values are stored.
            for p, v in zip(params, new):
                p._var = v
            for (_, slots), k in zip(slotted, starts):
                slots[:] = new[k : k + len(slots)]
            if attrs:
                for i, (a, v) in enumerate(zip(attrs, new[n_slot_end:n_attr_end])):
                    if places is not None and b.device_of(v) != places[i]:
                        v = b.move(v, places[i], False)
                    a.block.__dict__[a.name] = v
            if scratch:
                scratch[:] = new[n_attr_end:]
            if guard:
                # A non-finite step returned the old values (the `where` in the graph):
                # what was written back above is unchanged state; undo the step count.
                mean = out[0] if outputs else out
                if not math.isfinite(float(_ops.item(mean))):
                    state["_t"] = t - 1
                    raise NonFiniteLossError(_nan_message(mean))
            return out

        return run

    #: Whether a step run once per replica refuses a forward pass that updates state
    #: (running statistics): set where the replicas share one set of variables.
    _refuse_replica_state = False
    #: Whether the compiled step may return its gradients into donated buffers
    #: (`_build`, ``keep_grads``): not where it runs once per replica.
    _grads_out = True

    def _compile_step(self, step: Callable[..., Any]) -> Callable[..., Any]:
        """The adapter's compiled ``step`` (`d2lcompat.parallel` compiles it sharded);
        across processes, where the adapter compiles the collective into it
        (`Backend.SUPPORTS_DISTRIBUTED_TRAIN_STEP`), the distributed one."""
        b = active()
        if _parallel.world_size() > 1:
            return b.compile_train_step_distributed(step)
        return b.compile_train_step(step)

    def _structure(self) -> tuple[Any, ...]:
        opt = self._trainer._optimizer
        # The learning rate is an input of the compiled step; the other hyper-parameters
        # are constants of it, so changing one (the optimizer's `version`) builds the
        # step again, as does a new set of parameters of the trainer.
        return (
            opt.__dict__.get("_version", 0), len(opt._params), self._stop_on_nan,
            self._trainer.clip_global_norm, _parallel._STATE["world_size"],
        )

    def _run_compiled(self, X: Any, y: Any, outputs: bool) -> Any:
        # The hot path of a compiled step: the structure check, then the runner `_build`
        # made for it (a small model's whole step takes ~20-50 µs).
        if self._key != self._structure():
            self._compiled.clear()
        run = self._compiled.get(outputs)
        if run is None:
            self._build(X, y, outputs)
            run = self._compiled[outputs]
        return run(X, y)  # the structure was checked above: never `_STALE`

    def _learn_pred_shape(self, X: Any) -> None:
        """The class count is read from the predictions: the first step runs eagerly
        (same numbers), where the loss checks the labels itself."""
        raise _NeedsEager

    def __call__(self, X: Any, y: Any) -> Any:
        # The compiled step's runner straight away while nothing it depends on changed
        # (still hybridized, one worker, the same structure); `_step` decides otherwise.
        # The runner checks the batch (`_check_batch`) once per shape signature.
        run = self._compiled.get(False)
        if run is not None and "forward" in self._net.__dict__:  # still hybridized
            try:
                out = run(X, y)
            except _NeedsEager:
                return self._eager(X, y)[0]
            if out is not _STALE:
                return out
        return self._step(X, y, False)

    def with_outputs(self, X: Any, y: Any) -> tuple[Any, Any]:
        """One step, returning ``(mean loss, predictions)``: the network's outputs on
        ``X`` before the update, cut from the graph (what `fit` measures accuracy on)."""
        run = self._compiled.get(True)
        if run is not None and "forward" in self._net.__dict__:  # still hybridized
            try:
                out = run(X, y)
            except _NeedsEager:
                return self._eager(X, y)  # type: ignore[no-any-return]
            if out is not _STALE:
                return out  # type: ignore[no-any-return]
        return self._step(X, y, True)  # type: ignore[no-any-return]

    def _step(self, X: Any, y: Any, outputs: bool) -> Any:
        # Several workers: the eager step, whose Trainer.step all-reduces the gradients
        # (the compiled step applies them inside the compiled function), unless the
        # adapter compiles the all-reduce into the step (`compile_train_step_distributed`).
        b = active()
        _check_batch(b, X, y)
        compiled = "forward" in self._net.__dict__ and b.SUPPORTS_COMPILE and b.COMPILES_TRAIN_STEP
        if compiled and (_parallel.world_size() <= 1 or b.SUPPORTS_DISTRIBUTED_TRAIN_STEP):
            try:
                return self._run_compiled(X, y, outputs)
            except _NeedsEager:
                pass
        mean, pred = self._eager(X, y)
        return (mean, pred) if outputs else mean


def _clipped_rule(
    opt: Any, weights: Sequence[Any], grads: Sequence[Any], slot_values: Sequence[Any],
    slot_counts: Sequence[int], scale: Any, rule_s: Sequence[Any], clip_norm: float | None,
) -> tuple[list[Any], list[Any]]:
    """The update inside a compiled step (`_build`, `_reduce_update_runner`): Gluon's
    global-norm clip of the gradients times ``scale`` when ``clip_norm`` is set, then
    the optimizer's ``rule(w, g * scale, slots, rule_s)`` for each parameter.
    ``weights`` are the parameters' variables, ``slot_values`` every slot variable in
    order (``slot_counts[i]`` of them for parameter ``i``, any values after those
    ignored). Returns the new weights and the new slots, flat, in the same order."""
    b = active()
    if clip_norm is not None:
        _, clip = global_norm_scale([g * scale for g in grads], clip_norm)
        grads = [g * _ops.cast(clip, b.dtype(g)) for g in grads]
    new_w: list[Any] = []
    new_slots: list[Any] = []
    k = 0
    for w, g, n in zip(weights, grads, slot_counts):
        w = b.stop_gradient(b.read(w))
        slots = [b.read(v) for v in slot_values[k : k + n]]
        # Gradients carry no graph (the differentiation is over): no stop_gradient.
        nw, ns = opt.rule(w, g * scale, slots, rule_s)
        new_w.append(nw)
        new_slots.extend(ns)
        k += n
    return new_w, new_slots


#: The gradients' size from which a guarded compiled step keeps them in donated
#: buffers (`TrainStep._build`, ``keep_grads``): below it the call's temporaries stay
#: under glibc's mmap limit (32 MiB at most) and are reused, and a small step would pay
#: for the extra arguments.
_KEEP_GRADS_BYTES = 8 << 20


def _kept_if_nan(probe: Any, new: Sequence[Any], values: Sequence[Any]) -> list[Any]:
    """``stop_on_nan`` inside a compiled step: each new value, or its old one from
    ``values`` where ``probe`` is NaN (None stays None). A non-finite step keeps every
    old value in the graph (JAX donated the old buffers, TensorFlow assigns inside it);
    the host then sees the NaN loss and raises before anything else runs."""
    b = active()
    ok = _ops.equal(probe, probe)  # False only for NaN
    at = [i for i, v in enumerate(new) if v is not None]
    chosen = b.select_all(ok, [new[i] for i in at], [b.read(values[i]) for i in at])
    out = list(new)
    for i, v in zip(at, chosen):
        out[i] = v
    return out


def _reduce_update_runner(
    step: TrainStep, params: list[Parameter], grads: list[Any], total: Any
) -> Any:
    """`TrainStep._reduce_and_update`'s compiled call for these parameters, or False
    where it cannot be built (gradients of several dtypes, a trace that fails).

    The compiled function is the adapter's distributed step
    (`Backend.compile_train_step_distributed`) of a step whose "batch" is this worker's
    loss sum and gradients, a list (no eager op packs them: the framework's function
    takes the list as it is): it calls ``reduce`` (the framework's all-reduce, MEAN
    over the workers) on the NaN flag and the gradients, then runs the optimizer's rule
    as the compiled step does. Its values
    are the parameters, the optimizer's slots, then the last averaged gradients, whose
    places receive the new averaged gradients (so ``param.grad()`` is kept)."""
    b = active()
    dtypes = {b.dtype(g) for g in grads} | {b.dtype(total)}
    trainer = step._trainer
    opt = trainer._optimizer
    named = opt.trainable()
    if len(dtypes) != 1 or [p for _, p in named] != params:
        return False
    slot_lists = [opt.slots_of(n, p) for n, p in named]
    slot_counts = [len(s) for s in slot_lists]
    n_train, n_scalars = len(params), len(opt.scalars(1)) + 1
    clip_norm = trainer.clip_global_norm
    guard = step._stop_on_nan
    concat = _probe_concatenates(b, [p._var for p in params])

    def update(
        values: Sequence[Any], scalars: Any, X: Any, y: Any,
        reduce: Callable[[list[Any]], list[Any]] | None = None,
    ) -> tuple[Any, list[Any]]:
        total, local = X[0], list(X[1:])
        flag, *reduced = reduce([total * 0.0, *local]) if reduce is not None else [total * 0.0, *local]
        probe = flag + _nonfinite_probe(reduced, concat)  # 0, or NaN on every worker
        scale, rule_s = scalars[0], [scalars[i] for i in range(1, n_scalars)]
        new_w, new_slots = _clipped_rule(
            opt, values[:n_train], reduced, values[n_train:], slot_counts, scale, rule_s, clip_norm
        )
        new = new_w + new_slots
        if guard:
            new = _kept_if_nan(probe, new, values)
        return total * scale + probe, new + reduced

    update.__name__ = update.__qualname__ = "reduce_and_update"
    try:
        compiled = b.compile_train_step_distributed(update)
    except Exception:  # noqa: BLE001 - the eager all-reduce and update instead
        return False
    state = opt.__dict__
    n_slot_end = n_train + sum(slot_counts)
    held = [_ops.zeros_like(g) for g in grads]  # the last averaged gradients
    unused = _ops.zeros((1,), dtype=b.dtype(total))  # the step's label input
    built = [False]

    def run(total: Any, grads: list[Any]) -> Any:
        t = state["_t"] + 1
        state["_t"] = t
        values = [p._var for p in params]
        for slots in slot_lists:
            values += slots
        values += held
        try:
            mean, new = compiled(values, (step._scale, *opt.scalars(t)), [total, *grads], unused)
        except Exception:
            state["_t"] = t - 1
            if built[0]:
                raise
            step._reduce_update = False  # the first call traces: fall back for good
            return None
        built[0] = True
        for p, v in zip(params, new):
            p._var = v
        k = n_train
        for slots in slot_lists:
            slots[:] = new[k : k + len(slots)]
            k += len(slots)
        held[:] = new[n_slot_end:]
        for p, g in zip(params, held):
            p._grad = g
        if guard and not math.isfinite(float(_ops.item(mean))):
            state["_t"] = t - 1
            raise NonFiniteLossError(_nan_message(mean))
        return mean

    return run


#: The probe concatenates the small gradients (at most `_PROBE_CONCAT_EACH` elements
#: each, up to `_PROBE_CONCAT_MAX` in all) and takes one dot product with zeros: two
#: framework ops eagerly, two kernels inside a compiled step, where a difference and a
#: sum per gradient cost two ops (or kernels) per gradient — the fixed cost that
#: dominated small steps. A larger gradient gets its own ``sum(g - g)``, which copies
#: nothing: one more kernel, against copying it into the concatenation.
_PROBE_CONCAT_MAX = 1 << 20
_PROBE_CONCAT_EACH = 1 << 16


def _probe_concatenates(b: Any, values: Sequence[Any]) -> tuple[int, ...]:
    """Which gradients of parameters holding ``values`` the probe concatenates (their
    positions, `_nonfinite_probe`): the small ones (`_PROBE_CONCAT_EACH`), while they
    total at most `_PROBE_CONCAT_MAX` elements, when there are two or more of them, of
    one dtype and one device. Decided once per structure."""
    group: list[int] = []
    total = 0
    for i, v in enumerate(values):
        n = math.prod(b.shape(v))
        if n <= _PROBE_CONCAT_EACH and total + n <= _PROBE_CONCAT_MAX:
            group.append(i)
            total += n
    if len(group) < 2:
        return ()
    chosen = [values[i] for i in group]
    if len({b.dtype(v) for v in chosen}) != 1 or len({b.device_of(v) for v in chosen}) != 1:
        return ()
    return tuple(group)


def _replica_state_error() -> D2LCompatError:
    from ._errors import UnsupportedError

    return UnsupportedError(
        "train_step(devices=...): the forward pass updates running statistics (BatchNorm), "
        "which each device's replica would compute on its own shard of the batch; "
        "d2lcompat does not yet combine them over the devices of one process. Train this "
        "net with `d2lcompat launch` (one device per process) or on one device."
    )


def _nonfinite_probe(grads: Sequence[Any], concat: bool | Sequence[int] | None = False) -> Any:
    """``Σ sum(g - g)``: 0 when every gradient is finite, NaN otherwise (``x - x`` is
    exactly 0 for every finite ``x``; ``inf - inf`` and ``NaN - NaN`` are NaN), from
    core ops only (it also runs inside compiled steps). The gradients at the positions
    ``concat`` (`_probe_concatenates`; True: all of them) that are present go through
    one dot product of their concatenation with its product by 0 (``inf · 0`` is NaN):
    the same number. An adapter's own form goes through `Backend.nonfinite_mean`
    (`_checked_mean`), eagerly.

    Not ``sum(g · 0)`` per gradient: XLA turns that into a reduction of ``g`` against a
    materialized array of zeros, reading twice the gradient's bytes (measured in
    docs/performance.md, "Fifth round (issue 22): JAX's compiled step, kernel by
    kernel")."""
    if concat is True:
        group = [i for i, g in enumerate(grads) if g is not None]
    elif concat:
        group = [i for i in concat if grads[i] is not None]
    else:
        group = []
    probe: Any = 0.0
    if len(group) >= 2:
        flat = _ops.concat([_ops.reshape(grads[i], (-1,)) for i in group], 0)
        probe = _ops.dot(flat, flat * 0.0)
    else:
        group = []
    joined = set(group)
    for i, g in enumerate(grads):
        if g is not None and i not in joined:
            probe = probe + _ops.sum(g - g)
    return probe


def _checked_mean(
    total: Any, scale: float, grads: Sequence[Any], concat: bool | Sequence[int] | None = False
) -> Any:
    """``total * scale``, NaN whenever a gradient is not finite (`_nonfinite_probe`):
    the adapter's multi-tensor kernels where it has them (`Backend.nonfinite_mean`),
    on eager tensors only, else the core's probe."""
    present = [g for g in grads if g is not None]
    if present:
        b = active()
        if not b.is_traced(present[0]):
            fast = b.nonfinite_mean(total, scale, present)
            if fast is not None:
                return fast
    return total * scale + _nonfinite_probe(grads, concat)


def _nan_message(mean: Any) -> str:
    return (
        f"train_step: the loss or a gradient of this batch is not finite (loss "
        f"{float(_ops.item(mean))}); the parameters were left unchanged. Look for NaN or "
        "infinite values in the batch, or lower the learning rate."
    )


def _check_batch(b: Any, X: Any, y: Any) -> None:
    """A batch enters here: at least one row, and as many labels as rows."""
    xs = b.shape(X) if b.is_tensor(X) else np.shape(X)
    ys = b.shape(y) if b.is_tensor(y) else np.shape(y)
    if not xs or xs[0] == 0:
        raise DataError(
            f"train_step: the batch X has shape {tuple(xs)}; it needs at least one row "
            "(sample) along axis 0. Skip empty batches (DataLoader(..., drop_last=True) "
            "drops a short last batch)."
        )
    if ys and ys[0] != xs[0]:
        raise DataError(
            f"train_step: X has {xs[0]} rows but y has {ys[0]}; pass one label per sample."
        )


#: What a compiled step's runner returns, without running, when the structure it was
#: built for changed (`TrainStep._runner`).
_STALE = object()


class _NeedsEager(Exception):
    """Internal: the net still has deferred parameters, or its forward pass created a
    tensor attribute while being traced; run one eager step first (the compiled step is
    built again after it)."""


def train_step(
    net: Block, loss: Callable[..., Any], trainer: Trainer, devices: Sequence[Any] | None = None,
    stop_on_nan: bool = False,
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
        On several processes (`d2lcompat.parallel`), a hybridized net's step has the
        gradients' all-reduce inside the compiled function where the adapter can put
        it there (`Backend.SUPPORTS_DISTRIBUTED_TRAIN_STEP`: TensorFlow, JAX); otherwise
        the eager step all-reduces in `Trainer.step`.
    stop_on_nan : bool
        Raise `NonFiniteLossError` when the loss or a gradient of the batch is NaN or
        infinite, before any parameter or optimizer slot changes (`fit` sets it).
        Without it such a step is applied and its reported loss is NaN.

    The batch is validated where it enters: a batch without rows, or with a label
    count other than its row count, raises `DataError`; labels the loss cannot use
    (class indices out of range, NaN or fractional float labels for
    `loss.SoftmaxCrossEntropyLoss`) raise `LabelError` — checked by the loss on the
    concrete labels eagerly, and on the host before the compiled function runs after
    ``hybridize()`` (the first step then runs eagerly, to learn the class count).

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
        return _parallel.data_parallel_step(  # type: ignore[return-value]
            net, loss, trainer, devices, stop_on_nan
        )
    return TrainStep(net, loss, trainer, stop_on_nan=stop_on_nan)
