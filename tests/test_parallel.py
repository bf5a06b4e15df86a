"""d2lcompat.parallel and ``d2lcompat launch`` (API §17), on this process's backend.

The multi-worker runs start subprocesses on loopback, with ports the OS chose and
bounded timeouts; DP01-DP03 (tests/test_conformance.py) check the numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import d2lcompat
from d2lcompat import ShapeError, UnsupportedError, init, loss, nn, ops, parallel
from d2lcompat._cluster import Cluster, free_ports
from d2lcompat._errors import D2LCompatError
from d2lcompat_cli import main as cli_main
from d2lcompat_cli._launcher import command

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "train_parallel.py"


# ------------------------------------------------------------------ process group
def test_cluster_from_env() -> None:
    assert Cluster.from_env({}) is None
    c = Cluster.from_env({"D2LCOMPAT_WORLD_SIZE": "2", "D2LCOMPAT_RANK": "1",
                          "D2LCOMPAT_ADDRESSES": "127.0.0.1:1, 127.0.0.1:2"})
    assert c == Cluster(1, 2, ("127.0.0.1:1", "127.0.0.1:2"))
    assert Cluster.from_env(c.env()) == c
    assert Cluster.from_env({"D2LCOMPAT_WORLD_SIZE": "1"}) == Cluster(0, 1, ())


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"D2LCOMPAT_WORLD_SIZE": "two"}, "must be numbers"),
        ({"D2LCOMPAT_WORLD_SIZE": "2", "D2LCOMPAT_RANK": "2",
          "D2LCOMPAT_ADDRESSES": "a:1,b:2"}, "D2LCOMPAT_RANK=2"),
        ({"D2LCOMPAT_WORLD_SIZE": "2", "D2LCOMPAT_ADDRESSES": "a:1"}, "must list 2"),
    ],
)
def test_cluster_from_env_errors(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(D2LCompatError, match=fragment) as info:
        Cluster.from_env(env)
    assert "d2lcompat launch" in str(info.value)


def test_free_ports_distinct() -> None:
    ports = free_ports(4)
    assert len(set(ports)) == 4 and all(p > 0 for p in ports)


def test_single_worker_is_identity() -> None:
    parallel.init()  # no launcher variables here: one worker
    assert (parallel.world_size(), parallel.rank(), parallel.local_rank()) == (1, 0, 0)
    assert parallel.is_initialized()
    x, y = ops.ones((2, 3)), ops.zeros((4,))
    assert parallel.all_reduce_mean([x, y])[0] is x
    got = parallel.all_reduce_mean({"a": x, "b": y})
    assert list(got) == ["a", "b"] and got["b"] is y
    assert parallel.broadcast([x])[0] is x
    parallel.shutdown()
    assert not parallel.is_initialized()


def test_engines_name_the_framework() -> None:
    eng = parallel.engines()
    assert set(eng) == {"processes", "devices"}
    assert eng["processes"], "every shipped backend has a multi-process engine"
    assert all(isinstance(v, str) for v in eng.values())


def test_local_devices() -> None:
    devs = parallel.local_devices()
    assert devs and all(isinstance(d, d2lcompat.Device) for d in devs)
    assert devs[0] in (d2lcompat.cpu(), d2lcompat.gpu())


# ------------------------------------------------------------------ one process
def test_split_and_load_errors() -> None:
    x = ops.ones((4, 2))
    with pytest.raises(D2LCompatError, match="at least one device"):
        parallel.split_and_load(x, [])
    with pytest.raises(ShapeError, match="batch_axis=2"):
        parallel.split_and_load(x, [d2lcompat.cpu()], batch_axis=2)
    with pytest.raises(ShapeError, match="divisible by 3"):
        parallel.split_and_load(x, [d2lcompat.cpu()] * 3)
    parts = parallel.split_and_load(x, ["cpu:0", "cpu:0"], batch_axis=-1)
    assert [ops.shape(p) for p in parts] == [(4, 1), (4, 1)]
    parts = parallel.split_and_load(ops.arange(10), [d2lcompat.cpu()] * 4, even_split=False)
    assert [ops.shape(p)[0] for p in parts] == [2, 2, 2, 4]


def _net() -> nn.Sequential:
    d2lcompat.seed(1)
    net = nn.Sequential(nn.Dense(5, activation="relu", in_units=3), nn.Dense(2, in_units=5))
    net.initialize()
    return net


def test_device_parallel_one_device_equals_autograd() -> None:
    net = _net()
    X, y = ops.random.uniform((6, 3)), ops.random.uniform((6, 2))
    fn = lambda X, y: ops.sum(loss.L2Loss()(net(X), y))  # noqa: E731
    value, grads = parallel.DeviceParallel(fn, net.collect_params(), [d2lcompat.cpu()])(X, y)
    want_value, want = d2lcompat.autograd.grad(lambda: fn(X, y), net.collect_params())
    np.testing.assert_allclose(ops.to_numpy(value), ops.to_numpy(want_value), rtol=1e-6)
    for k in want:
        np.testing.assert_allclose(ops.to_numpy(grads[k]), ops.to_numpy(want[k]), rtol=1e-6)


def test_data_parallel_step_one_device_equals_train_step() -> None:
    X, y = ops.random.uniform((8, 3)), ops.random.uniform((8, 2))
    results = []
    for make in (
        lambda n, t: parallel.data_parallel_step(n, loss.L2Loss(), t, [d2lcompat.cpu()]),
        lambda n, t: d2lcompat.train_step(n, loss.L2Loss(), t),
    ):
        net = _net()
        trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.3})
        step = make(net, trainer)
        losses = [float(ops.item(step(X, y))) for _ in range(3)]
        results.append((losses, ops.to_numpy(net[0].weight.data())))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6, atol=1e-7)


_TWO_DEVICES = """
import numpy as np, d2lcompat
from d2lcompat import nn, ops, parallel, loss, UnsupportedError
from d2lcompat._state import set_state
devs = parallel.local_devices()
assert len(devs) == 2, devs
d2lcompat.seed(1)
net = nn.Sequential(nn.Dense(5, activation="relu", in_units=3), nn.Dense(2, in_units=5))
net.initialize()
trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.3})
step = d2lcompat.train_step(net, loss.L2Loss(), trainer, devices=devs)
X, y = ops.random.uniform((8, 3)), ops.random.uniform((8, 2))
mean, pred = step.with_outputs(X, y)
assert ops.shape(pred) == (8, 2) and ops.shape(mean) == ()
try:
    step(ops.random.uniform((7, 3)), ops.random.uniform((7, 2)))
except d2lcompat.ShapeError as exc:
    assert "divisible by 2" in str(exc), exc
else:
    raise AssertionError("an uneven batch must raise ShapeError")

class Counting(nn.Block):  # a forward pass that updates state, as BatchNorm does
    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(1, in_units=3)
        self.seen = d2lcompat.Parameter((1,), init="zeros", grad_req="null")
    def forward(self, x):
        set_state(self.seen, ops.add(self.seen.data(), ops.ones((1,))))
        return self.dense(x)

c = Counting(); c.initialize()
dp = parallel.DeviceParallel(lambda X: ops.sum(c(X)), c.collect_params(), devs)
try:
    dp(ops.ones((4, 3)))
except UnsupportedError as exc:
    assert "running statistics" in str(exc), exc
else:
    raise AssertionError("state updates over several devices must be refused")

from d2lcompat._registry import active

def batch_norm_run(devices):
    d2lcompat.seed(0)
    net = nn.Sequential(nn.Dense(8, in_units=4), nn.BatchNorm(in_channels=8), nn.Dense(1, in_units=8))
    net.initialize()
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer, devices=devices)
    rng = np.random.default_rng(0)
    for _ in range(3):
        step(ops.tensor(rng.standard_normal((8, 4)).astype("float32")),
             ops.tensor(rng.standard_normal((8, 1)).astype("float32")))
    return {k: ops.to_numpy(p.data()) for k, p in net.collect_params().items()}

if active().SUPPORTS_SHARDED_TRAIN_STEP and not active().SHARDED_TRAIN_STEP_PER_REPLICA:
    # the whole step compiled over the devices: running statistics of the whole batch
    one, two = batch_norm_run(None), batch_norm_run(devs)
    for k in one:
        np.testing.assert_allclose(two[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)
else:
    try:
        batch_norm_run(devs)
    except UnsupportedError as exc:
        assert "running statistics" in str(exc), exc
    else:
        raise AssertionError("BatchNorm over several devices must be refused here")

# Labels are checked on the host before a step over several devices changes anything.
d2lcompat.seed(2)
cls = nn.Sequential(nn.Dense(4, activation="relu", in_units=3), nn.Dense(3, in_units=4))
cls.initialize()
trainer = d2lcompat.Trainer(cls.collect_params(), "sgd", {"learning_rate": 0.1})
step = d2lcompat.train_step(cls, loss.SoftmaxCrossEntropyLoss(), trainer, devices=devs)
X = ops.random.uniform((4, 3))
for _ in range(2):
    step(X, ops.tensor(np.array([0, 1, 2, 0])))
before = {k: ops.to_numpy(p.data()).copy() for k, p in cls.collect_params().items()}
for bad in (np.array([0, 1, 3, -1]), np.array([0, 1, np.nan, 0], "float32")):
    try:
        step(X, ops.tensor(bad))
    except d2lcompat.LabelError as exc:
        assert "3 classes" in str(exc), exc
    else:
        raise AssertionError("bad labels over two devices must raise LabelError")
for k, p in cls.collect_params().items():
    np.testing.assert_array_equal(ops.to_numpy(p.data()), before[k], err_msg=k)
print("OK")
"""


def test_train_step_over_two_devices_of_one_process() -> None:
    if not parallel.engines()["devices"]:
        # torch and paddle: one process per device; the error says what to do instead.
        net = _net()
        trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.3})
        step = d2lcompat.train_step(net, loss.L2Loss(), trainer, devices=["cpu", "cpu"])
        with pytest.raises(UnsupportedError, match="d2lcompat launch"):
            step(ops.ones((4, 3)), ops.ones((4, 2)))
        return
    env = {**os.environ, "D2LCOMPAT_BACKEND": d2lcompat.backend(), "D2LCOMPAT_CPU_DEVICES": "2"}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", _TWO_DEVICES], env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]


# ------------------------------------------------------------------ launch
def test_launch_command_per_backend() -> None:
    (argv, env), = command("s.py", ["--x"], 3, backend="torch")
    assert argv[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3",
                        "s.py", "--x"]
    assert env["D2LCOMPAT_BACKEND"] == "torch"
    (argv, env), = command("s.py", [], 2, backend="paddle")
    assert argv[1:4] == ["-m", "paddle.distributed.launch", "--nproc_per_node=2"]
    for name in ("jax", "tensorflow"):
        (argv, env), = command("s.py", [], 4, backend=name)
        assert argv[1:] == ["s.py"] and env["D2LCOMPAT_CPU_DEVICES"] == "4"
    plan = command("s.py", [], 2, backend="jax", processes=True)
    clusters = [Cluster.from_env(env) for _, env in plan]
    assert [c.rank for c in clusters if c] == [0, 1]
    addresses = clusters[0].addresses if clusters[0] else ()
    assert len(set(addresses)) == 2 and all(a.startswith("127.0.0.1:") for a in addresses)
    with pytest.raises(SystemExit, match="unknown backend"):
        command("s.py", [], 2, backend="nope")
    with pytest.raises(SystemExit, match="--nproc"):
        command("s.py", [], 0, backend="jax")


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "worker.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_launch_stops_the_others_when_one_worker_fails(tmp_path: Path) -> None:
    script = _script(tmp_path, """
        import os, sys, time
        if os.environ["D2LCOMPAT_RANK"] == "1":
            sys.exit(3)
        time.sleep(60)
    """)
    start = time.monotonic()
    rc = cli_main(["launch", "--nproc", "2", "--processes", "--timeout", "50", str(script)])
    assert rc == 3 and time.monotonic() - start < 30


def test_launch_timeout(tmp_path: Path) -> None:
    script = _script(tmp_path, "import time\ntime.sleep(60)\n")
    start = time.monotonic()
    rc = cli_main(["launch", "--nproc", "2", "--processes", "--timeout", "1", str(script)])
    assert rc == 124 and time.monotonic() - start < 20


def _load_checkpoint(path: Path) -> dict[str, Any]:
    out = d2lcompat.load(path)
    assert isinstance(out, dict)
    return {k: ops.to_numpy(v) for k, v in out.items()}


@pytest.mark.parametrize("processes", [False, True], ids=["own-launcher", "processes"])
def test_launch_example_script_matches_one_process(tmp_path: Path, processes: bool) -> None:
    """docs/examples/train_parallel.py under `d2lcompat launch --nproc 2` ends where the
    same script in one process ends (the checkpoint of worker 0)."""
    env = {**os.environ, "D2LCOMPAT_BACKEND": d2lcompat.backend()}
    env = {k: v for k, v in env.items() if k not in ("XLA_FLAGS", "D2LCOMPAT_CPU_DEVICES")}
    single = tmp_path / "single.safetensors"
    subprocess.run([sys.executable, str(EXAMPLE), str(single)], env=env, check=True,
                   capture_output=True, timeout=180, cwd=tmp_path)
    many = tmp_path / "many.safetensors"
    argv = [sys.executable, "-m", "d2lcompat._cli", "launch", "--nproc", "2", "--timeout", "200"]
    proc = subprocess.run(
        argv + (["--processes"] if processes else []) + [str(EXAMPLE), str(many)],
        env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path,  # paddle writes ./log
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    want, got = _load_checkpoint(single), _load_checkpoint(many)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-5, err_msg=k)


_COLLECTIVES = """
import json, sys
import numpy as np
from d2lcompat import ops, parallel

parallel.init()
r = parallel.rank()
got = parallel.all_reduce_mean([
    ops.tensor(np.arange(3, dtype=np.float32) * (r + 1)),
    ops.tensor(np.full((2, 2), 10.0 * (r + 1), dtype=np.float32)),
    ops.tensor(np.arange(6, dtype=np.float32).reshape(1, 2, 3) - 4.0 * r),
])
named = parallel.all_reduce_mean({"w": ops.tensor(np.full((2,), 2.0 * r, np.float32))})
root = parallel.broadcast([ops.tensor(np.full((2,), float(r + 5), np.float32)),
                           ops.tensor(np.arange(4, dtype=np.float32).reshape(2, 2) + r)], root=1)
out = {"mean": [ops.to_numpy(t).tolist() for t in got], "named": ops.to_numpy(named["w"]).tolist(),
       "root": [ops.to_numpy(t).tolist() for t in root]}
with open(f"{sys.argv[1]}/rank{r}.json", "w") as f:
    json.dump(out, f)
"""


def test_collectives_of_several_tensors_across_processes(tmp_path: Path) -> None:
    """`parallel.all_reduce_mean` and `parallel.broadcast` of several tensors of several
    shapes give each tensor its own mean / the root's values, in the shapes given, on
    every worker."""
    import json

    script = tmp_path / "collectives.py"
    script.write_text(_COLLECTIVES)
    env = {**os.environ, "D2LCOMPAT_BACKEND": d2lcompat.backend()}
    env = {k: v for k, v in env.items() if k not in ("XLA_FLAGS", "D2LCOMPAT_CPU_DEVICES")}
    argv = [sys.executable, "-m", "d2lcompat._cli", "launch", "--nproc", "2", "--timeout", "200",
            "--processes", str(script), str(tmp_path)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    want_mean = [np.arange(3) * 1.5, np.full((2, 2), 15.0), np.arange(6).reshape(1, 2, 3) - 2.0]
    for r in range(2):
        got = json.loads((tmp_path / f"rank{r}.json").read_text())
        for g, w in zip(got["mean"], want_mean):
            np.testing.assert_allclose(np.asarray(g), w, rtol=0, atol=1e-6)
            assert np.asarray(g).shape == w.shape
        np.testing.assert_allclose(got["named"], [1.0, 1.0], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(got["root"][0], [6.0, 6.0])
        np.testing.assert_array_equal(got["root"][1], np.arange(4).reshape(2, 2) + 1)


def test_init_outside_launcher_is_noop_on_default_params() -> None:
    net = nn.Dense(2, in_units=3)
    net.initialize(init.One())
    parallel.sync_parameters(net.collect_params())
    np.testing.assert_array_equal(ops.to_numpy(net.weight.data()), np.ones((2, 3)))


# ------------------------------------------- the compiled step over devices / processes
_COMPILED_DP = """
import sys, json
import numpy as np
import d2lcompat
from d2lcompat import nn, ops, parallel, loss
from d2lcompat._registry import active

mode, out = sys.argv[1], sys.argv[2]
ORDER = (0, 1, 1, 2, 3)
parallel.init()
workers, rank = parallel.world_size(), parallel.rank()
devices = parallel.local_devices()[:2] if mode == "devices" else None
b = active()
eager = mode == "processes-eager"  # a net that is not hybridized
compiled = b.SUPPORTS_SHARDED_TRAIN_STEP if mode == "devices" else b.SUPPORTS_DISTRIBUTED_TRAIN_STEP
compiled = compiled and not eager
X, y = (np.load(out + "/data.npz")[k] for k in ("X", "y"))
local = X.shape[1] // workers
rows = slice(rank * local, (rank + 1) * local)
applied = [0]  # eager optimizer updates (Optimizer.apply), none in a compiled step
results = {}
for name, opt, clip in (("sgd", "sgd", None), ("adam", "adam", None), ("adam_clip", "adam", 0.05)):
    d2lcompat.seed(4)
    net = nn.Sequential(nn.Dense(6, activation="relu", in_units=3), nn.Dense(2, in_units=6))
    net.initialize()
    if not eager:
        net.hybridize()
    trainer = d2lcompat.Trainer(net.collect_params(), opt, {"learning_rate": 0.1},
                                clip_global_norm=clip)
    original = type(trainer.optimizer).apply
    def counting(self, *a, **k):
        applied[0] += 1
        return original(self, *a, **k)
    type(trainer.optimizer).apply = counting
    calls = [0]
    l2 = loss.L2Loss()
    def counted(pred, label):  # Python runs it only while a compiled step is traced
        calls[0] += 1
        return l2(pred, label)
    step = d2lcompat.train_step(net, counted, trainer, devices=devices, stop_on_nan=True)
    losses, seen, tensors = [], [], {}
    for s in ORDER:  # batch 1 twice, as the same tensors (an adapter may reuse what it made of them)
        if s not in tensors:
            tensors[s] = (ops.tensor(X[s, rows]), ops.tensor(y[s, rows]))
        losses.append(float(ops.item(step(*tensors[s]))))
        seen.append((calls[0], applied[0]))
    type(trainer.optimizer).apply = original
    if compiled:
        # one compiled function: traced by the first step, neither traced again nor
        # followed by an eager update afterwards
        assert seen[1:] == [seen[0]] * (len(seen) - 1), seen
        assert applied[0] == 0, applied
    if eager and b.COMPILES_DISTRIBUTED_UPDATE:
        # the all-reduce and the update as one compiled call: no eager update
        assert applied[0] == 0, applied
    # the averaged gradients stay readable after an eager step (none in a compiled one)
    grads = {k: ops.to_numpy(p.grad()).tolist() for k, p in net.collect_params().items()} if eager else {}
    # compiled or eager: a NaN in one worker's shard stops the step on every worker
    # (the eager step checks the all-reduced gradients), nothing changed anywhere
    before = {k: ops.to_numpy(p.data()).copy() for k, p in net.collect_params().items()}
    bad = X[0, rows].copy()
    if rank == workers - 1:
        bad[-1, 0] = np.nan  # one worker's (the last device's) shard only
    try:
        step(ops.tensor(bad), ops.tensor(y[0, rows]))
    except d2lcompat.NonFiniteLossError:
        pass
    else:
        raise AssertionError("a NaN in one shard must stop the step everywhere")
    for k, p in net.collect_params().items():
        np.testing.assert_array_equal(ops.to_numpy(p.data()), before[k], err_msg=k)
    results[name] = {"losses": losses, "grads": grads,
                     "params": {k: ops.to_numpy(p.data()).tolist() for k, p in net.collect_params().items()}}
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump(results, f)
parallel.shutdown()
"""


def _one_worker_compiled(X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    results = {}
    for name, opt, clip in (("sgd", "sgd", None), ("adam", "adam", None), ("adam_clip", "adam", 0.05)):
        d2lcompat.seed(4)
        net = nn.Sequential(nn.Dense(6, activation="relu", in_units=3), nn.Dense(2, in_units=6))
        net.initialize()
        net.hybridize()
        trainer = d2lcompat.Trainer(net.collect_params(), opt, {"learning_rate": 0.1},
                                    clip_global_norm=clip)
        step = d2lcompat.train_step(net, loss.L2Loss(), trainer)
        # The workers' order of batches (`_COMPILED_DP`'s ORDER: batch 1 twice).
        losses = [float(ops.item(step(ops.tensor(X[s]), ops.tensor(y[s])))) for s in (0, 1, 1, 2, 3)]
        results[name] = {"losses": losses,
                         "params": {k: ops.to_numpy(p.data()) for k, p in net.collect_params().items()}}
    return results


@pytest.mark.parametrize("mode", ["devices", "processes", "processes-eager"])
def test_compiled_data_parallel_step_equals_one_worker(tmp_path: Path, mode: str) -> None:
    """A hybridized net's step over 2 devices (one process) or 2 processes equals the
    one-worker compiled step on the whole batch (SGD, Adam, Adam with clipping); where
    the adapter compiles it whole, is one compiled function (traced once, no eager
    update); and, compiled or eager, a NaN in one shard stops the step on every worker
    with every worker's parameters unchanged."""
    if not parallel.engines()[mode.split("-")[0]]:
        pytest.skip(f"{d2lcompat.backend()} has no '{mode}' engine (see test_train_step_over_two_devices)")
    rng = np.random.default_rng(5)
    X = rng.standard_normal((4, 8, 3)).astype(np.float32)
    y = rng.standard_normal((4, 8, 2)).astype(np.float32)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    script = tmp_path / "worker.py"
    script.write_text(_COMPILED_DP)
    base = {k: v for k, v in os.environ.items() if not k.startswith("D2LCOMPAT_") and k != "XLA_FLAGS"}
    base["D2LCOMPAT_BACKEND"] = d2lcompat.backend()
    if mode == "devices":
        envs = [dict(base, D2LCOMPAT_CPU_DEVICES="2")]
    else:
        addrs = tuple(f"127.0.0.1:{p}" for p in free_ports(2))
        envs = [dict(base, **Cluster(r, 2, addrs, 120.0).env()) for r in range(2)]
    procs = [subprocess.Popen([sys.executable, str(script), mode, str(tmp_path)], env=e,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for e in envs]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), "\n".join(lg[-3000:] for lg in logs)
    want = _one_worker_compiled(X, y)
    import json

    for r in range(len(envs)):
        got = json.loads((tmp_path / f"rank{r}.json").read_text())
        for name, ref in want.items():
            for k, value in ref["params"].items():
                np.testing.assert_allclose(np.asarray(got[name]["params"][k]), value, rtol=1e-5,
                                           atol=1e-6, err_msg=f"{mode} rank {r} {name} {k}")
            if mode == "devices":  # the batch's mean loss (several processes: see the docs)
                np.testing.assert_allclose(got[name]["losses"], ref["losses"], rtol=1e-5)
    if mode == "processes-eager":
        # param.grad() after an eager step: the gradient averaged over the workers,
        # the same on each (the parameters' values are checked against one worker above)
        ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
        for name in want:
            for k, g in ranks[0][name]["grads"].items():
                np.testing.assert_allclose(np.asarray(ranks[1][name]["grads"][k]), np.asarray(g),
                                           rtol=1e-6, atol=1e-7, err_msg=f"{name} {k}")
                assert np.any(np.asarray(g) != 0), (name, k)
