"""Train examples/char_lm.py on each backend — each in its own process, same seed — and
overlay the four perplexity curves in one PNG (docs/img/char-lm-loss.png).

    python examples/plot_char_lm.py --python torch=/venvs/torch/bin/python \\
        --python jax=/venvs/jax/bin/python ...             # one virtualenv per framework

Needs matplotlib (``pip install ".[plot]" -c constraints.txt``) in the interpreter that
runs this script; extra arguments go to char_lm.py.
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--python", action="append", default=[], metavar="BACKEND=PATH",
                   help="the interpreter of one backend (default: this one)")
    p.add_argument("--out", default=str(HERE.parent / "docs" / "img" / "char-lm-loss.png"))
    args, extra = p.parse_known_args()
    pythons = dict(item.split("=", 1) for item in args.python)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b in args.backends.split(","):
            out = Path(tmp) / f"{b}.json"
            env = dict(os.environ, D2LCOMPAT_BACKEND=b, TF_CPP_MIN_LOG_LEVEL="2")
            subprocess.run([pythons.get(b, sys.executable), str(HERE / "char_lm.py"), "--quiet",
                            "--json", str(out), *extra], env=env, check=True)
            results[b] = json.loads(out.read_text(encoding="utf-8"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    styles = {"torch": "-o", "tensorflow": "--s", "paddle": "-.^", "jax": ":d"}
    for b, r in results.items():
        ppl = r["perplexity"]
        ax.plot(range(1, len(ppl) + 1), ppl, styles.get(b, "-"), label=f"{b} ({ppl[-1]:.3f})",
                alpha=0.8, markersize=4)
    ax.set(xlabel="epoch", ylabel="training perplexity (log scale)", yscale="log",
           title="char-level LSTM, clip_global_norm=1, same seed")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    summary = {b: {k: r[k] for k in ("perplexity", "seconds", "sample")} for b, r in results.items()}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    for b, r in results.items():
        print(f"{b:>10}: final perplexity {r['perplexity'][-1]:.4f}; {r['sample']!r}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
