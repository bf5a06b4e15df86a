"""Peak extra resident memory of ``load_parameters`` (API.md §18: about one tensor).

Run under one backend (``D2LCOMPAT_BACKEND``); it builds a net of ``--mb`` megabytes of
float32 parameters in ``--layers`` equal tensors, saves it (one file, and sharded),
then in a fresh process per case loads it into an initialized net and reports the
peak resident set size (``ru_maxrss``) above what the process held before the load.

Example::

    D2LCOMPAT_BACKEND=torch python -m benchmarks.rss --mb 2000 --layers 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any


def _net(mb: int, layers: int) -> Any:
    import d2lcompat
    from d2lcompat import nn

    width = int((mb * 1e6 / 4 / layers) ** 0.5)
    net = nn.Sequential(*[nn.Dense(width, in_units=width, use_bias=False) for _ in range(layers)])
    net.initialize(d2lcompat.init.Zero())
    return net


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _child(path: str, mb: int, layers: int) -> None:
    import gc
    import threading
    import time

    net = _net(mb, layers)
    gc.collect()
    before = _rss_mb()
    peak = [before]
    done = threading.Event()

    def sample() -> None:  # RSS every 2 ms while the load runs
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.002)

    t = threading.Thread(target=sample)
    t.start()
    try:
        net.load_parameters(path)
    finally:
        done.set()
        t.join()
    print(json.dumps({"rss_before_mb": before, "peak_mb": peak[0],
                      "extra_mb": peak[0] - before, "after_mb": _rss_mb()}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=2000)
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--shard", default="500MB")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args.child, args.mb, args.layers)
        return 0
    net = _net(args.mb, args.layers)
    with tempfile.TemporaryDirectory(prefix="d2lc-rss-", dir=os.environ.get("D2LC_BENCH_DIR")) as tmp:
        single = os.path.join(tmp, "net.safetensors")
        sharded = os.path.join(tmp, "sharded")
        net.save_parameters(single)
        net.save_parameters(sharded, max_shard_size=args.shard)
        del net
        for label, path in (("one file", single), (f"shards of {args.shard}", sharded)):
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.rss", "--mb", str(args.mb), "--layers",
                 str(args.layers), "--child", path], capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            tensor = args.mb / args.layers
            print(f"{label}: {args.mb} MB model ({args.layers} tensors of {tensor:.0f} MB): "
                  f"peak extra RSS during load_parameters {res['extra_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
