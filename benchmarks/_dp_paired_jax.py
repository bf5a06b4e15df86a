"""JAX only: d2lcompat's step across processes and the native one-``jit``-over-the-
process-mesh loop (`benchmarks._dp_worker`) timed in the same processes, alternating
step by step, so that the load of a shared machine lands on both sides
(`benchmarks.dp` runs them in separately launched processes).

    OMP_NUM_THREADS=1 d2lcompat launch --nproc 2 --processes benchmarks/_dp_paired_jax.py processes 300
    OMP_NUM_THREADS=1 d2lcompat launch --nproc 2 --processes benchmarks/_dp_paired_jax.py eager 200
    OMP_NUM_THREADS=1 d2lcompat launch --nproc 2 --processes benchmarks/_dp_paired_jax.py eager-native-eager 200
    D2LCOMPAT_CPU_DEVICES=2 OMP_NUM_THREADS=1 python -m benchmarks._dp_paired_jax devices 500

``processes``: d2lcompat hybridized (one compiled step); ``eager``: not hybridized
(the eager step, then the all-reduce and the update); ``processes-fresh`` /
``eager-fresh``: a new batch every step (a tensor made from NumPy on both sides)
instead of the same arrays; ``eager-native-eager``: d2lcompat's eager step against the
native loop of a model that runs eagerly (`_native_eager`); ``devices``: two devices of
one process (`devices`). Model and native loop as in
`benchmarks._dp_worker` (MLP 20-256-10, SGD, batch 256); worker 0 prints the median
step of each and their ratio.
"""
# ruff: noqa
import os, sys
import numpy as np
from d2lcompat import parallel
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec


sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from benchmarks._dp_pairs import IN, HIDDEN, OUT, BATCH, LR, data, local_rows, ours, alternate, report


def _mesh(devs):
    """A mesh of ``devs``, its replicated and split shardings and the native side's
    parameters (replicated)."""
    mesh = Mesh(np.array(devs), ("batch",))
    rep, split = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("batch"))
    rng = np.random.default_rng(0)
    params = [rng.uniform(-0.07, 0.07, s).astype(np.float32) for s in [(IN, HIDDEN), (HIDDEN,), (HIDDEN, OUT), (OUT,)]]
    params = [jax.make_array_from_callback(p.shape, rep, lambda idx, p=p: p[idx]) for p in params]
    return mesh, rep, split, params


def _process_mesh():
    """`_mesh` of the processes' first devices, and this process's device."""
    first = {}
    for d in jax.devices():
        first.setdefault(d.process_index, d)
    mesh, rep, split, params = _mesh([first[i] for i in sorted(first)])
    return mesh, rep, split, first[jax.process_index()], params


def _loss(ps, X, y):
    h = jax.nn.relu(X @ ps[0] + ps[1])
    return 0.5 * jnp.mean(jnp.sum((h @ ps[2] + ps[3] - y) ** 2, axis=1))


@jax.jit
def _train(ps, X, y):
    """The native compiled step: value and gradient of `_loss`, the SGD update."""
    l, g = jax.value_and_grad(_loss)(ps, X, y)
    return l, [p - LR * gi for p, gi in zip(ps, g)]


def _native(Xn, yn, fresh=False):
    """`benchmarks._dp_worker.native_jax`'s loop: one jit over the mesh of the
    processes' first devices, batch split, parameters replicated."""
    mesh, rep, split, mine, params = _process_mesh()

    def shard(a):  # this process's rows as its shard of the global batch
        return jax.make_array_from_single_device_arrays((BATCH, a.shape[1]), split, [jax.device_put(a, mine)])

    X, y = shard(Xn), shard(yn)
    state = {"p": params}

    def dispatch():
        Xs, ys = (shard(Xn), shard(yn)) if fresh else (X, y)
        l, state["p"] = _train(state["p"], Xs, ys)
        return l

    def step():
        return np.asarray(dispatch().addressable_data(0))

    step.dispatch = dispatch  # the call alone, not waiting for its result
    return step


def _native_eager(Xn, yn):
    """The native loop of a model that runs eagerly: ``jax.value_and_grad`` without
    ``jit`` on this process's rows and parameters, then one ``jit`` over the mesh of the
    processes' first devices that sums the processes' gradients (XLA's all-reduce) and
    updates the replicated parameters — JAX has no collective outside a compiled
    function."""
    mesh, rep, split, mine, params = _process_mesh()
    X, y = jax.device_put(Xn, mine), jax.device_put(yn, mine)
    nproc = mesh.size

    def loss_fn(ps, X, y):
        h = jax.nn.relu(X @ ps[0] + ps[1])
        return 0.5 * jnp.sum((h @ ps[2] + ps[3] - y) ** 2) / BATCH

    grad = jax.value_and_grad(loss_fn)

    @jax.jit
    def update(ps, gs):
        return [p - LR * g.sum(0) for p, g in zip(ps, gs)]

    state = {"p": params}

    def step():
        local = [p.addressable_data(0) for p in state["p"]]
        l, g = grad(local, X, y)
        gs = [jax.make_array_from_single_device_arrays((nproc,) + gi.shape, split, [gi[None]]) for gi in g]
        state["p"] = update(state["p"], gs)
        return np.asarray(l)

    return step


def devices(n):
    """Two CPU devices of one process (``D2LCOMPAT_CPU_DEVICES=2``): d2lcompat's
    ``train_step(devices=...)`` against `benchmarks._dp_worker.native_jax`'s ``devices``
    loop (one jit over a mesh of the two devices, the batch put sharded every step)."""
    _, Xn, yn = data()
    mine = ours(Xn, yn, hybridize=False, devices=parallel.local_devices()[:2])
    _, _, split, params = _mesh(jax.devices()[:2])
    state = {"p": params}

    def nat():
        l, state["p"] = _train(state["p"], jax.device_put(Xn, split), jax.device_put(yn, split))
        return np.asarray(l)

    print("devices", alternate(mine, nat, n), flush=True)


def main(mode, n):
    parallel.init()
    rng, Xn, yn = data()
    Xn, yn = local_rows(Xn, yn)
    if mode == "eager-native-eager":  # d2lcompat's eager step against `_native_eager`
        report(mode, ours(Xn, yn, hybridize=False), _native_eager(Xn, yn), n)
        return
    fresh = mode.endswith("-fresh")
    mine = ours(Xn, yn, hybridize=mode.startswith("processes"), fresh=fresh)
    report(mode, mine, _native(Xn, yn, fresh=fresh), n)


if __name__ == "__main__":
    (devices if sys.argv[1] == "devices" else lambda n: main(sys.argv[1], n))(int(sys.argv[2]))
