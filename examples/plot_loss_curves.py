"""Train examples/lenet_digits.py on each backend — each in its own process, same seed —
and overlay the four loss curves in one PNG (docs/img/lenet-digits-loss.png).

    python examples/plot_loss_curves.py                    # one interpreter with every framework
    python examples/plot_loss_curves.py --python torch=/venvs/torch/bin/python \\
        --python jax=/venvs/jax/bin/python ...             # one virtualenv per framework

Needs matplotlib (``pip install ".[plot]" -c constraints.txt``) in the interpreter that runs this
script, and ``.[data]`` in each backend's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BACKENDS = ("torch", "tensorflow", "paddle", "jax")


def run_backend(backend: str, python: str, epochs: int, out: Path, extra: list[str]) -> dict:
    env = dict(os.environ, D2LCOMPAT_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [python, str(HERE / "lenet_digits.py"), "--epochs", str(epochs), "--quiet",
           "--json", str(out), *extra]
    subprocess.run(cmd, env=env, check=True)
    return json.loads(out.read_text(encoding="utf-8"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--python", action="append", default=[], metavar="BACKEND=PATH",
                   help="the interpreter of one backend (default: this one)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", default=str(HERE.parent / "docs" / "img" / "lenet-digits-loss.png"))
    args, extra = p.parse_known_args()
    pythons = dict(item.split("=", 1) for item in args.python)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b in args.backends.split(","):
            results[b] = run_backend(b, pythons.get(b, sys.executable), args.epochs,
                                     Path(tmp) / f"{b}.json", extra)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = {"torch": "-o", "tensorflow": "--s", "paddle": "-.^", "jax": ":d"}
    for b, r in results.items():
        epochs = range(1, len(r["loss"]) + 1)
        ax_loss.plot(epochs, r["loss"], styles.get(b, "-"), label=b, alpha=0.8)
        ax_acc.plot(epochs, r["val_accuracy"], styles.get(b, "-"),
                    label=f"{b} ({r['test_accuracy']:.1%})", alpha=0.8)
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="LeNet + BatchNorm on digits")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title="same seed, four backends")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    summary = {b: {k: r[k] for k in ("loss", "val_accuracy", "test_accuracy", "seconds")}
               for b, r in results.items()}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    for b, r in results.items():
        print(f"{b:>10}: final loss {r['loss'][-1]:.4f}, test accuracy {r['test_accuracy']:.3f}, "
              f"{r['seconds']:.0f} s")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
