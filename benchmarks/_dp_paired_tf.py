"""TensorFlow only: d2lcompat's data-parallel step and the native ``tf.distribute`` loop
timed in the same process(es), alternating step by step, so that the load of a shared
machine lands on both sides (`benchmarks.dp` runs them one after the other).

    D2LCOMPAT_CPU_DEVICES=2 python -m benchmarks._dp_paired_tf devices 500
    d2lcompat launch --nproc 2 --processes benchmarks/_dp_paired_tf.py processes 300

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


def processes(n: int) -> None:
    parallel.init()
    rank, workers = parallel.rank(), parallel.world_size()
    IN, HIDDEN, OUT, BATCH, LR = 20, 256, 10, 256, 0.1
    rng = np.random.default_rng(0)
    Xn = rng.uniform(-1, 1, size=(BATCH, IN)).astype(np.float32)
    yn = rng.uniform(-1, 1, size=(BATCH, OUT)).astype(np.float32)
    local = BATCH // workers
    Xn, yn = Xn[rank*local:(rank+1)*local], yn[rank*local:(rank+1)*local]
    d2lcompat.seed(0)
    net = nn.Sequential(nn.Dense(HIDDEN, activation="relu", in_units=IN), nn.Dense(OUT, in_units=HIDDEN))
    net.initialize(); net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": LR})
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer)
    X, y = ops.tensor(Xn), ops.tensor(yn)
    strategy = active()._mwms
    with strategy.scope():
        ws = [tf.Variable(rng.uniform(-0.07, 0.07, s).astype(np.float32)) for s in [(IN, HIDDEN), (HIDDEN,), (HIDDEN, OUT), (OUT,)]]
    Xt, yt = tf.constant(Xn), tf.constant(yn)
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
        return strategy.run(replica, args=(Xt, yt))
    def nat():
        strategy.experimental_local_results(train())[0].numpy()
    def ours():
        ops.to_numpy(step(X, y))
    ta, tb = [], []
    for i in range(n):
        s = time.perf_counter(); ours(); e = time.perf_counter(); nat(); f = time.perf_counter()
        if i >= 10:
            ta.append(e - s); tb.append(f - e)
    if rank == 0:
        a, b = statistics.median(ta), statistics.median(tb)
        print(f"AB ours {a*1e3:.3f} ms native {b*1e3:.3f} ms ratio {a/b:.3f} load {os.getloadavg()[0]:.1f}")
    parallel.shutdown()


def devices(n: int) -> None:
    IN, HIDDEN, OUT, BATCH, LR = 20, 256, 10, 256, 0.1
    rng = np.random.default_rng(0)
    Xn = rng.uniform(-1, 1, size=(BATCH, IN)).astype(np.float32)
    yn = rng.uniform(-1, 1, size=(BATCH, OUT)).astype(np.float32)
    devs = parallel.local_devices()[:2]
    d2lcompat.seed(0)
    net = nn.Sequential(nn.Dense(HIDDEN, activation="relu", in_units=IN), nn.Dense(OUT, in_units=HIDDEN))
    net.initialize()
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": LR})
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer, devices=devs)
    X, y = ops.tensor(Xn), ops.tensor(yn)
    strategy = active()._mirrored_strategy([("cpu", 0), ("cpu", 1)])
    with strategy.scope():
        ws = [tf.Variable(rng.uniform(-0.07, 0.07, s).astype(np.float32)) for s in [(IN, HIDDEN), (HIDDEN,), (HIDDEN, OUT), (OUT,)]]
    half = BATCH // 2
    parts = [(Xn[i*half:(i+1)*half], yn[i*half:(i+1)*half]) for i in range(2)]
    Xd = strategy.experimental_distribute_values_from_function(lambda c: tf.constant(parts[c.replica_id_in_sync_group][0]))
    yd = strategy.experimental_distribute_values_from_function(lambda c: tf.constant(parts[c.replica_id_in_sync_group][1]))
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
        return strategy.run(replica, args=(Xd, yd))
    def nat():
        strategy.experimental_local_results(train())[0].numpy()
    def ours():
        ops.to_numpy(step(X, y))
    ta, tb = [], []
    for i in range(n):
        s = time.perf_counter(); ours(); e = time.perf_counter(); nat(); f = time.perf_counter()
        if i >= 10:
            ta.append(e - s); tb.append(f - e)
    a, b = statistics.median(ta), statistics.median(tb)
    print(f"AB ours {a*1e3:.3f} ms native {b*1e3:.3f} ms ratio {a/b:.3f} load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    {"processes": processes, "devices": devices}[sys.argv[1]](int(sys.argv[2]))
