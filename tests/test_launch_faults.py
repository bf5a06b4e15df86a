"""Fault injection under ``d2lcompat launch`` (issue 19 item 9, issue 20 item 3), on this
process's backend, in each of its modes (the framework's launcher or one process with
N devices, and ``--processes``).

Each run trains a small net (eager, and hybridized: the compiled data-parallel step) with
the real collective engine and kills or breaks one worker after its first step; the
launch must end within 30 s of the failure, exit
non-zero, print one line naming the rank that failed first (exit code or signal, its
last output, its log), and leave no process behind (every process of a run carries
the test's marker variable, looked up in ``/proc``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import d2lcompat

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="orphans are found in /proc")

TRAIN = """
    import os, signal, sys
    import d2lcompat
    from d2lcompat import loss, nn, ops, parallel
    parallel.init()
    rank, world = parallel.rank(), parallel.world_size()
    d2lcompat.seed(0)
    net = nn.Dense(1, in_units=4)
    net.initialize()
    if os.environ["HYBRID"] == "1":  # the compiled step: one program across the workers
        net.hybridize()
    parallel.sync_parameters(net.collect_params())
    trainer = d2lcompat.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})
    step = d2lcompat.train_step(net, loss.L2Loss(), trainer)
    X, y = ops.ones((4, 4)), ops.ones((4, 1))
    for i in range(100000):
        step(X, y)
        if i == 0:
            print(f"rank {rank} step 1 done", flush=True)
            if rank == world - 1:  # rank 1 of 2; rank 0 of a one-process run
                if os.environ["FAULT"] == "raise":
                    raise RuntimeError(f"fault injected in rank {rank}")
                os.kill(os.getpid(), signal.SIGKILL)
"""

SLEEPER = """
    import os, signal, sys, time
    signal.signal(signal.SIGTERM, lambda *a: None)  # a worker that ignores SIGTERM
    print("ready", flush=True)
    time.sleep(300)
"""

MODES = pytest.mark.parametrize("processes", [False, True], ids=["own-launcher", "processes"])


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "worker.py"
    path.write_text(textwrap.dedent(body))
    return path


def _marked(mark: str) -> list[int]:
    want = f"D2LCOMPAT_TEST_MARK={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if want in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _launch(
    tmp_path: Path, script: Path, processes: bool, extra: dict[str, str], *args: str
) -> tuple[subprocess.Popen[str], str, Path]:
    mark = uuid.uuid4().hex
    logs = tmp_path / "logs"
    env = {**os.environ, "D2LCOMPAT_BACKEND": d2lcompat.backend(), "D2LCOMPAT_TEST_MARK": mark,
           "D2LCOMPAT_DIST_TIMEOUT": "120", **extra}
    env = {k: v for k, v in env.items() if k not in ("XLA_FLAGS", "D2LCOMPAT_CPU_DEVICES")}
    argv = [sys.executable, "-c", "import sys; from d2lcompat_cli import main; sys.exit(main())",
            "launch", "--nproc", "2", "--grace", "2", "--log-dir", str(logs), "--timeout", "240",
            *(["--processes"] if processes else []), *args, str(script)]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, mark, logs


def _no_orphan(mark: str) -> None:
    deadline = time.monotonic() + 5  # a killed process may take a moment to be reaped
    while _marked(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _marked(mark)
    for pid in left:  # do not leave them to the next test
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not left, f"processes left behind: {left}"


@MODES
@pytest.mark.parametrize("fault", ["raise", "sigkill"])
@pytest.mark.parametrize("hybrid", [False, True], ids=["eager", "hybridized"])
def test_failed_worker_is_named_in_one_line(
    tmp_path: Path, processes: bool, fault: str, hybrid: bool
) -> None:
    """``hybridized``: the compiled data-parallel step (one jit of a shard_map on JAX, one
    tf.function around the strategy on TensorFlow) loses a worker in its collective."""
    proc, mark, logs = _launch(tmp_path, _script(tmp_path, TRAIN), processes,
                               {"FAULT": fault, "HYBRID": "1" if hybrid else "0"})
    try:
        out, err = proc.communicate(timeout=280)
    finally:
        proc.kill()
    ended = time.time()
    exits = sorted(logs.glob("rank*.exit"))
    lines = [ln for ln in err.splitlines() if ln.startswith("d2lcompat launch:")]
    assert len(lines) == 1, err[-3000:]
    line = lines[0]
    # One process with N devices (JAX, TensorFlow without --processes) has rank 0 only.
    rank = 1 if processes or "D2LCOMPAT_CPU_DEVICES" not in _plan_env(processes) else 0
    assert f"rank {rank} failed first" in line, line
    log = logs / f"rank{rank}.log"
    assert f"full log: {log}" in line and log.is_file()
    if fault == "raise":
        assert proc.returncode == 1, (proc.returncode, err[-2000:])
        assert "exit code 1" in line and f"RuntimeError: fault injected in rank {rank}" in line
    else:
        assert proc.returncode == 128 + signal.SIGKILL, (proc.returncode, err[-2000:])
        assert "SIGKILL" in line and f"rank {rank} step 1 done" in line
    assert f"rank {rank} step 1 done" in out
    # Within 30 s of the failure (the failed rank's record holds its time of death).
    import json

    died = min(json.loads(p.read_text())["time"] for p in exits
               if json.loads(p.read_text())["rank"] == rank)
    assert ended - died < 30, ended - died
    _no_orphan(mark)


def _plan_env(processes: bool) -> dict[str, str]:
    from d2lcompat_cli._launcher import command

    return command("s.py", [], 2, backend=d2lcompat.backend(), processes=processes)[0][1]


@pytest.mark.parametrize(
    ("processes", "sig"),
    [(False, signal.SIGTERM), (True, signal.SIGTERM), (True, signal.SIGINT)],
    ids=["own-launcher-SIGTERM", "processes-SIGTERM", "processes-SIGINT"],
)
def test_signal_to_the_launcher_stops_every_worker(
    tmp_path: Path, processes: bool, sig: signal.Signals
) -> None:
    proc, mark, logs = _launch(tmp_path, _script(tmp_path, SLEEPER), processes, {})
    try:
        deadline = time.monotonic() + 120
        want = 2 if processes or "D2LCOMPAT_CPU_DEVICES" not in _plan_env(processes) else 1
        while time.monotonic() < deadline:
            ready = [p for p in logs.glob("rank*.log") if "ready" in p.read_text()]
            if len(ready) == want:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        else:
            pytest.fail("the workers did not start")
        start = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - start
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("d2lcompat launch:")]
    assert len(lines) == 1 and f"got {sig.name}" in lines[0], err[-2000:]
    assert took < 20, took  # --grace 2 (the workers ignore SIGTERM), then SIGKILL
    _no_orphan(mark)


@MODES
def test_missing_script_is_one_line(tmp_path: Path, processes: bool) -> None:
    proc, mark, _ = _launch(tmp_path, tmp_path / "missing.py", processes, {})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().count("\n") == 0 and "no such script" in err and "missing.py" in err, err
    assert out == ""
    _no_orphan(mark)
