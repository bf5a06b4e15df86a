"""IO — reading and writing files (§5.5; API.md §7)."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

import d2lcompat
from d2lcompat import CheckpointError, nn, ops

from .._registry import Context, Unsupported, scenario
from ..models import MLP, FixedHiddenMLP, to_np


def _snapshot(net: nn.Block) -> dict[str, np.ndarray | None]:
    return {
        k: (to_np(p.data()).copy() if p.is_initialized else None)
        for k, p in net.collect_params().items()
    }


def _assert_unchanged(net: nn.Block, before: dict[str, np.ndarray | None]) -> None:
    after = _snapshot(net)
    assert list(after) == list(before)
    for k, v in before.items():
        if v is None:
            assert after[k] is None, f"{k} was created by a failed load"
        else:
            np.testing.assert_array_equal(after[k], v, err_msg=f"{k} changed by a failed load")


@scenario("IO01", "save/load one tensor: values and dtype equal")
def io01(ctx: Context) -> None:
    path = ctx.tmp / "x.safetensors"
    x = ops.arange(4)
    d2lcompat.save(path, x)
    x2 = d2lcompat.load(path)
    assert ops.dtype(x2) == ops.dtype(x)
    np.testing.assert_array_equal(to_np(x2), np.arange(4))
    # dtypes are kept exactly, half precision included
    h = ops.cast(ops.arange(0, 3, 0.5, dtype="float32"), "float16")
    d2lcompat.save(path, h)  # overwrites atomically
    h2 = d2lcompat.load(path)
    assert ops.dtype(h2) == "float16"
    np.testing.assert_array_equal(to_np(h2), to_np(h))
    s = ops.tensor(3.5)  # a 0-d tensor keeps its shape
    d2lcompat.save(path, s)
    assert ops.shape(d2lcompat.load(path)) == () and ops.item(d2lcompat.load(path)) == 3.5


@scenario("IO02", "save/load a list [x, y] (and a tuple)")
def io02(ctx: Context) -> None:
    path = ctx.tmp / "xy.safetensors"
    x, y = ops.arange(4), ops.zeros(4)
    d2lcompat.save(path, [x, y])
    got = d2lcompat.load(path)
    assert isinstance(got, list) and len(got) == 2
    np.testing.assert_array_equal(to_np(got[0]), np.arange(4))
    np.testing.assert_array_equal(to_np(got[1]), np.zeros(4, np.float32))
    assert ops.dtype(got[1]) == "float32"
    d2lcompat.save(path, (y, x, x))
    got = d2lcompat.load(path)
    assert isinstance(got, tuple) and len(got) == 3
    np.testing.assert_array_equal(to_np(got[2]), np.arange(4))


@scenario("IO03", "save/load a dict {'x': x, 'y': y}, key order kept")
def io03(ctx: Context) -> None:
    path = ctx.tmp / "mydict.safetensors"
    x, y = ops.arange(4), ops.zeros(4)
    d2lcompat.save(path, {"y": y, "x": x, "mask": ops.greater(x, ops.full((4,), 1, dtype="int64"))})
    got = d2lcompat.load(path)
    assert isinstance(got, dict) and list(got) == ["y", "x", "mask"]
    np.testing.assert_array_equal(to_np(got["x"]), np.arange(4))
    np.testing.assert_array_equal(to_np(got["y"]), np.zeros(4, np.float32))
    np.testing.assert_array_equal(to_np(got["mask"]), [False, False, True, True])
    assert ops.dtype(got["mask"]) == "bool"


@scenario("IO04", "save_parameters then load_parameters into a fresh MLP: same output exactly")
def io04(ctx: Context) -> None:
    d2lcompat.seed(40)
    net = MLP()
    net.initialize()
    X = ops.random.uniform((2, 20))
    Y = net(X)
    path = ctx.tmp / "mlp.params"
    net.save_parameters(path)
    clone = MLP()
    clone.load_parameters(path)
    np.testing.assert_array_equal(to_np(clone(X)), to_np(Y))
    for (k, p), (k2, q) in zip(net.collect_params().items(), clone.collect_params().items()):
        assert k == k2
        np.testing.assert_array_equal(to_np(p.data()), to_np(q.data()))
    # the file is a plain dict of tensors under the structural names
    stored = d2lcompat.load(path)
    assert list(stored) == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    assert ops.shape(stored["hidden.weight"]) == (256, 20)  # (out, in)
    # loading into an initialized net overwrites it
    other = MLP()
    other.initialize()
    other(X)
    other.load_parameters(path)
    np.testing.assert_array_equal(to_np(other(X)), to_np(Y))


@scenario("IO05", "FixedHiddenMLP: its Constant is saved and restored")
def io05(ctx: Context) -> None:
    d2lcompat.seed(50)
    net = FixedHiddenMLP()
    net.initialize()
    X = ops.random.uniform((2, 20))
    y = net(X)
    path = ctx.tmp / "fixed.params"
    net.save_parameters(path)
    d2lcompat.seed(51)  # a different constant in the clone, until it is loaded
    clone = FixedHiddenMLP()
    assert not np.array_equal(to_np(clone.rand_weight.data()), to_np(net.rand_weight.data()))
    clone.load_parameters(path)
    np.testing.assert_array_equal(to_np(clone.rand_weight.data()), to_np(net.rand_weight.data()))
    assert clone.rand_weight.grad_req == "null"
    np.testing.assert_array_equal(to_np(clone(X)), to_np(y))


@scenario("IO06", "loading into a still-deferred net takes the shapes from the file")
def io06(ctx: Context) -> None:
    d2lcompat.seed(60)
    net = nn.Sequential(nn.Dense(16, activation="relu"), nn.Dense(3))
    net.initialize()
    X = ops.random.uniform((4, 7))
    Y = net(X)
    path = ctx.tmp / "seq.params"
    net.save_parameters(path)
    scheduled = nn.Sequential(nn.Dense(16, activation="relu"), nn.Dense(3))
    scheduled.initialize()  # only scheduled: in_units unknown
    assert scheduled[0].weight.shape == (16, 0)
    scheduled.load_parameters(path)
    assert scheduled[0].weight.shape == (16, 7) and scheduled[1].weight.shape == (3, 16)
    np.testing.assert_array_equal(to_np(scheduled[0].weight.data()), to_np(net[0].weight.data()))
    np.testing.assert_array_equal(to_np(scheduled(X)), to_np(Y))
    never = nn.Sequential(nn.Dense(16, activation="relu"), nn.Dense(3))  # never initialized
    never.load_parameters(path)
    np.testing.assert_array_equal(to_np(never(X)), to_np(Y))


@scenario("IO07", "every mismatch or bad file raises CheckpointError and changes nothing")
def io07(ctx: Context) -> None:
    d2lcompat.seed(70)
    tmp = ctx.tmp

    def fresh() -> nn.Sequential:
        n = nn.Sequential(nn.Dense(4, activation="relu", in_units=3), nn.Dense(2, in_units=4))
        n.initialize()
        return n

    good = fresh()
    good.save_parameters(tmp / "good.params")
    w = {k: p.data() for k, p in good.collect_params().items()}
    f16 = ops.cast(w["1.weight"], "float16")
    files: dict[str, Any] = {
        "missing": {k: v for k, v in w.items() if k != "1.bias"},
        "extra": {**w, "2.weight": ops.ones((1, 2))},
        "shape": {**w, "1.weight": ops.ones((2, 5))},
        "dtype": {**w, "1.weight": f16},
        "many": {"0.weight": ops.ones((4, 9)), "0.bias": w["0.bias"], "junk": ops.ones((1,))},
    }
    for name, content in files.items():
        d2lcompat.save(tmp / f"{name}.params", content)
    data = (tmp / "good.params").read_bytes()
    (tmp / "truncated.params").write_bytes(data[: len(data) // 2])
    (tmp / "header-only.params").write_bytes(data[:8])
    (tmp / "empty.params").write_bytes(b"")
    (tmp / "random.params").write_bytes(np.random.default_rng(7).bytes(4096))
    marker = tmp / "pwned"
    evil = pickle.dumps({"0.weight": _Evil(str(marker))}, protocol=2)
    (tmp / "pickle.params").write_bytes(evil)
    (tmp / "pickle.pdparams").write_bytes(evil)
    (tmp / "pickle.pt").write_bytes(evil)
    expect_in_message = {
        "missing": ["1.bias", "allow_missing"],
        "extra": ["2.weight", "ignore_extra"],
        "shape": ["1.weight", "(2, 4)", "(2, 5)"],
        "dtype": ["1.weight", "float16", "float32"],
        "many": ["0.weight", "(4, 9)", "1.weight", "1.bias", "junk"],  # every problem listed
    }
    for name in [*files, "truncated", "header-only", "empty", "random", "pickle"]:
        for suffix in (".params", ".pdparams", ".pt") if name == "pickle" else (".params",):
            path = tmp / f"{name}{suffix}"
            known = fresh()
            deferred = nn.Sequential(nn.Dense(4, activation="relu"), nn.Dense(2))
            # a deferred net takes any shape from the file: "shape" is not a problem there
            for target in (known,) if name == "shape" else (known, deferred):
                before = _snapshot(target)
                try:
                    target.load_parameters(path)
                except CheckpointError as exc:
                    msg = str(exc)
                    assert path.name in msg, msg
                    for piece in expect_in_message.get(name, []) if target is known else []:
                        assert piece in msg, (name, piece, msg)
                else:
                    raise AssertionError(f"loading {path.name} did not raise CheckpointError")
                _assert_unchanged(target, before)
    for name in ("truncated", "random", "pickle", "empty"):
        try:
            d2lcompat.load(tmp / f"{name}.params")
        except CheckpointError:
            pass
        else:
            raise AssertionError(f"load({name}) did not raise CheckpointError")
    assert not marker.exists(), "a pickle in a checkpoint ran code"
    # the documented ways out work
    lax = fresh()
    lax.load_parameters(tmp / "missing.params", allow_missing=True)
    lax.load_parameters(tmp / "extra.params", ignore_extra=True)
    np.testing.assert_array_equal(to_np(lax[1].weight.data()), to_np(good[1].weight.data()))


class _Evil:
    """A pickle that would create a file if it were ever unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


_WRITER = """
import sys, d2lcompat
from d2lcompat import nn, ops
net = nn.Sequential(nn.Dense({units}, in_units={units}))
net.initialize()
k = 0
print("ready", flush=True)
while True:
    k += 1
    for p in net.collect_params().values():
        p.set_data(ops.full(p.shape, float(k)))
    net.save_parameters(sys.argv[1])
"""


def kill_during_saves(path: Path, kills: int, units: int = 512, seed: int = 0) -> list[float]:
    """Start a writer that saves a ``Dense(units, in_units=units)`` in a loop, interrupt it
    ``kills`` times at random moments, and check that ``path`` always loads, whole: every
    value of the loaded net is the same number (one complete save). Returns the values seen.

    Every interruption but the last freezes the writer with SIGSTOP, checks the file and
    lets it go on (SIGCONT); the last one is a SIGKILL. A frozen writer leaves the disk in
    the state a killed one would, and one writer process (one framework import, seconds
    on a small machine) serves every check. Without SIGSTOP (Windows) each check kills a
    fresh writer.
    """
    rng = random.Random(seed)
    net = nn.Sequential(nn.Dense(units, in_units=units))
    net.initialize(d2lcompat.init.Zero())
    net.save_parameters(path)
    env = {**os.environ, "D2LCOMPAT_BACKEND": d2lcompat.backend()}
    seen: list[float] = []
    can_freeze = hasattr(signal, "SIGSTOP")
    proc: subprocess.Popen[bytes] | None = None
    try:
        for i in range(kills):
            if proc is None:
                proc = subprocess.Popen(
                    [sys.executable, "-c", _WRITER.format(units=units), str(path)],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                )
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line.strip() == b"ready", f"the writer did not start: {line!r}"
            time.sleep(rng.uniform(0.0, 0.4))
            last = i == kills - 1 or not can_freeze
            if last:
                proc.kill()
                proc.wait()
            else:
                os.kill(proc.pid, signal.SIGSTOP)
            clone = nn.Sequential(nn.Dense(units))
            clone.load_parameters(path)  # raises if the file is torn
            values = np.unique(np.concatenate(
                [to_np(p.data()).ravel() for p in clone.collect_params().values()]))
            assert len(values) == 1, f"a mix of saves in one file: {values[:5]}"
            seen.append(float(values[0]))
            if last:
                proc = None
            else:
                os.kill(proc.pid, signal.SIGCONT)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    return seen


@scenario("IO08", "atomic write: a save killed mid-way leaves the previous file loadable")
def io08(ctx: Context) -> None:
    path = ctx.tmp / "atomic.params"
    kill_during_saves(path, kills=5)
    # a save that fails in-process (not a tensor) leaves the old file and no temporary file
    before = path.read_bytes()
    try:
        d2lcompat.save(path, {"x": object()})
    except CheckpointError:
        pass
    else:
        raise AssertionError("saving an object() must raise CheckpointError")
    assert path.read_bytes() == before
    try:
        d2lcompat.save(ctx.tmp / "no-such-folder" / "x.safetensors", ops.ones((2,)))
    except CheckpointError as exc:
        assert "no-such-folder" in str(exc)
    else:
        raise AssertionError("saving into a missing folder must raise CheckpointError")


@scenario("IO09", "native import: the framework's own checkpoint of Linear layers gives the same output")
def io09(ctx: Context) -> None:
    formats = d2lcompat.native_formats()
    if not formats:
        raise Unsupported(
            f"{d2lcompat.backend()} has no native checkpoint format that d2lcompat reads "
            "(its portable safetensors files are covered by IO04 and XB01)"
        )
    data = resources.files("d2lcompat_conformance") / "data"
    fixture = next((data / f"mlp{s}" for s in formats if (data / f"mlp{s}").is_file()), None)
    if fixture is None:
        raise AssertionError(
            f"no conformance/data/mlp{{{','.join(formats)}}} fixture: run "
            f"tests/native/test_{d2lcompat.backend()}_native.py to write it"
        )
    io = d2lcompat.load(str(data / "native_mlp_io.safetensors"))
    with resources.as_file(fixture) as native:
        net = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(3))
        net.load_parameters(native, trusted=True)  # our own fixture: pickles are trusted
        np.testing.assert_allclose(to_np(net(io["x"])), to_np(io["y"]), rtol=1e-5, atol=1e-6)
        assert net[0].weight.shape == (8, 4)  # (out, in) whatever the framework stores
        portable = ctx.tmp / "converted.safetensors"
        names = d2lcompat.convert(native, portable, trusted=True)
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias"], names
    clone = nn.Sequential(nn.Dense(8, activation="relu"), nn.Dense(3))
    clone.load_parameters(portable)
    np.testing.assert_array_equal(to_np(clone(io["x"])), to_np(net(io["x"])))


@scenario("IO10", "sharded save (3 shards + index) loads with the same outputs; a missing shard changes nothing")
def io10(ctx: Context) -> None:
    d2lcompat.seed(100)
    net = MLP()
    net.initialize()
    X = ops.random.uniform((2, 20))
    Y = net(X)
    folder = ctx.tmp / "sharded"
    folder.mkdir()
    (folder / "config.json").write_text("{}")  # a file of the user's: kept by every save
    # 31,784 bytes of float32 data: hidden.weight alone, hidden.bias, out.*
    net.save_parameters(folder, max_shard_size=11_000)
    names = sorted(p.name for p in folder.iterdir())
    shards = [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)]
    assert names == ["config.json", *shards, "model.safetensors.index.json"], names
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert index["weight_map"] == {"hidden.weight": shards[0], "hidden.bias": shards[1],
                                   "out.bias": shards[2], "out.weight": shards[2]}
    assert index["metadata"]["total_size"] == 31_784
    for path in (folder, folder / "model.safetensors.index.json"):  # a folder or its index
        clone = MLP()
        clone.load_parameters(path)
        np.testing.assert_array_equal(to_np(clone(X)), to_np(Y))
    assert list(d2lcompat.load(folder)) == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    # saving again replaces the set as a whole, keeps the user's file, leaves no temporary file
    net.save_parameters(folder, max_shard_size="1MB")
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "model-00001-of-00001.safetensors", "model.safetensors.index.json"]
    assert [p.name for p in ctx.tmp.iterdir() if "d2lc-tmp" in p.name] == []
    net.save_parameters(folder, max_shard_size=11_000)
    # a missing shard: CheckpointError naming it, and the model is unchanged
    (folder / shards[1]).unlink()
    other = MLP()
    other.initialize()
    other(X)
    before = _snapshot(other)
    try:
        other.load_parameters(folder)
    except CheckpointError as exc:
        assert shards[1] in str(exc), str(exc)
    else:
        raise AssertionError("a missing shard must raise CheckpointError")
    _assert_unchanged(other, before)
