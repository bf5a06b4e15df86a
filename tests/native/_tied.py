"""The tied regression net every native-optimizer test trains (issue 3, API §11)."""

from __future__ import annotations

from typing import Any

import d2lcompat
from d2lcompat import init, nn, ops


def tied_regression() -> tuple[nn.Sequential, Any, Any]:
    """seed(0), an MLP whose middle Dense is used twice, built on (32, 4) inputs; X, y."""
    d2lcompat.seed(0)
    shared = nn.Dense(8, activation="relu")
    net = nn.Sequential(nn.Dense(8, activation="relu"), shared, shared, nn.Dense(1))
    net.initialize(init.Xavier())
    X = ops.random.normal((32, 4))
    y = ops.sum(X, axis=1, keepdims=True)
    net(X)
    return net, X, y
