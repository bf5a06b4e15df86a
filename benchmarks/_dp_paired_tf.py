"""TensorFlow only: d2lcompat's data-parallel step and the native ``tf.distribute`` loop
timed in the same process(es), alternating step by step, so that the load of a shared
machine lands on both sides (`benchmarks.dp` runs them one after the other).

    D2LCOMPAT_CPU_DEVICES=2 python -m benchmarks._dp_paired_tf devices 500
    d2lcompat launch --nproc 2 --processes benchmarks/_dp_paired_tf.py processes 300
    d2lcompat launch --nproc 2 --processes benchmarks/_dp_paired_tf.py eager 300

(``eager``: across processes, a net that is not hybridized.)

Model and native loop as in `benchmarks._dp_worker` (MLP 20-256-10, SGD, batch 256);
prints the median step of each and their ratio (worker 0).
"""
# ruff: noqa
import os, sys, time, statistics
import numpy as np
import d2lcompat
from d2lcompat import nn, ops, parallel, loss
from d2lcompat._registry import active
import tensorflow as tf


IN, HIDDEN, OUT, BATCH, LR = 20, 256, 10, 256, 0.1


def _data():
    rng = np.random.default_rng(0)
    Xn = rng.uniform(-1, 1, size=(BATCH, IN)).astype(np.float32)
    yn = rng.uniform(-1, 1, size=(BATCH, OUT)).astype(np.float32)
    return rng, Xn, yn


def _ours(Xn, yn, hybridize, devices=None):
    """d2lcompat's step on this process's rows, as a no-argument call."""
    d2lcompat.seed(0)
    net = nn.Sequential(nn.Dense(HIDDEN, activation="relu", in_units=IN), nn.Dense(OUT, in_units=HIDDEN))
    net.initialize()
    if hybridize:
        net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": LR})
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer, devices=devices)
    X, y = ops.tensor(Xn), ops.tensor(yn)
    return lambda: ops.to_numpy(step(X, y))


def _native(strategy, rng, X, y):
    """The native loop: one tf.function around strategy.run, SUM all-reduce of the
    gradients in the replica context, the update on the mirrored variables."""
    with strategy.scope():
        ws = [tf.Variable(rng.uniform(-0.07, 0.07, s).astype(np.float32)) for s in [(IN, HIDDEN), (HIDDEN,), (HIDDEN, OUT), (OUT,)]]

    def replica(X, y):
        with tf.GradientTape() as tape:
            h = tf.nn.relu(X @ ws[0] + ws[1])
            l = 0.5 * tf.reduce_sum((h @ ws[2] + ws[3] - y) ** 2) / BATCH
        g = tape.gradient(l, ws)
        g = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, g)
        for w, gi in zip(ws, g):
            w.assign_sub(LR * gi)
        return l

    @tf.function
    def train():
        return strategy.run(replica, args=(X, y))

    return lambda: strategy.experimental_local_results(train())[0].numpy()


def _alternate(ours, nat, n):
    """Both steps n times, alternating; the median of each after 10 warm-up steps."""
    ta, tb = [], []
    for i in range(n):
        s = time.perf_counter(); ours(); e = time.perf_counter(); nat(); f = time.perf_counter()
        if i >= 10:
            ta.append(e - s); tb.append(f - e)
    a, b = statistics.median(ta), statistics.median(tb)
    return f"AB ours {a*1e3:.3f} ms native {b*1e3:.3f} ms ratio {a/b:.3f} load {os.getloadavg()[0]:.1f}"


def processes(n: int, hybridize: bool = True) -> None:
    parallel.init()
    rank, workers = parallel.rank(), parallel.world_size()
    rng, Xn, yn = _data()
    local = BATCH // workers
    Xn, yn = Xn[rank*local:(rank+1)*local], yn[rank*local:(rank+1)*local]
    ours = _ours(Xn, yn, hybridize=hybridize)
    nat = _native(active()._mwms, rng, tf.constant(Xn), tf.constant(yn))
    line = _alternate(ours, nat, n)
    if rank == 0:
        print(line)
    parallel.shutdown()


def devices(n: int) -> None:
    rng, Xn, yn = _data()
    ours = _ours(Xn, yn, hybridize=False, devices=parallel.local_devices()[:2])
    strategy = active()._mirrored_strategy([("cpu", 0), ("cpu", 1)])
    half = BATCH // 2
    parts = [(Xn[i*half:(i+1)*half], yn[i*half:(i+1)*half]) for i in range(2)]
    Xd = strategy.experimental_distribute_values_from_function(lambda c: tf.constant(parts[c.replica_id_in_sync_group][0]))
    yd = strategy.experimental_distribute_values_from_function(lambda c: tf.constant(parts[c.replica_id_in_sync_group][1]))
    print(_alternate(ours, _native(strategy, rng, Xd, yd), n))


if __name__ == "__main__":
    {"processes": processes, "devices": devices,
     "eager": lambda n: processes(n, hybridize=False)}[sys.argv[1]](int(sys.argv[2]))
