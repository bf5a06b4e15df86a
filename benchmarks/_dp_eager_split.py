"""Where the eager data-parallel step's time goes (TensorFlow, JAX), in the processes of
one launch, every part timed in turn (medians after 10 warm-up calls, 3 rounds):

    OMP_NUM_THREADS=1 d2lcompat launch --nproc 2 --processes benchmarks/_dp_eager_split.py 150

* ``step``: d2lcompat's eager step (``train_step`` of a net that is not hybridized);
* ``fwd+bwd``: its eager forward and backward pass alone (the step's differentiator);
* ``native eager fwd+bwd``: the framework's own eager gradient of the same model
  (``tf.GradientTape`` / ``jax.value_and_grad`` without ``jit``), one worker;
* ``rest``: what the step does after the backward pass — the all-reduce, the NaN probe
  and the update (`TrainStep._reduce_and_update` where the adapter compiles them,
  else `TrainStep._update_checked`);
* ``native compiled step``: the reference of `benchmarks.dp` (one compiled step with
  its collective: ``benchmarks._dp_paired_tf`` / ``_dp_paired_jax``).

Model MLP 20-256-10, SGD, 128 rows per worker (`benchmarks._dp_worker`).
"""
# ruff: noqa
import os, sys, time, statistics
import numpy as np
import d2lcompat
from d2lcompat import ops, parallel

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from benchmarks._dp_pairs import IN, HIDDEN, OUT, BATCH, data, local_rows, build


def med(f, n):
    ts = []
    for i in range(n):
        s = time.perf_counter(); f(); ts.append(time.perf_counter() - s)
    return statistics.median(ts[10:]) * 1e3


def main(n):
    parallel.init()
    rank = parallel.rank()
    rng, Xn, yn = data()
    Xn, yn = local_rows(Xn, yn)
    net, L, step = build(hybridize=False)
    X, y = ops.tensor(Xn), ops.tensor(yn)
    for _ in range(5):
        ops.to_numpy(step(X, y))
    diff = step._eager_plan()
    last = {}

    def fwdbwd():
        def objective():
            pred = net(X)
            return ops.sum(L(pred, y)), pred
        total, _, _ = diff(objective, check=False, inputs=(X, y))
        last["total"] = total
        ops.to_numpy(total)

    def rest():
        total = last["total"]
        mean = step._reduce_and_update(total)
        if mean is None:
            mean = step._update_checked(total * step._scale, step._eager_vars, len(Xn))
        ops.to_numpy(mean)

    backend = d2lcompat.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        from benchmarks import _dp_paired_tf as P
        from d2lcompat._registry import active
        ws = [tf.Variable(rng.uniform(-0.07, 0.07, s).astype(np.float32)) for s in [(IN, HIDDEN), (HIDDEN,), (HIDDEN, OUT), (OUT,)]]
        Xt, yt = tf.constant(Xn), tf.constant(yn)

        def native_eager():
            with tf.GradientTape() as tape:
                h = tf.nn.relu(Xt @ ws[0] + ws[1])
                l = 0.5 * tf.reduce_sum((h @ ws[2] + ws[3] - yt) ** 2) / BATCH
            g = tape.gradient(l, ws)
            g[-1].numpy()

        compiled = P._native(active()._mwms, rng, Xt, yt)
    else:
        import jax, jax.numpy as jnp
        from benchmarks import _dp_paired_jax as P
        ps = [jnp.asarray(rng.uniform(-0.07, 0.07, s).astype(np.float32)) for s in [(IN, HIDDEN), (HIDDEN,), (HIDDEN, OUT), (OUT,)]]
        Xj, yj = jnp.asarray(Xn), jnp.asarray(yn)

        def loss_fn(ps, X, y):
            h = jax.nn.relu(X @ ps[0] + ps[1])
            return 0.5 * jnp.mean(jnp.sum((h @ ps[2] + ps[3] - y) ** 2, axis=1))

        vg = jax.value_and_grad(loss_fn)

        def native_eager():
            l, g = vg(ps, Xj, yj)
            np.asarray(g[-1])

        compiled = P._native(Xn, yn)
    parts = {"step": lambda: ops.to_numpy(step(X, y)), "fwd+bwd": fwdbwd, "native eager fwd+bwd": native_eager,
             "rest": rest, "native compiled step": compiled}
    res = {}
    for _ in range(3):
        for name, f in parts.items():
            res.setdefault(name, []).append(med(f, n))
    if rank == 0:
        print(backend, "; ".join(f"{k} {statistics.median(v):.2f} ms ({', '.join(f'{x:.2f}' for x in v)})" for k, v in res.items()),
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    parallel.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]))
