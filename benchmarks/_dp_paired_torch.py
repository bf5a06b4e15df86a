"""torch only: d2lcompat's step across processes and the native DDP loop
(`benchmarks._dp_worker.native_torch`) timed in the same processes, alternating step
by step (the order swapped every step), so that the load of a shared machine lands on
both sides:

    OMP_NUM_THREADS=1 d2lcompat launch --nproc 2 --processes benchmarks/_dp_paired_torch.py hybridized 300

MODE ``hybridized`` or ``eager``; model MLP 20-256-10, SGD, batch 256 (128 a worker).
"""
# ruff: noqa
import os, sys
import torch
from torch.nn.parallel import DistributedDataParallel
from d2lcompat import parallel

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from benchmarks._dp_pairs import IN, HIDDEN, OUT, LR, data, local_rows, ours, report


def main(mode, n):
    parallel.init()
    rng, Xn, yn = data()
    Xn, yn = local_rows(Xn, yn)
    mine = ours(Xn, yn, hybridize=mode == "hybridized")
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

    report(mode, mine, nat, n)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
