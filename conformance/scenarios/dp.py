"""DP — data parallel (API §17), on each framework's own engine.

Written without backend names: what a backend offers is read from
`d2lcompat.parallel.engines()`; a way it lacks is skipped, and a backend with neither
is `Unsupported`. Workers are subprocesses of this one (``_dp_train``), on
loopback only, with ports the OS chose free and a bounded time: a hung collective
fails the scenario, it never hangs the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import d2lcompat
from d2lcompat import nn, ops, parallel
from d2lcompat._cluster import Cluster, free_ports

from .. import _dp_train as T
from .._registry import Context, Unsupported, scenario

#: Seconds a whole multi-worker run may take (TensorFlow's workers start slowest),
#: and the collectives' own timeout inside it.
RUN_TIMEOUT, COLLECTIVE_TIMEOUT = 240.0, 120.0

_RUNS: dict[str, dict[str, object]] = {}  # mode -> {"params": [per rank], "ckpt": bytes}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("D2LCOMPAT_") or k in (
        "D2LCOMPAT_BACKEND",
    )}
    env["D2LCOMPAT_BACKEND"] = d2lcompat.backend()
    env.pop("XLA_FLAGS", None)  # the core derives it from D2LCOMPAT_CPU_DEVICES
    env.update(extra)
    return env


def _spawn(mode: str, workers: int, tmp: Path) -> dict[str, object]:
    """Run ``_dp_train`` in ``workers`` processes (mode ``processes``) or one process with
    two CPU devices (mode ``devices``); return every rank's parameters and rank 0's file."""
    out = tmp / mode
    out.mkdir(parents=True, exist_ok=True)
    if mode == "processes":
        addrs = tuple(f"127.0.0.1:{p}" for p in free_ports(workers))
        envs = [_env(**Cluster(r, workers, addrs, COLLECTIVE_TIMEOUT).env()) for r in range(workers)]
    else:
        envs = [_env(D2LCOMPAT_CPU_DEVICES="2")]
    cmd = [sys.executable, "-m", "d2lcompat_conformance._dp_train", mode, str(out)]
    logs = [open(out / f"log{r}.txt", "w") for r in range(len(envs))]  # noqa: SIM115
    procs = [subprocess.Popen(cmd, env=e, stdout=lg, stderr=subprocess.STDOUT)
             for e, lg in zip(envs, logs)]
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for lg in logs:
            lg.close()
    failed = [(r, p.returncode) for r, p in enumerate(procs) if p.returncode != 0]
    if failed:
        tails = []
        for r, rc in failed:
            text = (out / f"log{r}.txt").read_text(errors="replace").strip().splitlines()
            why = "timed out" if rc in (-9, 137) else f"exit {rc}"
            tails.append(f"worker {r} ({why}):\n  " + "\n  ".join(text[-12:]))
        raise AssertionError(f"{mode} run failed:\n" + "\n".join(tails))
    params = []
    for r in range(len(envs)):
        with np.load(out / f"rank{r}.npz") as f:
            params.append({k: f[k] for k in f.files})
    return {"params": params, "ckpt": (out / "ckpt.safetensors").read_bytes()}


def _modes() -> list[str]:
    eng = parallel.engines()
    modes = [m for m in ("processes", "devices") if eng[m]]
    if not modes:
        raise Unsupported(f"{d2lcompat.backend()} has no data-parallel engine in d2lcompat")
    return modes


def _run(mode: str) -> dict[str, object]:
    if mode not in _RUNS:
        with tempfile.TemporaryDirectory(prefix=f"d2lc-dp-{mode}-") as tmp:
            _RUNS[mode] = _spawn(mode, 2, Path(tmp))
    return _RUNS[mode]


def _params(net: nn.Block) -> dict[str, np.ndarray]:
    return {n: ops.to_numpy(p.data()) for n, p in net.collect_params().items()}


@scenario("DP01", "split_and_load splits a batch evenly over the devices (uneven documented)")
def dp01(ctx: Context) -> None:
    devs = parallel.local_devices()
    two = (devs * 2)[:2]  # a device may appear twice: the split is what is tested
    x = ops.tensor(np.arange(24, dtype=np.float32).reshape(8, 3))
    parts = parallel.split_and_load(x, two)
    assert [ops.shape(p) for p in parts] == [(4, 3), (4, 3)]
    for p, d in zip(parts, two):
        assert d2lcompat.device_of(p) == d
    np.testing.assert_array_equal(np.concatenate([ops.to_numpy(p) for p in parts]), ops.to_numpy(x))
    # another axis, and NumPy input
    cols = parallel.split_and_load(np.arange(12, dtype=np.float32).reshape(2, 6), two, batch_axis=1)
    assert [ops.shape(p) for p in cols] == [(2, 3), (2, 3)]
    np.testing.assert_array_equal(ops.to_numpy(cols[1]), [[3, 4, 5], [9, 10, 11]])
    # uneven: refused with even_split=True, Gluon's rule otherwise (the last takes the rest)
    three = (devs * 3)[:3]
    y = ops.arange(7, dtype="float32")
    try:
        parallel.split_and_load(y, three)
    except d2lcompat.ShapeError as exc:
        assert "7" in str(exc) and "even_split=False" in str(exc), str(exc)
    else:
        raise AssertionError("an uneven split with even_split=True must raise ShapeError")
    uneven = parallel.split_and_load(y, three, even_split=False)
    assert [ops.shape(p) for p in uneven] == [(2,), (2,), (3,)]
    np.testing.assert_array_equal(np.concatenate([ops.to_numpy(p) for p in uneven]), np.arange(7))
    # one device: the whole batch, moved there
    (whole,) = parallel.split_and_load(y, devs[-1])
    assert ops.shape(whole) == (7,) and d2lcompat.device_of(whole) == devs[-1]
    try:
        parallel.split_and_load(ops.arange(1, dtype="float32"), two)
    except d2lcompat.ShapeError:
        pass
    else:
        raise AssertionError("one sample over two devices must raise ShapeError")


@scenario("DP02", "2 workers x 5 SGD steps equal 1 worker with the whole batch, own engine")
def dp02(ctx: Context) -> None:
    reference = _params(T.train("single"))
    start = _params(T.make_net())
    moved = max(float(np.abs(reference[k] - start[k]).max()) for k in start)
    assert moved > 1e-3, f"the reference run barely trained ({moved}); the check would be empty"
    for mode in _modes():
        got = _run(mode)["params"]
        for r, params in enumerate(got):  # type: ignore[arg-type]
            assert set(params) == set(reference), (mode, sorted(params))
            for name, want in reference.items():
                np.testing.assert_allclose(
                    params[name], want, rtol=0, atol=1e-5,
                    err_msg=f"{mode} (engine: {parallel.engines()[mode]}), worker {r}, {name}",
                )


@scenario("DP03", "every worker holds the same parameters; worker 0's checkpoint loads anywhere")
def dp03(ctx: Context) -> None:
    for mode in _modes():
        run = _run(mode)
        ranks: list[dict[str, np.ndarray]] = run["params"]  # type: ignore[assignment]
        for r, params in enumerate(ranks[1:], start=1):
            for name, value in ranks[0].items():
                np.testing.assert_array_equal(
                    params[name], value, err_msg=f"{mode}: worker {r} differs from 0 on {name}"
                )
        path = ctx.tmp / f"{mode}.safetensors"
        path.write_bytes(run["ckpt"])  # type: ignore[arg-type]
        # Loads here (one process, no process group) on every device, into a fresh net.
        for d in parallel.local_devices()[:2]:
            net = T.make_net()
            net.load_parameters(path, device=d)
            for name, p in net.collect_params().items():
                assert p.list_devices() == [d]
                np.testing.assert_array_equal(ops.to_numpy(p.data(d)), ranks[-1][name])
        # the portable format: plain tensors by structural name, readable by d2lcompat.load
        flat = d2lcompat.load(path)
        assert set(flat) == set(ranks[0]), sorted(flat)
