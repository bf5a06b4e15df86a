"""TensorFlow only: d2lcompat's data-parallel step and the native ``tf.distribute`` loop
timed in the same process(es), alternating step by step, so that the load of a shared
machine lands on both sides (`benchmarks.dp` runs them one after the other).

    D2LCOMPAT_CPU_DEVICES=2 python -m benchmarks._dp_paired_tf devices 500
    d2lcompat launch --nproc 2 --processes benchmarks/_dp_paired_tf.py processes 300
    d2lcompat launch --nproc 2 --processes benchmarks/_dp_paired_tf.py eager 300
    d2lcompat launch --nproc 2 --processes benchmarks/_dp_paired_tf.py eager-native-eager 300

(``eager``: across processes, a net that is not hybridized, against the native compiled
loop; ``eager-native-eager``: the same against the native loop of an eager model
(`_native_eager`), ``eager-native-op-by-op`` against its fully eager form.)

Model and native loop as in `benchmarks._dp_worker` (MLP 20-256-10, SGD, batch 256);
prints the median step of each and their ratio (worker 0).
"""
# ruff: noqa
import os, sys
import numpy as np
from d2lcompat import parallel
from d2lcompat._registry import active
import tensorflow as tf


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from benchmarks._dp_pairs import IN, HIDDEN, OUT, BATCH, LR, data, local_rows, ours, alternate, report


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


def _native_eager(strategy, rng, X, y, compiled_update=True):
    """The native loop of a net that runs eagerly: the forward and backward pass under
    an eager ``tf.GradientTape``, then the all-reduce and the update — one
    ``tf.function`` around ``strategy.run`` (``compiled_update``), or eagerly
    (``strategy.extended.batch_reduce_to``, then ``assign_sub``)."""
    with strategy.scope():
        ws = [tf.Variable(rng.uniform(-0.07, 0.07, s).astype(np.float32)) for s in [(IN, HIDDEN), (HIDDEN,), (HIDDEN, OUT), (OUT,)]]

    device = strategy.extended.worker_devices[0]

    def replica(g):
        with tf.device(device):  # MWMS takes the all-reduce's destination from it
            g = [tf.identity(gi) for gi in g]
        g = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, g)
        for w, gi in zip(ws, g):
            w.assign_sub(LR * gi)

    @tf.function
    def update(g):
        strategy.run(replica, args=(g,))

    def step():
        with tf.GradientTape() as tape:
            h = tf.nn.relu(X @ ws[0] + ws[1])
            l = 0.5 * tf.reduce_sum((h @ ws[2] + ws[3] - y) ** 2) / BATCH
        g = tape.gradient(l, ws)
        if compiled_update:
            update(g)
        else:
            g = strategy.extended.batch_reduce_to(tf.distribute.ReduceOp.SUM, list(zip(g, ws)))
            for w, gi in zip(ws, g):
                w.assign_sub(LR * gi)
        return l.numpy()

    return step


def processes(n: int, hybridize: bool = True) -> None:
    parallel.init()
    rng, Xn, yn = data()
    Xn, yn = local_rows(Xn, yn)
    nat = _native(active()._mwms, rng, tf.constant(Xn), tf.constant(yn))
    report("processes" if hybridize else "eager", ours(Xn, yn, hybridize=hybridize), nat, n)


def eager_native(n: int, compiled_update: bool) -> None:
    """d2lcompat's eager step (a net that is not hybridized) against the native eager
    loop (`_native_eager`)."""
    parallel.init()
    rng, Xn, yn = data()
    Xn, yn = local_rows(Xn, yn)
    nat = _native_eager(active()._mwms, rng, tf.constant(Xn), tf.constant(yn), compiled_update)
    report("eager-native-eager" if compiled_update else "eager-native-op-by-op",
           ours(Xn, yn, hybridize=False), nat, n)


def devices(n: int) -> None:
    rng, Xn, yn = data()
    mine = ours(Xn, yn, hybridize=False, devices=parallel.local_devices()[:2])
    strategy = active()._mirrored_strategy([("cpu", 0), ("cpu", 1)])
    half = BATCH // 2
    parts = [(Xn[i*half:(i+1)*half], yn[i*half:(i+1)*half]) for i in range(2)]
    Xd = strategy.experimental_distribute_values_from_function(lambda c: tf.constant(parts[c.replica_id_in_sync_group][0]))
    yd = strategy.experimental_distribute_values_from_function(lambda c: tf.constant(parts[c.replica_id_in_sync_group][1]))
    print(alternate(mine, _native(strategy, rng, Xd, yd), n))


if __name__ == "__main__":
    {"processes": processes, "devices": devices,
     "eager": lambda n: processes(n, hybridize=False),
     "eager-native-eager": lambda n: eager_native(n, True),
     "eager-native-op-by-op": lambda n: eager_native(n, False)}[sys.argv[1]](int(sys.argv[2]))
