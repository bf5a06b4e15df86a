"""Train the chapter's MLP with `d2lcompat.fit` and plot its history (docs/training.md).

The data are two noisy interleaved half-moons made with NumPy (no download), the
model ``Dense(64, relu) -> Dense(64, relu) -> Dense(2)``, Adam, 15 epochs, compiled
(``net.hybridize()``). Run it under any backend; the plot is the same up to float32
rounding::

    D2LCOMPAT_BACKEND=jax python examples/fit_mlp.py --plot docs/img/fit-history.png
"""

from __future__ import annotations

import argparse

import numpy as np

import d2lcompat
from d2lcompat import init, loss, nn


def moons(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of two interleaved half-circles with Gaussian noise, labels 0/1."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    label = rng.integers(0, 2, n)
    x = np.where(label == 0, np.cos(t), 1 - np.cos(t))
    y = np.where(label == 0, np.sin(t), 0.5 - np.sin(t))
    pts = np.stack([x, y], axis=1) + rng.normal(0, noise, (n, 2))
    return pts.astype(np.float32), label.astype(np.int64)


def batches(X: np.ndarray, y: np.ndarray, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(X[i : i + size], y[i : i + size]) for i in range(0, len(X), size)]


def main(argv: list[str] | None = None) -> d2lcompat.History:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--plot", default=None, help="write the history plot (PNG) here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    X, y = moons(1024, 0.15, seed=0)
    Xv, yv = moons(256, 0.15, seed=1)
    d2lcompat.seed(0)
    net = nn.Sequential(nn.Dense(64, activation="relu"), nn.Dense(64, activation="relu"),
                        nn.Dense(2))
    net.initialize(init.Xavier())
    net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), "adam", {"learning_rate": 0.01})
    history = d2lcompat.fit(net, batches(X, y, 64), loss.SoftmaxCrossEntropyLoss(), trainer,
                            args.epochs, valid_iter=batches(Xv, yv, 256), verbose=not args.quiet)
    if args.plot:
        history.plot(args.plot, title=f"fit on {d2lcompat.backend()}: two moons, Adam")
    print(f"{d2lcompat.backend()}: final loss {history['loss'][-1]:.4f}, "
          f"validation accuracy {history['val_accuracy'][-1]:.3f}")
    return history


if __name__ == "__main__":
    main()
