"""One worker of the data-parallel benchmark (``benchmarks.dp``); one backend per process.

``python -m benchmarks._dp_worker IMPL MODE STEPS``:

* IMPL ``ours``: d2lcompat's ``train_step`` (``devices=`` in MODE ``devices``), whose
  ``Trainer.step`` all-reduces with `parallel.all_reduce_mean` in MODE ``processes``;
* IMPL ``native``: what a user of the framework writes by hand with the same model
  and SGD — torch ``DistributedDataParallel`` (gloo), ``paddle.DataParallel``, a
  ``jax.jit`` step over a ``Mesh`` (batch sharded, parameters replicated), a
  ``tf.distribute`` strategy's ``run`` inside ``tf.function``.

MODE ``single`` (one process, whole batch), ``processes`` (one of
``D2LCOMPAT_WORLD_SIZE`` workers, its shard of the batch) or ``devices`` (one
process, ``D2LCOMPAT_CPU_DEVICES=2``). Worker 0 prints ``RESULT {json}``: the median
seconds per step, and (``ours``, ``processes``) the median seconds of the gradient
all-reduce alone.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

IN, HIDDEN, OUT, BATCH, LR, WARMUP = 20, 256, 10, 256, 0.1, 5


def _data(rank: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(BATCH, IN)).astype(np.float32)
    y = rng.uniform(-1, 1, size=(BATCH, OUT)).astype(np.float32)
    local = BATCH // workers
    return X[rank * local:(rank + 1) * local], y[rank * local:(rank + 1) * local]


def _time(step: Callable[[], Any], steps: int) -> float:
    times = []
    for i in range(WARMUP + steps):
        start = time.perf_counter()
        step()
        if i >= WARMUP:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours(mode: str, steps: int) -> dict[str, Any]:
    import d2lcompat
    from d2lcompat import loss, nn, ops, parallel

    parallel.init()
    rank, workers = parallel.rank(), parallel.world_size()
    d2lcompat.seed(0)
    net = nn.Sequential(nn.Dense(HIDDEN, activation="relu", in_units=IN), nn.Dense(OUT, in_units=HIDDEN))
    net.initialize()
    if mode in ("single-hybridized", "processes-hybridized"):
        # Across processes: the compiled step with the all-reduce inside where the
        # adapter compiles it (TensorFlow), else the compiled forward, eager update.
        net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": LR})
    devices = parallel.local_devices()[:2] if mode == "devices" else None
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer, devices=devices)
    Xn, yn = _data(rank, workers)
    X, y = ops.tensor(Xn), ops.tensor(yn)
    out: dict[str, Any] = {"step_s": _time(lambda: ops.to_numpy(step(X, y)), steps)}
    if workers > 1:
        # Tensors of the gradients' shapes (a compiled step keeps no gradients).
        grads = [ops.zeros_like(p.data()) for p in net.collect_params().values()]

        def reduce() -> None:
            for g in parallel.all_reduce_mean(grads):
                ops.to_numpy(g)

        out["allreduce_s"] = _time(reduce, steps)
    out["rank"] = rank
    parallel.shutdown()
    return out


# ---------------------------------------------------------------------- native
def _cluster() -> tuple[int, int, list[str]]:
    return (int(os.environ.get("D2LCOMPAT_RANK", "0")), int(os.environ.get("D2LCOMPAT_WORLD_SIZE", "1")),
            os.environ.get("D2LCOMPAT_ADDRESSES", "").split(","))


def native_torch(mode: str, steps: int) -> dict[str, Any]:
    import datetime

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, workers, addrs = _cluster()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(IN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, OUT))
    if workers > 1:
        dist.init_process_group("gloo", init_method=f"tcp://{addrs[0]}", rank=rank, world_size=workers,
                                timeout=datetime.timedelta(seconds=120))
        model = DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    Xn, yn = _data(rank, workers)
    X, y = torch.from_numpy(Xn), torch.from_numpy(yn)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * ((model(X) - y) ** 2).sum(dim=1).mean()
        loss.backward()
        opt.step()
        loss.item()

    out = {"step_s": _time(step, steps), "rank": rank}
    if workers > 1:
        dist.destroy_process_group()
    return out


def native_paddle(mode: str, steps: int) -> dict[str, Any]:
    import paddle
    import paddle.distributed as dist

    rank, workers, addrs = _cluster()
    if workers > 1:
        os.environ.update(PADDLE_TRAINER_ID=str(rank), PADDLE_TRAINERS_NUM=str(workers),
                          PADDLE_TRAINER_ENDPOINTS=",".join(addrs), PADDLE_CURRENT_ENDPOINT=addrs[rank],
                          PADDLE_MASTER=addrs[0], PADDLE_RANK_IN_NODE=str(rank),
                          PADDLE_DISTRI_BACKEND="gloo")
        dist.init_parallel_env()
    paddle.seed(0)
    model = paddle.nn.Sequential(paddle.nn.Linear(IN, HIDDEN), paddle.nn.ReLU(), paddle.nn.Linear(HIDDEN, OUT))
    if workers > 1:
        model = paddle.DataParallel(model)
    opt = paddle.optimizer.SGD(learning_rate=LR, parameters=model.parameters())
    Xn, yn = _data(rank, workers)
    X, y = paddle.to_tensor(Xn), paddle.to_tensor(yn)

    def step() -> None:
        loss = 0.5 * ((model(X) - y) ** 2).sum(axis=1).mean()
        loss.backward()
        opt.step()
        opt.clear_grad()
        float(loss)

    out = {"step_s": _time(step, steps), "rank": rank}
    if workers > 1:
        dist.destroy_process_group()
    return out


def native_jax(mode: str, steps: int) -> dict[str, Any]:
    import jax

    rank, workers, addrs = _cluster()
    if workers > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(addrs[0], workers, rank, initialization_timeout=120)
    if mode == "devices":
        jax.config.update("jax_num_cpu_devices", 2)
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devs = jax.devices()
    if workers > 1:  # one device per process
        first: dict[int, Any] = {}
        for d in devs:
            first.setdefault(d.process_index, d)
        devs = [first[i] for i in sorted(first)]
    elif mode != "devices":
        devs = devs[:1]
    mesh = Mesh(np.array(devs), ("batch",))
    rep, split = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("batch"))
    rng = np.random.default_rng(0)
    params = [rng.uniform(-0.07, 0.07, s).astype(np.float32) for s in [(IN, HIDDEN), (HIDDEN,), (HIDDEN, OUT), (OUT,)]]
    params = [jax.make_array_from_callback(p.shape, rep, lambda idx, p=p: p[idx]) for p in params]

    def loss_fn(ps: list[Any], X: Any, y: Any) -> Any:
        h = jax.nn.relu(X @ ps[0] + ps[1])
        return 0.5 * jnp.mean(jnp.sum((h @ ps[2] + ps[3] - y) ** 2, axis=1))

    @jax.jit
    def train(ps: list[Any], X: Any, y: Any) -> tuple[Any, list[Any]]:
        loss, g = jax.value_and_grad(loss_fn)(ps, X, y)
        return loss, [p - LR * gi for p, gi in zip(ps, g)]

    Xn, yn = _data(rank, workers)
    if workers > 1:
        mine = devs[rank]
        X = jax.make_array_from_single_device_arrays((BATCH, IN), split, [jax.device_put(Xn, mine)])
        y = jax.make_array_from_single_device_arrays((BATCH, OUT), split, [jax.device_put(yn, mine)])
    else:
        X, y = jax.device_put(Xn, split), jax.device_put(yn, split)
    state = {"p": params}
    # Several devices of one process: each step shards its batch (a new batch arrives
    # every step in training), as d2lcompat's step does with the batch it is given.
    per_step = mode == "devices"

    def step() -> None:
        Xs, ys = (jax.device_put(Xn, split), jax.device_put(yn, split)) if per_step else (X, y)
        loss, state["p"] = train(state["p"], Xs, ys)
        np.asarray(loss.addressable_data(0))

    out = {"step_s": _time(step, steps), "rank": rank}
    if workers > 1:
        jax.distributed.shutdown()
    return out


def native_tensorflow(mode: str, steps: int) -> dict[str, Any]:
    rank, workers, addrs = _cluster()
    if workers > 1:
        os.environ["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": addrs}, "task": {"type": "worker", "index": rank}})
    import tensorflow as tf

    if workers > 1:
        strategy: Any = tf.distribute.MultiWorkerMirroredStrategy()
    elif mode == "devices":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"])
    else:
        strategy = tf.distribute.get_strategy()
    rng = np.random.default_rng(0)
    with strategy.scope():
        ws = [tf.Variable(rng.uniform(-0.07, 0.07, s).astype(np.float32))
              for s in [(IN, HIDDEN), (HIDDEN,), (HIDDEN, OUT), (OUT,)]]
    Xn, yn = _data(rank, workers)
    replicas = strategy.num_replicas_in_sync
    if mode == "devices":
        half = BATCH // 2
        parts = [(Xn[i * half:(i + 1) * half], yn[i * half:(i + 1) * half]) for i in range(2)]
        X = strategy.experimental_distribute_values_from_function(lambda c: tf.constant(parts[c.replica_id_in_sync_group][0]))
        y = strategy.experimental_distribute_values_from_function(lambda c: tf.constant(parts[c.replica_id_in_sync_group][1]))
    else:
        X, y = tf.constant(Xn), tf.constant(yn)

    def replica(X: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            h = tf.nn.relu(X @ ws[0] + ws[1])
            loss = 0.5 * tf.reduce_sum((h @ ws[2] + ws[3] - y) ** 2) / BATCH
        grads = tape.gradient(loss, ws)
        ctx = tf.distribute.get_replica_context()
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads) if replicas > 1 else grads
        for w, g in zip(ws, grads):
            w.assign_sub(LR * g)
        return loss

    @tf.function
    def train() -> Any:
        return strategy.run(replica, args=(X, y))

    def step() -> None:
        out = train()
        strategy.experimental_local_results(out)[0].numpy()

    return {"step_s": _time(step, steps), "rank": rank}


def main() -> int:
    impl, mode, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if impl == "ours":
        result = ours(mode, steps)
    else:
        backend = os.environ["D2LCOMPAT_BACKEND"]
        result = {"torch": native_torch, "paddle": native_paddle, "jax": native_jax,
                  "tensorflow": native_tensorflow}[backend](mode, steps)
    if result.get("rank", 0) == 0:
        print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
