"""API §11 / issue 3: paddle.optimizer trains a d2lcompat net through param.native()."""

from __future__ import annotations

import paddle
from _tied import tied_regression

from d2lcompat import ops


def test_paddle_optimizer_trains_a_tied_net() -> None:
    net, X, y = tied_regression()
    natives = [p.native() for p in net.collect_params().values()]
    opt = paddle.optimizer.SGD(learning_rate=0.05, parameters=natives)
    losses = []
    for _ in range(20):
        loss = ops.mean(ops.square(net(X) - y))
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    assert losses[-1] < losses[0] * 0.5
    assert net[1].weight.native() is net[2].weight.native()
