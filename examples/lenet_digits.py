"""LeNet with BatchNorm (D2L §7.6 with §8.5's BatchNorm) trained on scikit-learn's
digits with `d2lcompat.fit` — the same script on every backend.

    D2LCOMPAT_BACKEND=jax python examples/lenet_digits.py            # 10 epochs
    D2LCOMPAT_BACKEND=torch python examples/lenet_digits.py --hybridize --json out.json

Needs ``pip install ".[data]" -c constraints.txt`` (scikit-learn, for its bundled digits). The 8x8
images are small for LeNet's 5x5 kernels, so the first two convolutions pad by 2 (the
book pads the 28x28 Fashion-MNIST images the same way in §7.6).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import data, init, loss, nn


def lenet_bn() -> nn.Sequential:
    """§8.5's LeNet: BatchNorm after every convolution and hidden Dense layer."""
    return nn.Sequential(
        nn.Conv2D(6, kernel_size=5, padding=2), nn.BatchNorm(), nn.Activation("sigmoid"),
        nn.AvgPool2D(pool_size=2, strides=2),
        nn.Conv2D(16, kernel_size=5, padding=2), nn.BatchNorm(), nn.Activation("sigmoid"),
        nn.AvgPool2D(pool_size=2, strides=2),
        nn.Flatten(),
        nn.Dense(120), nn.BatchNorm(), nn.Activation("sigmoid"),
        nn.Dense(84), nn.BatchNorm(), nn.Activation("sigmoid"),
        nn.Dense(10),
    )


def split(seed: int, n_test: int = 297) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """digits, split once by a seeded NumPy permutation (the same on every backend)."""
    X, y = data.digits()
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:n_test], order[n_test:]
    return (X[train], y[train]), (X[test], y[test])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="train on the first N samples only")
    p.add_argument("--hybridize", action="store_true", help="compiled training step")
    p.add_argument("--json", default=None, help="write the history and accuracy here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    d2lcompat.seed(args.seed)
    (Xtr, ytr), (Xte, yte) = split(args.seed)
    if args.limit:
        Xtr, ytr = Xtr[: args.limit], ytr[: args.limit]
    train_iter = data.DataLoader(data.ArrayDataset(Xtr, ytr), args.batch_size, shuffle=True,
                                 seed=args.seed)
    test_iter = data.DataLoader(data.ArrayDataset(Xte, yte), 256)

    net = lenet_bn()
    net.initialize(init.Xavier())
    if args.hybridize:
        net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": args.lr})
    ce = loss.SoftmaxCrossEntropyLoss()
    # The last fifth of the epochs at a tenth of the rate: BatchNorm's running statistics
    # (what predict mode uses) lag behind weights that still move fast; a small final
    # rate lets them catch up (the test accuracy otherwise swings by several points).
    slow = max(1, args.epochs // 5) if args.epochs > 1 else 0
    drop_at = args.epochs - slow + 1  # the first epoch at the small rate
    # One `fit` per epoch, so that one counter runs over the whole run and the rate can
    # drop between two epochs; the history of each call holds that epoch.
    runs, rates = [], []
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        if slow and epoch == drop_at:
            trainer.set_learning_rate(args.lr / 10)
            if not args.quiet:
                print(f"learning rate {args.lr:g} -> {args.lr / 10:g} for the last {slow} "
                      "epoch(s), so that BatchNorm's running statistics catch up")
        tick = time.perf_counter()
        h = d2lcompat.fit(net, train_iter, ce, trainer, 1, valid_iter=test_iter, verbose=False)
        runs.append(h)
        rates.append(trainer.learning_rate)
        if not args.quiet:
            print(f"epoch {epoch}/{args.epochs}  lr {trainer.learning_rate:g}  "
                  f"loss {h['loss'][0]:.4f}  accuracy {h['accuracy'][0]:.4f}  "
                  f"val_loss {h['val_loss'][0]:.4f}  val_accuracy {h['val_accuracy'][0]:.4f}  "
                  f"({time.perf_counter() - tick:.1f} s)", flush=True)
    took = time.perf_counter() - start

    def joined(key: str) -> list[float]:
        return [float(v) for h in runs for v in h[key]]

    result = {
        "backend": d2lcompat.backend(),
        "epochs": args.epochs,
        "hybridize": args.hybridize,
        "seconds": took,
        "loss": joined("loss"),
        "val_loss": joined("val_loss"),
        "val_accuracy": joined("val_accuracy"),
        "learning_rate": rates,
        "test_accuracy": joined("val_accuracy")[-1],
    }
    print(f"{d2lcompat.backend()}: test accuracy {result['test_accuracy']:.3f} after "
          f"{args.epochs} epochs ({took:.1f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
