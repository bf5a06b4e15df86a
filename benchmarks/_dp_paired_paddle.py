"""Paddle only: d2lcompat's step across processes and the native ``paddle.DataParallel``
loop (`benchmarks._dp_worker.native_paddle`) timed in the same processes, alternating
step by step (the order swapped every step), so that the load of a shared machine
lands on both sides:

    OMP_NUM_THREADS=1 d2lcompat launch --nproc 2 --processes benchmarks/_dp_paired_paddle.py hybridized 300

MODE ``hybridized`` or ``eager``; model MLP 20-256-10, SGD, batch 256 (128 a worker).
"""
# ruff: noqa
import os, sys
import paddle
from d2lcompat import parallel

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from benchmarks._dp_pairs import IN, HIDDEN, OUT, LR, data, local_rows, ours, report


def main(mode, n):
    parallel.init()  # paddle.distributed's process group (gloo), which DataParallel uses too
    rng, Xn, yn = data()
    Xn, yn = local_rows(Xn, yn)
    mine = ours(Xn, yn, hybridize=mode == "hybridized")
    paddle.seed(0)
    model = paddle.DataParallel(paddle.nn.Sequential(paddle.nn.Linear(IN, HIDDEN), paddle.nn.ReLU(), paddle.nn.Linear(HIDDEN, OUT)))
    opt = paddle.optimizer.SGD(learning_rate=LR, parameters=model.parameters())
    X, y = paddle.to_tensor(Xn), paddle.to_tensor(yn)

    def nat():
        l = 0.5 * ((model(X) - y) ** 2).sum(axis=1).mean()
        l.backward()
        opt.step()
        opt.clear_grad()
        float(l)

    report(mode, mine, nat, n)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
