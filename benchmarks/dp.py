"""Data-parallel benchmark: 2 workers against 1 on the same total batch, and d2lcompat's
data-parallel step against the framework's own DDP/strategy loop with the same model.

``python -m benchmarks.dp`` never imports a framework: it starts the workers
(`benchmarks._dp_worker`) of each backend with its Python, on loopback with ports the
OS chose, and prints a Markdown table (and JSON with ``--json``). Model: MLP
20-256-10, SGD, global batch 256 (128 per worker); eager steps (``train_step``
without ``hybridize``) unless said otherwise. "hybridized" across processes is the
compiled forward with the eager update and all-reduce, or, where the adapter compiles
the collective into the step (TensorFlow), the whole step as one compiled function.

Examples
--------
::

    python -m benchmarks.dp --python torch=/work/main/.tox/torch/bin/python --steps 100 --rounds 3

Each configuration runs ``--rounds`` times, interleaved; the ratio column is the median
of the rounds' ratios (each round's d2lcompat run over the same round's native run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("torch", "tensorflow", "paddle", "jax")
#: d2lcompat's data-parallel step / the native DDP or strategy step (the issue's target).
TARGET = 1.10
_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2", "PYTHONHASHSEED": "0"}
#: Which runs each backend has: (impl, mode, workers, devices).
_DEVICE_BACKENDS = ("jax", "tensorflow")


def _ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _base_env(backend: str) -> dict[str, str]:
    """This environment without d2lcompat's own variables, for ``backend``, with the
    repository (and its adapters) importable."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("D2LCOMPAT_") and k != "XLA_FLAGS"}
    base.update(_ENV, D2LCOMPAT_BACKEND=backend)
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "backends"), base.get("PYTHONPATH", "")])
    return base


#: One thread per worker and core, as torchrun sets: 2 workers on 2 cores.
_THREADS = str(max(1, (os.cpu_count() or 2) // 2))


def run(python: str, backend: str, impl: str, mode: str, steps: int, timeout: float) -> dict[str, Any]:
    """Start the workers of one configuration; worker 0's result."""
    base = _base_env(backend)
    envs = [dict(base)]
    if mode.startswith("processes"):
        addrs = ",".join(f"127.0.0.1:{p}" for p in _ports(2))
        envs = [dict(base, D2LCOMPAT_RANK=str(r), D2LCOMPAT_WORLD_SIZE="2", D2LCOMPAT_ADDRESSES=addrs,
                     OMP_NUM_THREADS=_THREADS) for r in range(2)]
    elif mode == "devices" and impl == "ours":
        envs[0]["D2LCOMPAT_CPU_DEVICES"] = "2"
    cmd = [python, "-m", "benchmarks._dp_worker", impl, mode, str(steps)]
    procs = [subprocess.Popen(cmd, env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True) for e in envs]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for out in outs:
        for line in out.splitlines():
            if line.startswith("RESULT "):
                return dict(json.loads(line[7:]))
    raise RuntimeError(f"{backend} {impl} {mode}: no result (exit {[p.returncode for p in procs]})")


#: The A/B script of each backend that runs d2lcompat's step and the native loop in the
#: same two processes (one process of two devices for "devices"), alternating step by
#: step, and its mode for each row ("processes": eager, "processes hybridized";
#: "eager vs native eager": the eager step against the native loop of a model that runs
#: eagerly, where that is not the native loop above).
_PAIRED = {
    "torch": ("_dp_paired_torch.py", {"processes": "eager", "processes hybridized": "hybridized"}),
    "paddle": ("_dp_paired_paddle.py", {"processes": "eager", "processes hybridized": "hybridized"}),
    "tensorflow": ("_dp_paired_tf.py", {"processes": "eager", "processes hybridized": "processes",
                                        "eager vs native eager": "eager-native-eager",
                                        "devices": "devices"}),
    "jax": ("_dp_paired_jax.py", {"processes": "eager", "processes hybridized": "processes",
                                  "eager vs native eager": "eager-native-eager",
                                  "devices": "devices"}),
}
_AB = re.compile(r"AB ours ([0-9.]+) ms native ([0-9.]+) ms ratio ([0-9.]+)")


def paired(python: str, backend: str, mode: str, steps: int, timeout: float) -> dict[str, float]:
    """One launch of the backend's A/B script (`_PAIRED`) under ``d2lcompat launch
    --nproc 2 --processes`` (mode "devices": one process with two CPU devices): worker
    0's median step of each side and their ratio."""
    script, _ = _PAIRED[backend]
    env = dict(_base_env(backend), OMP_NUM_THREADS=_THREADS)
    if mode == "devices":
        env["D2LCOMPAT_CPU_DEVICES"] = "2"
        cmd = [python, "-m", f"benchmarks.{script[:-3]}", mode, str(steps)]
    else:
        cmd = [python, "-m", "d2lcompat_cli", "launch", "--nproc", "2", "--processes",
               str(ROOT / "benchmarks" / script), mode, str(steps)]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    found = _AB.search(out.stdout + out.stderr)
    if found is None:
        tail = (out.stdout + out.stderr)[-2000:]
        raise RuntimeError(f"{backend} paired {mode}: no result (exit {out.returncode}):\n{tail}")
    return {"ours_s": float(found[1]) / 1e3, "native_s": float(found[2]) / 1e3, "ratio": float(found[3])}


#: (row name, impl, worker mode); the rows of a backend, in the order each round runs them.
_CONFIGS = (("single", "ours", "single"), ("processes", "ours", "processes"),
            ("processes hybridized", "ours", "processes-hybridized"),
            ("native processes", "native", "processes"))
_DEVICE_CONFIGS = (("single hybridized", "ours", "single-hybridized"), ("devices", "ours", "devices"),
                   ("native devices", "native", "devices"))
#: d2lcompat's row -> the native row it is compared with (one ratio per round).
_PAIRS = {"processes": "native processes", "processes hybridized": "native processes",
          "devices": "native devices"}


def bench(python: str, backend: str, steps: int, timeout: float, rounds: int = 1) -> dict[str, Any]:
    """Every configuration of one backend, ``rounds`` times, interleaved (the order reversed
    every other round), so that a slow minute of the machine falls on both sides of a
    ratio. Each row keeps the median of its rounds; each ratio is the median of the
    rounds' ratios (d2lcompat and native of the same round), with every round's listed."""
    configs = _CONFIGS + (_DEVICE_CONFIGS if backend in _DEVICE_BACKENDS else ())
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in configs}
    for r in range(rounds):
        for name, impl, mode in configs if r % 2 == 0 else configs[::-1]:
            runs[name].append(run(python, backend, impl, mode, steps, timeout))
    res: dict[str, Any] = {"backend": backend, "rounds": rounds}
    for name, recs in runs.items():
        row = {k: statistics.median(rec[k] for rec in recs) for k in recs[0] if k.endswith("_s")}
        row["step_s_rounds"] = [rec["step_s"] for rec in recs]
        res[name] = row
    res["ratios"] = {
        ours: [a["step_s"] / b["step_s"] for a, b in zip(runs[ours], runs[native])]
        for ours, native in _PAIRS.items() if ours in runs
    }
    # The rows across processes again, both loops in the same two processes, alternating
    # step by step (3 × --steps steps a launch, ``rounds`` launches): separately launched
    # processes differ by more than the two loops do (TensorFlow's native step measured
    # 1.8-3.1 ms from one launch to the next, docs/distributed.md).
    if backend in _PAIRED:
        pairs: dict[str, list[dict[str, float]]] = {row: [] for row in _PAIRED[backend][1]}
        modes = list(_PAIRED[backend][1].items())
        for r in range(rounds):
            for row, mode in modes if r % 2 == 0 else modes[::-1]:
                pairs[row].append(paired(python, backend, mode, 3 * steps, timeout))
        res["paired"] = {
            row: {"ours_s": statistics.median(x["ours_s"] for x in recs),
                  "native_s": statistics.median(x["native_s"] for x in recs),
                  "ratios": [x["ratio"] for x in recs]}
            for row, recs in pairs.items()
        }
    return res


def _ratio(r: dict[str, Any], row: str, mark: bool = True) -> str:
    """The median of the rounds' ratios, its mark, and each round's ratio."""
    each = r.get("ratios", {}).get(row) or [r[row]["step_s"] / r[_PAIRS[row]]["step_s"]]
    mid = statistics.median(each)
    rounds = f" (rounds: {', '.join(f'{x:.2f}' for x in each)})" if len(each) > 1 else ""
    return f"{mid:.2f}{(' ✓' if mid <= TARGET else ' ✗') if mark else ''}{rounds}"


def _paired(r: dict[str, Any], row: str) -> str:
    """The same-processes A/B of a row: the medians, the median ratio and its mark —
    none for the eager row where it is judged against the native eager loop (its own
    row), not against the native compiled step."""
    p = r.get("paired", {}).get(row)
    if p is None:
        return "—"
    mid = statistics.median(p["ratios"])
    each = ", ".join(f"{x:.2f}" for x in p["ratios"])
    if row == "processes" and "eager vs native eager" in r["paired"]:
        mark = "(against the compiled loop: see the eager-model row)"
    else:
        mark = "✓" if mid <= TARGET else "✗"
    return f"{_ms(p['ours_s'])} / {_ms(p['native_s'])}: {mid:.2f} {mark} (launches: {each})"


def _ms(s: float) -> str:
    return f"{s * 1e3:.2f} ms"


def markdown(results: list[dict[str, Any]]) -> str:
    rows = [
        "| backend | way (engine) | 1 worker, batch 256 | 2 workers, 128 each | scaling (1 / 2) "
        "| all-reduce / step | native 2-worker step | ratio, separate launches (median of rounds) "
        "| same processes, alternating: ours / native, ratio (target ≤ 1.10) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        b = r["backend"]
        one, two, nat = r["single"]["step_s"], r["processes"]["step_s"], r["native processes"]["step_s"]
        rows.append(
            f"| {b} | processes, eager | {_ms(one)} | {_ms(two)} | {one / two:.2f}× "
            f"| {_ms(r['processes'].get('allreduce_s', float('nan')))} | {_ms(nat)} "
            f"| {_ratio(r, 'processes', 'paired' not in r)} | {_paired(r, 'processes')} |"
        )
        hyb = r["processes hybridized"]["step_s"]
        rows.append(
            f"| {b} | processes, hybridized | — | {_ms(hyb)} | {one / hyb:.2f}× "
            f"| {_ms(r['processes hybridized'].get('allreduce_s', float('nan')))} | {_ms(nat)} "
            f"| {_ratio(r, 'processes hybridized', 'paired' not in r)} "
            f"| {_paired(r, 'processes hybridized')} |"
        )
        if "eager vs native eager" in r.get("paired", {}):
            rows.append(
                f"| {b} | processes, eager, against the native loop of an eager model | — | — | — | — "
                f"| — | — | {_paired(r, 'eager vs native eager')} |"
            )
        if "devices" in r:
            one, two, nat = r["single hybridized"]["step_s"], r["devices"]["step_s"], r["native devices"]["step_s"]
            judged = "devices" not in r.get("paired", {})
            rows.append(
                f"| {b} | 2 devices, 1 process, compiled | {_ms(one)} | {_ms(two)} | {one / two:.2f}× "
                f"| (in the compiled step) | {_ms(nat)} | {_ratio(r, 'devices', judged)} "
                f"| {_paired(r, 'devices')} |"
            )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dp", description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--python", action="append", default=[], help="BACKEND=/path/to/python")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved runs of every configuration (medians; default 3)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    pythons = dict(p.split("=", 1) for p in args.python)
    results = []
    for b in args.backends.split(","):
        results.append(bench(pythons.get(b, sys.executable), b, args.steps, args.timeout, args.rounds))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
