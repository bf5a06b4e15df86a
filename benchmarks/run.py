"""d2lcompat against the native framework: same process, same run, same weights.

``python -m benchmarks.run`` is the driver: it never imports a framework; it starts
one worker process per installed backend (``D2LCOMPAT_BACKEND`` set), times imports
in fresh processes, optionally times a full ``d2lcompat conformance`` run, and
prints a Markdown table of ratios (d2lcompat / native; lower is better) plus JSON.

Each timed case runs d2lcompat and the native equivalent in interleaved rounds (the
order alternates every round) and reports the median of the per-round ratios, so
drift of the machine (frequency, other processes) hits both sides alike.

Examples
--------
Every installed backend, the table into docs/performance.md::

    python -m benchmarks.run --update-docs docs/performance.md --json benchmarks/results.json

One backend, quick (no 400 MB checkpoints, no conformance run)::

    python -m benchmarks.run --backends torch --no-io --no-conformance

Backends installed in other virtual environments::

    python -m benchmarks.run --python torch=/tmp/venvs/torch/bin/python \\
        --python jax=/tmp/venvs/jax/bin/python
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BACKENDS = ("torch", "tensorflow", "paddle", "jax")
_MODULES = {"torch": "torch", "tensorflow": "tensorflow", "paddle": "paddle", "jax": "jax"}
ROOT = Path(__file__).resolve().parent.parent

#: Targets: the ratio d2lcompat / native must be at most this (import: seconds added).
TARGETS = {"eager": 1.10, "hybridized": 1.05, "save": 1.10, "load": 1.0, "import": 0.1,
           "train eager": 1.10, "train compiled": 1.05, "train vs keras": 1.0, "attention": 1.10,
           "train compiled, stop_on_nan": 1.05}

# Quiet framework start-up logs in every process we start.
_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2", "PYTHONHASHSEED": "0"}


# ====================================================================== timing
def _per_call(fn: Callable[[], Any], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def calibrate(fn: Callable[[], Any], budget_s: float = 0.1) -> int:
    """How many calls of ``fn`` fill about ``budget_s`` (at least 1)."""
    fn()
    one = _per_call(fn, 3)
    return max(1, int(budget_s / max(one, 1e-7)))


#: The fewest calls of each side a round of `compare` times.
MIN_CALLS = 3


def compare(
    ours: Callable[[], Any], native: Callable[[], Any], rounds: int, budget_s: float = 0.1
) -> dict[str, float]:
    """Median per-call times and the median of per-round ratios, interleaved rounds.

    Every round times at least ``MIN_CALLS`` calls of each side: with a single call of a
    50 ms step per round (what the 0.1 s budget gave the LeNet rows) a round's ratio
    was one sample of each side, each taken right after the other side's call, and the
    same code read 0.90-0.99 with three calls per round and 1.14-1.24 with one (JAX's eager
    LeNet step, docs/performance.md, "Sixth round")."""
    number = max(MIN_CALLS, min(calibrate(ours, budget_s), calibrate(native, budget_s)))
    t_ours: list[float] = []
    t_native: list[float] = []
    ratios: list[float] = []
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            if r % 2 == 0:
                a = _per_call(ours, number)
                b = _per_call(native, number)
            else:
                b = _per_call(native, number)
                a = _per_call(ours, number)
            t_ours.append(a)
            t_native.append(b)
            ratios.append(a / b)
    finally:
        if enabled:
            gc.enable()
    return {
        "ours_s": statistics.median(t_ours),
        "native_s": statistics.median(t_native),
        "ratio": statistics.median(ratios),
        "calls_per_round": number,
    }


# ====================================================================== worker
def _mlp_cases() -> list[tuple[str, int, list[int], int]]:
    """(name, in features, widths, batch)."""
    return [
        ("MLP 20-256-10, batch 2", 20, [256, 10], 2),
        ("MLP 20-256-10, batch 256", 20, [256, 10], 256),
        ("deep MLP 8x1024, batch 64", 1024, [1024] * 8, 64),
    ]


def _build(in_units: int, widths: list[int], batch: int) -> tuple[Any, list[Any], Any]:
    import d2lcompat
    from d2lcompat import nn, ops

    d2lcompat.seed(0)
    last = len(widths) - 1
    net = nn.Sequential(
        *[nn.Dense(u, activation=None if i == last else "relu") for i, u in enumerate(widths)]
    )
    net.initialize(d2lcompat.init.Xavier())
    x = ops.random.uniform((batch, in_units))
    net(x)  # finishes deferred initialization
    layers = [
        (ops.to_numpy(d.weight.data()), ops.to_numpy(d.bias.data()), i != last)
        for i, d in enumerate(net)
    ]
    return net, layers, x


def _max_diff(a: Any, b: Any) -> float:
    import numpy as np

    from d2lcompat import ops

    def host(t: Any) -> Any:
        return np.asarray(t.numpy() if hasattr(t, "numpy") and not isinstance(t, np.ndarray) else t)

    try:
        return float(np.max(np.abs(ops.to_numpy(a) - host(b))))
    except Exception:  # noqa: BLE001 - a diagnostic only
        return float(np.max(np.abs(ops.to_numpy(a) - ops.to_numpy(b))))


def worker(
    backend: str, rounds: int, io: bool, io_params: int, train: bool = True, mlp: bool = True,
    io_only: bool = False,
) -> dict[str, Any]:
    """Run every case on ``backend`` (this process's backend); the results as a dict."""
    import d2lcompat

    from ._native import NATIVE

    assert d2lcompat.backend() == backend, (d2lcompat.backend(), backend)
    native = NATIVE[backend]()
    sync = native.sync
    cases: list[dict[str, Any]] = []
    version = next(b.version for b in d2lcompat.backends() if b.name == backend)

    def record(kind: str, name: str, result: dict[str, Any], **extra: Any) -> None:
        row = {"kind": kind, "case": name, **result, **extra}
        cases.append(row)
        print(f"  [{backend}] {kind:10s} {name:28s} ratio {row['ratio']:.3f}", file=sys.stderr)

    for name, n_in, widths, batch in _mlp_cases() if mlp and not io_only else []:
        net, layers, x = _build(n_in, widths, batch)
        ref = native.mlp(layers)
        diff = _max_diff(net(x), ref(x))
        record(
            "eager", name,
            compare(lambda: sync(net(x)), lambda: sync(ref(x)), rounds),  # noqa: B023
            max_abs_diff=diff,
        )

        comp = native.compiled_mlp(layers)
        net.hybridize()
        start = time.perf_counter()
        sync(net(x))  # eager: finishes the block
        sync(net(x))  # traces and compiles
        ours_compile = time.perf_counter() - start
        start = time.perf_counter()
        sync(comp(x))
        native_compile = time.perf_counter() - start
        diff = _max_diff(net(x), comp(x))
        record(
            "hybridized", name,
            compare(lambda: sync(net(x)), lambda: sync(comp(x)), rounds),  # noqa: B023
            max_abs_diff=diff, ours_compile_s=ours_compile, native_compile_s=native_compile,
        )

    if not io_only:
        _lenet_cases(backend, native, rounds, record, train)
    if train and mlp and not io_only:
        from ._train import train_cases

        train_cases(backend, rounds, compare, record)
        from ._attention import attention_cases  # MHA forward + backward (issue 21)

        attention_cases(backend, rounds, compare, record)

    if io:
        cases.extend(_io_cases(backend, native, max(3, rounds // 3), io_params))
    return {"backend": backend, "version": version, "cases": cases}


def _lenet() -> Any:
    """§7.6's LeNet in d2lcompat (the benchmarks' conv net)."""
    from d2lcompat import nn

    return nn.Sequential(
        nn.Conv2D(6, kernel_size=5, padding=2, activation="sigmoid"), nn.AvgPool2D(2, 2),
        nn.Conv2D(16, kernel_size=5, activation="sigmoid"), nn.AvgPool2D(2, 2), nn.Flatten(),
        nn.Dense(120, activation="sigmoid"), nn.Dense(84, activation="sigmoid"), nn.Dense(10),
    )


def _lenet_cases(
    backend: str, native: Any, rounds: int, record: Callable[..., None], train: bool
) -> None:
    """LeNet (§7.6) forward, batch 256 of 28x28: d2lcompat (NCHW) against the framework's
    own conv net with the same weights, fed in the framework's preferred layout (NHWC for
    TensorFlow, so its row includes the adapter's transposes); with ``train``, the
    training step too (`benchmarks._train_cnn`). Rows go through ``record``."""
    import numpy as np

    import d2lcompat
    from d2lcompat import init, ops

    d2lcompat.seed(0)
    net = _lenet()
    net.initialize(init.Xavier())
    host = np.random.default_rng(0).uniform(size=(256, 1, 28, 28)).astype(np.float32)
    x = ops.tensor(host)
    net(x)
    weights = [(ops.to_numpy(m.weight.data()), ops.to_numpy(m.bias.data()))
               for m in net if hasattr(m, "weight")]
    xn = native.lenet_input(host)
    sync = native.sync
    name = "LeNet forward, batch 256"
    ref = native.lenet(weights)
    record("eager", name, compare(lambda: sync(net(x)), lambda: sync(ref(xn)), rounds),
           max_abs_diff=_max_diff(net(x), ref(xn)))
    comp = native.compiled_lenet(weights)
    net.hybridize()
    start = time.perf_counter()
    sync(net(x))
    sync(net(x))
    ours_compile = time.perf_counter() - start
    start = time.perf_counter()
    sync(comp(xn))
    native_compile = time.perf_counter() - start
    record("hybridized", name, compare(lambda: sync(net(x)), lambda: sync(comp(xn)), rounds),
           max_abs_diff=_max_diff(net(x), comp(xn)), ours_compile_s=ours_compile,
           native_compile_s=native_compile)
    if train:
        from ._train_cnn import lenet_train_cases

        lenet_train_cases(backend, _lenet, rounds, compare, record, sync)


def _io_cases(backend: str, native: Any, rounds: int, n_params: int) -> list[dict[str, Any]]:
    """save_parameters / load_parameters of ``n_params`` float32 values against, in the
    same interleaved rounds: the native save + fsync / native load + assignment, and
    safetensors' own framework API (``save_file`` + fsync / ``load_file`` + assignment)."""
    import d2lcompat
    from d2lcompat import nn

    width = int((n_params / 10) ** 0.5)
    d2lcompat.seed(0)
    net = nn.Sequential(*[nn.Dense(width, in_units=width) for _ in range(10)])
    net.initialize()
    total = sum(int(p.shape[0]) * (int(p.shape[1]) if len(p.shape) > 1 else 1)
                for p in net.collect_params().values())
    variables = {k: p.native() for k, p in net.collect_params().items()}
    params = list(net.collect_params().values())
    out = []
    with tempfile.TemporaryDirectory(prefix="d2lc-bench-", dir=os.environ.get("D2LC_BENCH_DIR")) as tmp:
        paths = {k: os.path.join(tmp, f"net.{k}") for k in ("o", "n", "s")}
        def load_o() -> None:
            net.load_parameters(paths["o"])
            # Ready arrays, as the native sides wait for them (JAX's device_put is
            # asynchronous; `sync` is a no-op for the other frameworks).
            native.sync([p.native() for p in params])

        saves: dict[str, Callable[[], Any]] = {
            "save_o": lambda: net.save_parameters(paths["o"]),
            "save_n": lambda: native.save_fsync(variables, paths["n"]),
            "save_s": lambda: native.st_save(variables, paths["s"]),
        }
        loads: dict[str, Callable[[], Any]] = {
            "load_o": load_o,
            "load_n": lambda: native.load(variables, paths["n"]),
            "load_s": lambda: native.st_load(variables, paths["s"]),
        }
        times: dict[str, list[float]] = {k: [] for k in (*saves, *loads)}
        for r in range(rounds):
            for group in (saves, loads):
                keys = list(group)
                keys = keys[r % 3:] + keys[: r % 3]  # rotate the order every round
                for key in keys:
                    gc.collect()
                    start = time.perf_counter()
                    group[key]()
                    times[key].append(time.perf_counter() - start)
        name = f"{total / 1e6:.0f} M float32 params"
        for kind, other, label in (
            ("save", "n", "vs native save + fsync"),
            ("save", "s", "vs safetensors save_file + fsync"),
            ("load", "n", "vs native load + assign"),
            ("load", "s", "vs safetensors load_file + assign"),
        ):
            o, n = times[f"{kind}_o"], times[f"{kind}_{other}"]
            ratio = statistics.median(a / b for a, b in zip(o, n))
            out.append({"kind": kind, "case": f"{name}, {label}", "ours_s": statistics.median(o),
                        "native_s": statistics.median(n), "ratio": ratio, "calls_per_round": 1})
            print(f"  [{backend}] {kind:10s} {label:34s} ratio {ratio:.3f}", file=sys.stderr)
    return out


# ====================================================================== driver
def _python_for(backend: str, overrides: dict[str, str]) -> str | None:
    if backend in overrides:
        return overrides[backend]
    if importlib.util.find_spec(_MODULES[backend]) is not None:
        return sys.executable
    return None


def _env(backend: str) -> dict[str, str]:
    env = dict(os.environ, **_ENV, D2LCOMPAT_BACKEND=backend)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def time_imports(python: str, backend: str, runs: int) -> dict[str, Any]:
    """``import d2lcompat`` against ``import <framework>``, each in fresh processes.

    The overhead is measured inside each process (``import <framework>``, then the
    clock around ``import d2lcompat``): the difference of two separate process start-ups
    would drown it in the machine's noise. The totals are the wall times of whole
    processes, interleaved.
    """
    env = _env(backend)
    # A pip-installed package is imported from the bytecode written at install time.
    # With PYTHONDONTWRITEBYTECODE set (some shells and CI images set it) an editable
    # checkout would be compiled from source on every import and the row would time
    # the compiler: the warm-up below writes the bytecode once, as an install does.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    fw_name = _MODULES[backend]
    inner = (f"import time, {fw_name}; t = time.perf_counter(); import d2lcompat; "
             "print(time.perf_counter() - t)")

    def once(stmt: str) -> tuple[float, str]:
        start = time.perf_counter()
        proc = subprocess.run([python, "-c", stmt], env=env, check=True, capture_output=True,
                              text=True)
        return time.perf_counter() - start, proc.stdout

    ours: list[float] = []
    fw: list[float] = []
    extra: list[float] = []
    once("import d2lcompat")  # warm the OS file cache and the bytecode caches
    for r in range(runs):
        pair = [("d", "import d2lcompat"), ("f", f"import {fw_name}")]
        for key, stmt in pair if r % 2 == 0 else pair[::-1]:
            (ours if key == "d" else fw).append(once(stmt)[0])
        extra.append(float(once(inner)[1].strip().splitlines()[-1]))
    return {"kind": "import", "case": "import d2lcompat", "ours_s": statistics.median(ours),
            "native_s": statistics.median(fw), "ratio": statistics.median(ours) / statistics.median(fw),
            "overhead_s": statistics.median(extra)}


def time_conformance(python: str, backends: Sequence[str]) -> dict[str, Any]:
    """Wall time of one full ``d2lcompat conformance`` run over ``backends``."""
    with tempfile.TemporaryDirectory(prefix="d2lc-conf-") as tmp:
        report = os.path.join(tmp, "conformance.json")
        cmd = [python, "-m", "d2lcompat._cli", "conformance", "--backends", ",".join(backends),
               "--report", report]
        env = dict(os.environ, **_ENV)
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        took = time.perf_counter() - start
        summary = ""
        try:
            data = json.loads(Path(report).read_text())
            results = data.get("results", data) if isinstance(data, dict) else data
            counts: dict[str, int] = {}
            for r in results if isinstance(results, list) else []:
                counts[r.get("status", "?")] = counts.get(r.get("status", "?"), 0) + 1
            summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        except (OSError, ValueError):
            summary = (proc.stderr or proc.stdout)[-300:]
    return {"seconds": took, "returncode": proc.returncode, "backends": list(backends),
            "summary": summary}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, CPU only, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def _fmt_s(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def markdown(results: dict[str, Any]) -> str:
    """The results as a Markdown table: one row per case, one column per backend."""
    backends = [r["backend"] for r in results["backends"]]
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in results["backends"]:
        for c in r["cases"]:
            rows.setdefault((c["kind"], c["case"]), {})[r["backend"]] = c
    head = "| measurement | target | " + " | ".join(
        f"{b} {next(r['version'] for r in results['backends'] if r['backend'] == b)}"
        for b in backends) + " |"
    lines = [head, "|---|---|" + "---|" * len(backends)]
    for (kind, case), per in rows.items():
        target = TARGETS[kind]
        cells = []
        for b in backends:
            c = per.get(b)
            if c is None:
                cells.append("–")
                continue
            if kind == "import":
                ok = c["overhead_s"] <= target
                cells.append(f"{'✅' if ok else '❌'} +{c['overhead_s']:.3f} s "
                             f"({_fmt_s(c['ours_s'])} vs {_fmt_s(c['native_s'])})")
                continue
            ok = c["ratio"] <= target
            cell = f"{'✅' if ok else '❌'} **{c['ratio']:.2f}** ({_fmt_s(c['ours_s'])} / {_fmt_s(c['native_s'])})"
            if "ours_compile_s" in c:
                cell += f"<br>compile {c['ours_compile_s']:.1f} s / {c['native_compile_s']:.1f} s"
            cells.append(cell)
        label = f"{kind}: {case}"
        tgt = f"≤ +{target} s" if kind == "import" else f"≤ {target:.2f}"
        lines.append(f"| {label} | {tgt} | " + " | ".join(cells) + " |")
    conf = results.get("conformance")
    text = "\n".join(lines) + "\n"
    if conf:
        text += (f"\nFull `d2lcompat conformance --backends {','.join(conf['backends'])}`: "
                 f"**{conf['seconds']:.0f} s** wall time (exit code {conf['returncode']}"
                 f"{'; ' + conf['summary'] if conf['summary'] else ''}).\n")
    text += f"\nMachine: {results['machine']}. Generated by `{results['command']}`.\n"
    return text


def _update_docs(path: Path, table: str) -> None:
    start, end = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else f"{start}\n{end}\n"
    if start not in text or end not in text:
        text += f"\n{start}\n{end}\n"
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    path.write_text(f"{before}{start}\n{table}{end}{after}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--backends", default=None, help="comma-separated (default: every installed one)")
    p.add_argument("--python", action="append", default=[], metavar="BACKEND=PATH",
                   help="the interpreter that has BACKEND installed (repeatable)")
    p.add_argument("--rounds", type=int, default=11, help="interleaved rounds per case")
    p.add_argument("--import-runs", type=int, default=7)
    p.add_argument("--io-params", type=int, default=100_000_000,
                   help="float32 parameters in the save/load case")
    p.add_argument("--no-io", action="store_true", help="skip save/load (400 MB files)")
    p.add_argument("--io-only", action="store_true",
                   help="only the save/load cases (no forward passes, no import timing)")
    p.add_argument("--no-conformance", action="store_true", help="skip the full conformance run")
    p.add_argument("--no-train", action="store_true", help="skip the training-step rows")
    p.add_argument("--no-mlp", action="store_true",
                   help="skip the MLP rows, forward and training (LeNet rows only)")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--markdown", default=None, help="write the table here")
    p.add_argument("--update-docs", default=None, metavar="MD",
                   help="replace the table between the benchmarks markers of this file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:  # one backend, in this process
        res = worker(args.worker, args.rounds, not args.no_io, args.io_params, not args.no_train,
                     not args.no_mlp, args.io_only)
        Path(args.out).write_text(json.dumps(res), encoding="utf-8")
        return 0

    overrides = dict(item.split("=", 1) for item in args.python)
    wanted = args.backends.split(",") if args.backends else list(BACKENDS)
    results: dict[str, Any] = {"machine": machine(), "backends": [],
                               "command": "python -m benchmarks.run " + " ".join(argv or sys.argv[1:])}
    status = 0
    for backend in wanted:
        python = _python_for(backend, overrides)
        if python is None:
            print(f"{backend}: not installed for {sys.executable}; skipped "
                  f"(pass --python {backend}=PATH)", file=sys.stderr)
            continue
        print(f"{backend}: running with {python}", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="d2lc-bench-") as tmp:
            out = os.path.join(tmp, "out.json")
            cmd = [python, "-m", "benchmarks.run", "--worker", backend, "--out", out,
                   "--rounds", str(args.rounds), "--io-params", str(args.io_params)]
            if args.no_io:
                cmd.append("--no-io")
            if args.no_train:
                cmd.append("--no-train")
            if args.io_only:
                cmd.append("--io-only")
            if args.no_mlp:
                cmd.append("--no-mlp")
            proc = subprocess.run(cmd, env=_env(backend), cwd=ROOT)
            if proc.returncode != 0:
                print(f"{backend}: worker failed with exit code {proc.returncode}", file=sys.stderr)
                status = 1
                continue
            res = json.loads(Path(out).read_text(encoding="utf-8"))
        if not args.io_only:
            res["cases"].append(time_imports(python, backend, args.import_runs))
        results["backends"].append(res)
    if not args.no_conformance:
        same = [r["backend"] for r in results["backends"]
                if _python_for(r["backend"], overrides) == sys.executable]
        if same:
            print(f"conformance: {','.join(same)}", file=sys.stderr)
            results["conformance"] = time_conformance(sys.executable, same)
    table = markdown(results)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    if args.markdown:
        Path(args.markdown).write_text(table, encoding="utf-8")
    if args.update_docs:
        _update_docs(Path(args.update_docs), table)
    return status


if __name__ == "__main__":
    sys.exit(main())
