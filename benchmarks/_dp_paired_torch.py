"""torch only: d2lcompat's step across processes and the native DDP loop
(`benchmarks._dp_worker.native_torch`) timed in the same processes, alternating step
by step (the order swapped every step), so that the load of a shared machine lands on
both sides:

    OMP_NUM_THREADS=1 d2lcompat launch --nproc 2 --processes benchmarks/_dp_paired_torch.py hybridized 300

MODE ``hybridized`` or ``eager``; model MLP 20-256-10, SGD, batch 256 (128 a worker).
"""
# ruff: noqa
import os, sys
import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
import statistics, time
import d2lcompat
from d2lcompat import loss, nn, ops, parallel

IN, HIDDEN, OUT, BATCH, LR = 20, 256, 10, 256, 0.1


def _ours(Xn, yn, hybridize):
    d2lcompat.seed(0)
    net = nn.Sequential(nn.Dense(HIDDEN, activation="relu", in_units=IN), nn.Dense(OUT, in_units=HIDDEN))
    net.initialize()
    if hybridize:
        net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": LR})
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer)
    X, y = ops.tensor(Xn), ops.tensor(yn)
    return lambda: ops.to_numpy(step(X, y))


def _alternate(ours, nat, n):
    """As `benchmarks._dp_paired_jax._alternate`."""
    ta, tb = [], []
    for i in range(n):
        first, second = (ours, nat) if i % 2 == 0 else (nat, ours)
        s = time.perf_counter(); first(); e = time.perf_counter(); second(); f = time.perf_counter()
        if i >= 10:
            a, b = (e - s, f - e) if i % 2 == 0 else (f - e, e - s)
            ta.append(a); tb.append(b)
    a, b = statistics.median(ta), statistics.median(tb)
    return f"AB ours {a*1e3:.3f} ms native {b*1e3:.3f} ms ratio {a/b:.3f} load {os.getloadavg()[0]:.1f}"


def main(mode, n):
    parallel.init()
    rank, workers = parallel.rank(), parallel.world_size()
    rng = np.random.default_rng(0)
    Xn = rng.uniform(-1, 1, size=(BATCH, IN)).astype(np.float32)
    yn = rng.uniform(-1, 1, size=(BATCH, OUT)).astype(np.float32)
    local = BATCH // workers
    Xn, yn = Xn[rank*local:(rank+1)*local], yn[rank*local:(rank+1)*local]
    ours = _ours(Xn, yn, hybridize=mode == "hybridized")
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(IN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, OUT)))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    X, y = torch.from_numpy(Xn), torch.from_numpy(yn)

    def nat():
        opt.zero_grad(set_to_none=True)
        l = 0.5 * ((model(X) - y) ** 2).sum(dim=1).mean()
        l.backward()
        opt.step()
        l.item()

    line = _alternate(ours, nat, n)
    if rank == 0:
        print(mode, line, flush=True)
    parallel.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
