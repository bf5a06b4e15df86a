"""Data parallelism on each framework's own engine (``d2lcompat.parallel``, API §17).

d2lcompat says *what* is split and *what* is reduced; the framework's engine moves
the bytes (STYLE lesson 13): ``torch.distributed`` (gloo on CPU, NCCL on GPU),
``paddle.distributed``, ``jax.distributed`` and ``jax.sharding``, ``tf.distribute``.

Two ways to use several devices, which compose:

* **Several processes** (one per device, started by ``d2lcompat launch --nproc N
  script.py``): `init` joins the group the launcher described; each process feeds
  its own shard of the data; `all_reduce_mean` averages the gradients before the
  update (`d2lcompat.Trainer.step` calls it when ``world_size() > 1``).
* **Several devices in one process** (JAX, TensorFlow): `split_and_load` splits a
  batch over the devices, and `DeviceParallel` computes one step's gradient over
  them with the framework's engine (XLA sharding, ``MirroredStrategy``).

Until `init` is called a process is one worker (``world_size() == 1``) and
`all_reduce_mean` returns its input.

Examples
--------
>>> from d2lcompat import parallel
>>> parallel.world_size(), parallel.rank()
(1, 0)
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, overload

from . import _device, _state
from ._cluster import Cluster
from ._device import Device, cpu, device_of, gpu, resolve, to_device
from ._errors import D2LCompatError, NonFiniteLossError, ShapeError, UnsupportedError
from ._parameter import Parameter
from ._registry import active
from .autograd import substituted

__all__ = [
    "DataParallelStep",
    "DeviceParallel",
    "all_reduce_mean",
    "broadcast",
    "data_parallel_step",
    "engines",
    "init",
    "is_initialized",
    "local_devices",
    "local_rank",
    "rank",
    "shutdown",
    "split_and_load",
    "sync_parameters",
    "world_size",
]

_STATE: dict[str, Any] = {"world_size": 1, "rank": 0, "local_rank": 0, "initialized": False}


# ------------------------------------------------------------------ process group
def init() -> None:
    """Join the process group the launcher described (``d2lcompat launch``).

    Reads ``D2LCOMPAT_RANK``/``D2LCOMPAT_WORLD_SIZE``/``D2LCOMPAT_ADDRESSES`` (set by
    ``d2lcompat launch`` for JAX and TensorFlow, and by the DP scenarios), else the
    framework launcher's own variables (``torchrun``'s ``RANK``/``WORLD_SIZE``,
    ``paddle.distributed.launch``'s ``PADDLE_TRAINER_ID``...). Without any, the
    process stays a single worker. Call it first, before creating tensors: JAX must
    join before its runtime starts. On a machine with GPUs each worker's default
    device becomes its own GPU, ``gpu(local_rank())`` (unless ``D2LCOMPAT_DEVICE`` is
    set). Calling it again does nothing.

    Examples
    --------
    >>> from d2lcompat import parallel
    >>> parallel.init()  # no launcher: one worker
    >>> parallel.world_size()
    1
    """
    if _STATE["initialized"]:
        return
    b = active()
    r, w, local = b.dist_init(Cluster.from_env())
    _STATE.update(rank=int(r), world_size=int(w), local_rank=int(local), initialized=True)
    if int(w) > 1:
        _exit_at_once_on_error()
        _leave_at_exit()
    ngpu = b.device_count("gpu")
    if int(w) > 1 and ngpu and not os.environ.get("D2LCOMPAT_DEVICE", "").strip():
        # One GPU per worker (what torch.cuda.set_device(local_rank) does): new tensors
        # and parameters of this worker go to its own GPU unless D2LCOMPAT_DEVICE says.
        _device._DEFAULT = gpu(int(local) % ngpu)


def _leave_at_exit() -> None:
    """A script that never calls `shutdown` leaves the process group when Python exits,
    before the interpreter tears down: torch's gloo group otherwise aborted the
    worker that finished first ("terminate called without an active exception",
    SIGABRT) while its communication thread still ran."""
    import atexit

    def leave() -> None:
        try:
            shutdown()
        except Exception:  # noqa: BLE001 - exiting anyway; the peers may be gone
            pass

    atexit.register(leave)


def _exit_at_once_on_error() -> None:
    """An uncaught exception in a worker ends its process at once: the traceback is
    printed, then ``os._exit(1)``. A normal exit would run the framework's exit-time
    shutdown (``jax.distributed.shutdown``...), which waits for the other workers —
    still inside a collective, waiting for this one — and the run would hang until the
    group's timeout instead of `d2lcompat launch` seeing the failure."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        stamp = repr(time.time())
        try:
            # Under `d2lcompat launch`: when this rank failed, so that the launcher names
            # the first failure even if a peer, cut off by it, exits sooner.
            where = os.environ.get("D2LCOMPAT_LAUNCH_RAISED")
            if where:
                with open(where, "w") as f:
                    f.write(stamp)
        except OSError:
            pass
        try:
            previous(kind, value, tb)
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001 - a closed stream must not stop the exit
                    pass
            os._exit(1)

    sys.excepthook = hook


def is_initialized() -> bool:
    """Whether `init` has run in this process.

    Examples
    --------
    >>> from d2lcompat import parallel
    >>> isinstance(parallel.is_initialized(), bool)
    True
    """
    return bool(_STATE["initialized"])


def rank() -> int:
    """This worker's index in the process group (0 when not distributed).

    Examples
    --------
    >>> from d2lcompat import parallel
    >>> parallel.rank()
    0
    """
    return int(_STATE["rank"])


def world_size() -> int:
    """How many workers take part (1 when not distributed).

    Examples
    --------
    >>> from d2lcompat import parallel
    >>> parallel.world_size()
    1
    """
    return int(_STATE["world_size"])


def local_rank() -> int:
    """This worker's index among the workers of its machine (0 when not distributed).

    Examples
    --------
    >>> from d2lcompat import parallel
    >>> parallel.local_rank()
    0
    """
    return int(_STATE["local_rank"])


def shutdown() -> None:
    """Leave the process group (after the last collective); the process is one worker again.

    Examples
    --------
    >>> from d2lcompat import parallel
    >>> parallel.shutdown()
    >>> parallel.world_size()
    1
    """
    if _STATE["initialized"] and world_size() > 1:
        active().dist_shutdown()
    _STATE.update(rank=0, world_size=1, local_rank=0, initialized=False)


@overload
def all_reduce_mean(tensors: Mapping[str, Any]) -> dict[str, Any]: ...
@overload
def all_reduce_mean(tensors: Sequence[Any]) -> list[Any]: ...
def all_reduce_mean(tensors: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any] | list[Any]:
    """The element-wise mean of ``tensors`` over every worker, in the same order.

    ``tensors`` is a list (or a ``{name: tensor}`` dict, e.g. the gradients of
    `d2lcompat.autograd.grad`); every worker passes the same shapes in the same
    order. With one worker the input comes back unchanged. `d2lcompat.Trainer.step`
    calls it on the gradients before the update when ``world_size() > 1``.

    Examples
    --------
    >>> from d2lcompat import ops, parallel
    >>> [g] = parallel.all_reduce_mean([ops.ones((2,))])  # one worker: unchanged
    >>> ops.to_numpy(g).tolist()
    [1.0, 1.0]
    """
    if isinstance(tensors, Mapping):
        names = list(tensors)
        reduced = all_reduce_mean([tensors[n] for n in names])
        return dict(zip(names, reduced))
    if world_size() == 1:
        return list(tensors)
    return active().dist_all_reduce_mean(list(tensors))


def broadcast(tensors: Sequence[Any], root: int = 0) -> list[Any]:
    """Worker ``root``'s values of ``tensors``, on every worker (unchanged with one worker).

    Examples
    --------
    >>> from d2lcompat import ops, parallel
    >>> [x] = parallel.broadcast([ops.zeros((1,))])
    >>> ops.to_numpy(x).tolist()
    [0.0]
    """
    if world_size() == 1:
        return list(tensors)
    if not 0 <= root < world_size():
        raise D2LCompatError(f"broadcast root {root} is not a worker: 0 <= root < {world_size()}.")
    return active().dist_broadcast(list(tensors), root)


def sync_parameters(params: Mapping[str, Parameter] | Iterable[Parameter], root: int = 0) -> None:
    """Give every worker worker ``root``'s parameter values (as DDP does when it wraps
    a model), so that training starts from the same point everywhere.

    Examples
    --------
    >>> from d2lcompat import nn, parallel
    >>> net = nn.Dense(2, in_units=3); net.initialize()
    >>> parallel.sync_parameters(net.collect_params())  # one worker: nothing to do
    """
    plist = list(params.values()) if hasattr(params, "values") else list(params)  # type: ignore[union-attr]
    if world_size() == 1 or not plist:
        return
    b = active()
    values = broadcast([b.read(p.native()) for p in plist], root)
    for p, v in zip(plist, values):
        p._var = b.assign(p._var, v)


def engines() -> dict[str, str]:
    """The engines under this backend: ``{"processes": ..., "devices": ...}``; an empty
    string where the backend has none (use the other way).

    Examples
    --------
    >>> from d2lcompat import parallel
    >>> sorted(parallel.engines())
    ['devices', 'processes']
    """
    b = active()
    return {"processes": b.DISTRIBUTED_ENGINE, "devices": b.DEVICE_PARALLEL_ENGINE}


def local_devices() -> list[Device]:
    """The devices this worker trains on: under a multi-process launch on GPUs, its own
    GPU (``gpu(local_rank())``); else every GPU, or every CPU device when there is none
    (``D2LCOMPAT_CPU_DEVICES=N`` gives N on JAX and TensorFlow).

    Examples
    --------
    >>> import d2lcompat
    >>> from d2lcompat import parallel
    >>> parallel.local_devices()[0] in (d2lcompat.cpu(), d2lcompat.gpu())
    True
    """
    b = active()
    ngpu = b.device_count("gpu")
    if world_size() > 1:
        return [gpu(local_rank() % ngpu)] if ngpu else [cpu()]
    if ngpu:
        return [gpu(i) for i in range(ngpu)]
    return [cpu(i) for i in range(b.device_count("cpu"))]


# ------------------------------------------------------------------ one process
def _as_device(d: Device | str) -> Device:
    kind, index = resolve(d) or ("cpu", 0)  # resolve checks that the device exists
    return Device(kind, index)


def _split_sizes(n: int, k: int, even_split: bool, axis: int) -> list[int]:
    if n < k:
        raise ShapeError(
            f"split_and_load: a batch of {n} along axis {axis} cannot be split over {k} "
            f"devices; use a batch of at least {k} samples."
        )
    if n % k and even_split:
        raise ShapeError(
            f"split_and_load: a batch of {n} along axis {axis} does not split evenly over "
            f"{k} devices. Use a batch size divisible by {k}, or pass even_split=False "
            "(the last device then takes the remainder)."
        )
    step = n // k
    return [step] * (k - 1) + [n - step * (k - 1)]


def split_and_load(
    batch: Any, devices: Sequence[Device | str] | Device | str, batch_axis: int = 0,
    even_split: bool = True,
) -> list[Any]:
    """Split ``batch`` along ``batch_axis`` into one slice per device and put each slice on
    its device (Gluon's ``gluon.utils.split_and_load``).

    With ``even_split=True`` the batch size must be divisible by ``len(devices)``
    (else `ShapeError`); with ``even_split=False`` every slice has ``n // k`` samples
    and the last one takes the remainder (Gluon's rule): 7 over 3 devices is 2, 2, 3.
    One device: the whole batch moved there.

    Examples
    --------
    >>> import d2lcompat
    >>> from d2lcompat import ops, parallel
    >>> parts = parallel.split_and_load(ops.arange(6), [d2lcompat.cpu()])
    >>> [ops.shape(p) for p in parts]
    [(6,)]
    """
    devs = [_as_device(d) for d in ([devices] if isinstance(devices, (Device, str)) else devices)]
    if not devs:
        raise D2LCompatError("split_and_load needs at least one device; pass e.g. [d2lcompat.cpu()].")
    b = active()
    if not b.is_tensor(batch):
        from . import ops

        batch = ops.tensor(batch)
    shape = b.shape(batch)
    if not -len(shape) <= batch_axis < len(shape):
        raise ShapeError(
            f"split_and_load: batch_axis={batch_axis} is out of range for a batch of shape "
            f"{shape}; pass the axis that holds the samples."
        )
    axis = batch_axis % len(shape)
    if len(devs) == 1:
        return [to_device(batch, devs[0])]
    sizes = _split_sizes(shape[axis], len(devs), even_split, axis)
    out, start = [], 0
    lead = (slice(None),) * axis
    for d, size in zip(devs, sizes):
        # The framework's own slicing (``x[a:b]``), then one copy to the device.
        out.append(to_device(batch[lead + (slice(start, start + size),)], d))
        start += size
    return out


class DeviceParallel:
    """One training step's gradient over several devices of this process, computed by the
    framework's engine: JAX shards the batch over a ``Mesh`` and XLA inserts the
    all-reduce; TensorFlow runs a ``MirroredStrategy`` replica per device and
    all-reduces. Frameworks that do data parallelism one process per device (torch,
    Paddle) raise `UnsupportedError`: use ``d2lcompat launch``.

    Parameters
    ----------
    fn : callable
        ``fn(*batch)`` returning the *sum* of the per-sample losses of ``batch`` (a
        scalar), through the blocks whose parameters are ``params``.
    params : dict or iterable of Parameter
        Every parameter the forward pass reads (``net.collect_params()``): each is
        replicated to every device; those with ``grad_req != 'null'`` are differentiated.
    devices : list of Device
        Where the batch is split; one device computes the plain gradient.

    Calling it with a batch returns ``(loss sum, {name: gradient sum})`` over the
    whole batch, each gradient where its parameter lives; divide by the batch size
    (``Trainer.step(batch_size)`` does) for the mean.

    Examples
    --------
    >>> import d2lcompat
    >>> from d2lcompat import nn, ops, parallel, init
    >>> net = nn.Dense(1, in_units=2, use_bias=False); net.initialize(init.One())
    >>> step = parallel.DeviceParallel(lambda X: ops.sum(net(X)), net.collect_params(),
    ...                                [d2lcompat.cpu()])
    >>> loss, grads = step(ops.ones((4, 2)))
    >>> ops.item(loss), ops.to_numpy(grads["weight"]).tolist()
    (8.0, [[4.0, 4.0]])
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        params: Mapping[str, Parameter] | Iterable[Parameter],
        devices: Sequence[Device | str],
    ) -> None:
        named = (
            list(params.items())  # type: ignore[union-attr]
            if hasattr(params, "items")
            else [(p.name, p) for p in params]
        )
        self._named = [(n, p) for n, p in named if p.grad_req != "null"]
        # Constants and running statistics are inputs too: replicated with the weights,
        # so that no replica reads a value that lives on another device.
        self._params = [p for _, p in self._named] + [p for _, p in named if p.grad_req == "null"]
        self.devices = [_as_device(d) for d in devices]
        if not self.devices:
            raise D2LCompatError("DeviceParallel needs at least one device.")
        self._fn = fn
        self._run: Callable[..., tuple[Any, list[Any]]] | None = None
        self._updates_state = False  # set when a traced forward pass wrote running statistics

    def _pure(self, values: Sequence[Any], *batch: Any) -> Any:
        with substituted(self._params, values), _state.collecting() as updates:
            out = self._fn(*batch)
        if updates:
            # Raised by __call__ after the engine returns: a compiler would wrap the error.
            self._updates_state = True
        return out

    def __call__(self, *batch: Any) -> tuple[Any, dict[str, Any]]:
        from . import autograd

        if len(self.devices) == 1 or any(p._var is None for p in self._params):
            if len(self.devices) > 1:
                # Deferred parameters: one plain forward creates them, as autograd.grad does.
                self._fn(*[split_and_load(x, self.devices[:1])[0] for x in batch])
            else:
                moved = [split_and_load(x, self.devices)[0] for x in batch]
                return autograd.grad(lambda: self._fn(*moved), dict(self._named))
        b = active()
        if self._run is None:
            self._run = b.device_parallel(
                self._pure, [(d.kind, d.index) for d in self.devices], len(self._named)
            )
        per_input = [split_and_load(x, self.devices) for x in batch]
        shards = [tuple(parts[i] for parts in per_input) for i in range(len(self.devices))]
        value, reduced = self._run([b.read(p._var) for p in self._params], shards)
        if self._updates_state:
            raise UnsupportedError(
                "DeviceParallel: the forward pass updates running statistics (BatchNorm), "
                "which d2lcompat does not yet combine over the devices of one process. "
                "Train this net with `d2lcompat launch` (one device per process) or on one "
                "device."
            )
        out: dict[str, Any] = {}
        for (name, p), g in zip(self._named, reduced):
            p._grad = p._grad + g if (p.grad_req == "add" and p._grad is not None) else g
            out[name] = p._grad
        return value, out



class DataParallelStep:
    """`d2lcompat.train_step` over several devices of one process (what
    ``train_step(net, loss, trainer, devices=[...])`` returns).

    ``step(X, y)`` splits each batch over the devices; the framework's engine computes
    the gradient of the whole batch and reduces it; the parameters are updated once.
    The result equals one device with the whole batch. Returns the batch's mean loss.

    Where the adapter compiles a sharded step (`Backend.SUPPORTS_SHARDED_TRAIN_STEP`)
    the whole step — forward, backward, the all-reduce, the update — is one compiled
    call, the very step `train_step` compiles after ``hybridize()``: JAX shards the
    batch and XLA inserts the all-reduce; TensorFlow runs it once per device inside
    one ``tf.function`` around ``MirroredStrategy.run``, the replica context summing
    the gradients before the update. Elsewhere, for the first step of a net with
    deferred shapes, and across processes, `DeviceParallel` computes the reduced
    gradient and ``trainer.step(batch_size)`` updates (all-reducing over processes too
    when ``world_size() > 1``). The batch size must be divisible by the number of
    devices. ``stop_on_nan`` as in `d2lcompat.train_step`.

    Examples
    --------
    >>> import d2lcompat
    >>> from d2lcompat import nn, ops, loss, init, parallel
    >>> net = nn.Dense(1, in_units=2); net.initialize(init.Constant(0.0))
    >>> trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    >>> step = parallel.data_parallel_step(net, loss.L2Loss(), trainer, [d2lcompat.cpu()])
    >>> round(float(ops.item(step(ops.ones((4, 2)), ops.ones((4, 1))))), 4)
    0.5
    """

    def __init__(
        self, net: Any, loss: Callable[..., Any], trainer: Any, devices: Sequence[Device | str],
        stop_on_nan: bool = False,
    ) -> None:
        from . import ops

        self._net, self._loss, self._trainer = net, loss, trainer
        self._stop_on_nan = bool(stop_on_nan)
        self._check_labels: Callable[..., None] | None = (
            getattr(loss, "check_labels", None) if getattr(loss, "checks_labels", False) else None
        )
        self._pred_shape: tuple[int, ...] | None = None

        def loss_sum(X: Any, y: Any) -> Any:
            return ops.sum(loss(net(X), y))

        self._grad = DeviceParallel(loss_sum, net.collect_params(), devices)
        self.devices = self._grad.devices
        self._sharded: Any = None
        if active().SUPPORTS_SHARDED_TRAIN_STEP and len(self.devices) > 1:
            self._sharded = _sharded_train_step(net, loss, trainer, self.devices, stop_on_nan)

    def _compiled(self, X: Any, y: Any, outputs: bool) -> Any:
        """The sharded compiled step's result, or None where it cannot run (several
        processes: its update has no collective; deferred parameters: a first step
        runs through `DeviceParallel`)."""
        from ._trainer import _NeedsEager

        if self._sharded is None or world_size() > 1:
            return None
        try:
            return self._sharded._run_compiled(X, y, outputs)
        except _NeedsEager:
            return None

    def _check_input(self, X: Any, y: Any) -> None:
        """The batch and its labels, on the host, before any device sees them (the
        loss runs traced on several devices, where it cannot read the labels)."""
        from . import autograd
        from ._trainer import _check_batch

        b = active()
        _check_batch(b, X, y)
        _split_sizes(int(b.shape(X)[0]), len(self.devices), True, 0)  # ShapeError unless even
        if self._check_labels is None:
            return
        if self._pred_shape is None:  # the class count: one forward in predict mode
            with autograd.predict_mode():
                pred = self._net(split_and_load(X, self.devices[:1])[0])
            self._pred_shape = tuple(b.shape(pred))
        self._check_labels(self._pred_shape, y)

    def __call__(self, X: Any, y: Any) -> Any:
        from . import autograd, ops

        b = active()
        n = int(b.shape(X)[0])
        self._check_input(X, y)
        out = self._compiled(X, y, False)
        if out is not None:
            return out
        with autograd.train_mode():
            total, grads = self._grad(X, y)
        if self._stop_on_nan:
            from ._trainer import _nan_message, _nonfinite_probe

            probe = total + _nonfinite_probe(list(grads.values()))
            if not math.isfinite(float(ops.item(probe))):
                raise NonFiniteLossError(_nan_message(probe))  # before the update
        self._trainer.step(n)
        count = ops.full((), float(n), dtype=ops.dtype(total), device=device_of(total))
        return ops.divide(total, count)

    def with_outputs(self, X: Any, y: Any) -> tuple[Any, Any]:
        """One step, returning ``(mean loss, predictions)`` (the network's outputs before
        the update, as `TrainStep.with_outputs`)."""
        from . import autograd

        self._check_input(X, y)
        out = self._compiled(X, y, True)
        if out is not None:
            return tuple(out)  # type: ignore[return-value]
        b = active()
        with autograd.predict_mode():
            pred = b.stop_gradient(self._net(split_and_load(X, self.devices[:1])[0]))
        return self(X, y), pred


def _sharded_train_step(
    net: Any, loss: Callable[..., Any], trainer: Any, devices: list[Device], stop_on_nan: bool = False
) -> Any:
    """`d2lcompat.TrainStep` whose compiled step is the adapter's sharded one."""
    from ._trainer import TrainStep  # imports this module: only once both are loaded

    where = [(d.kind, d.index) for d in devices]

    class ShardedTrainStep(TrainStep):
        # Replicas that each run the step on a shard (`reduce`) share one set of
        # variables: a shard's running statistics are not the batch's.
        _refuse_replica_state = True
        _grads_out = False

        def _compile_step(self, step: Callable[..., Any]) -> Callable[..., Any]:
            return active().compile_train_step_sharded(step, where)


    step = ShardedTrainStep(net, loss, trainer, stop_on_nan=stop_on_nan)
    step._check_labels = None  # DataParallelStep checks the labels at its own entry
    return step


def data_parallel_step(
    net: Any, loss: Callable[..., Any], trainer: Any, devices: Sequence[Device | str],
    stop_on_nan: bool = False,
) -> DataParallelStep:
    """The training step of ``net`` with each batch split over ``devices`` of this
    process (`DataParallelStep`); ``train_step(..., devices=devices)`` calls it.

    Examples
    --------
    >>> import d2lcompat
    >>> from d2lcompat import nn, loss, parallel
    >>> net = nn.Dense(1, in_units=2); net.initialize()
    >>> trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    >>> parallel.data_parallel_step(net, loss.L2Loss(), trainer, [d2lcompat.cpu()]).devices
    [cpu(0)]
    """
    return DataParallelStep(net, loss, trainer, devices, stop_on_nan)
