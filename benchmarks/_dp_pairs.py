"""What the data-parallel A/B scripts share (`_dp_paired_tf`, `_dp_paired_jax`,
`_dp_paired_torch`, `_dp_paired_paddle`, `_dp_eager_split`): the model's sizes, the
batch, this worker's rows, d2lcompat's step, the alternating timer and its report.
Framework-free: each script imports its own framework for its native loop."""
# ruff: noqa
import os, statistics, time
import numpy as np
import d2lcompat
from d2lcompat import loss, nn, ops, parallel

IN, HIDDEN, OUT, BATCH, LR = 20, 256, 10, 256, 0.1


def data():
    """The whole batch and the generator the native sides draw their weights from."""
    rng = np.random.default_rng(0)
    Xn = rng.uniform(-1, 1, size=(BATCH, IN)).astype(np.float32)
    yn = rng.uniform(-1, 1, size=(BATCH, OUT)).astype(np.float32)
    return rng, Xn, yn


def local_rows(Xn, yn):
    """This worker's rows of the batch (after `parallel.init`)."""
    rank, local = parallel.rank(), BATCH // parallel.world_size()
    return Xn[rank*local:(rank+1)*local], yn[rank*local:(rank+1)*local]


def build(hybridize, devices=None):
    """d2lcompat's MLP, its L2 loss and its `train_step` (SGD)."""
    d2lcompat.seed(0)
    net = nn.Sequential(nn.Dense(HIDDEN, activation="relu", in_units=IN), nn.Dense(OUT, in_units=HIDDEN))
    net.initialize()
    if hybridize:
        net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": LR})
    L = loss.L2Loss()
    return net, L, d2lcompat.train_step(net, L, trainer, devices=devices)


def ours(Xn, yn, hybridize, devices=None, fresh=False):
    """d2lcompat's step on these rows, as a no-argument call; ``fresh``: a new batch
    tensor every step, as from a data loader."""
    step = build(hybridize, devices)[2]
    if fresh:
        return lambda: ops.to_numpy(step(ops.tensor(Xn), ops.tensor(yn)))
    X, y = ops.tensor(Xn), ops.tensor(yn)
    return lambda: ops.to_numpy(step(X, y))


def alternate(ours, nat, n):
    """Both steps n times, alternating (the order swapped every step); the median of
    each after 10 warm-up steps."""
    ta, tb = [], []
    for i in range(n):
        first, second = (ours, nat) if i % 2 == 0 else (nat, ours)
        s = time.perf_counter(); first(); e = time.perf_counter(); second(); f = time.perf_counter()
        if i >= 10:
            a, b = (e - s, f - e) if i % 2 == 0 else (f - e, e - s)
            ta.append(a); tb.append(b)
    a, b = statistics.median(ta), statistics.median(tb)
    return f"AB ours {a*1e3:.3f} ms native {b*1e3:.3f} ms ratio {a/b:.3f} load {os.getloadavg()[0]:.1f}"


def report(mode, mine, nat, n):
    """`alternate` the two steps across the processes, print the result on worker 0
    (prefixed by ``mode``: `benchmarks.dp` reads it), and leave the process group."""
    line = alternate(mine, nat, n)
    if parallel.rank() == 0:
        print(mode, line, flush=True)
    parallel.shutdown()
