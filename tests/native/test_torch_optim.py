"""API §11 / issue 3: torch.optim trains a d2lcompat net through param.native()."""

from __future__ import annotations

import numpy as np
import torch
from _tied import tied_regression

from d2lcompat import ops


def test_torch_optim_trains_a_tied_net() -> None:
    net, X, y = tied_regression()
    natives = [p.native() for p in net.collect_params().values()]
    assert all(isinstance(v, torch.nn.Parameter) for v in natives)
    opt = torch.optim.SGD(natives, lr=0.05)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = ops.mean(ops.square(net(X) - y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.5
    assert net[1].weight.native() is net[2].weight.native()
    # the framework's own backward is visible through the d2lcompat API
    assert net[1].weight.grad() is not None
    np.testing.assert_array_equal(ops.to_numpy(net[1].weight.grad()), ops.to_numpy(natives[2].grad))
