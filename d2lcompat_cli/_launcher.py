"""``d2lcompat launch --nproc N script.py``: start the workers of a data-parallel run.

No framework is imported here (the backend's `BackendSpec` says how to launch):

* a backend whose spec names a launcher (torch: ``torchrun``; paddle:
  ``python -m paddle.distributed.launch``) gets it, with ``{nproc}`` workers;
* otherwise (JAX, TensorFlow) one process with N devices: ``D2LCOMPAT_CPU_DEVICES=N``
  (on a GPU machine the process sees every GPU anyway);
* ``--processes``: N processes on 127.0.0.1 with d2lcompat's group variables
  (``D2LCOMPAT_RANK``, ``D2LCOMPAT_WORLD_SIZE``, ``D2LCOMPAT_ADDRESSES``), ports
  chosen free by the OS; `d2lcompat.parallel.init` in each joins the group with the
  framework's engine.

Every worker runs under `d2lcompat_cli._worker` (the script is its child), which
writes the script's output to ``<log dir>/rank<r>.log`` and records how and when it
ended. `launch` streams those logs to stdout, and when a worker fails it names the
rank that failed *first* (by time of death, whatever the framework's launcher says)
in one line on stderr — exit code or signal, its last lines of output, where its full
log is — stops the other workers (SIGTERM, then SIGKILL after a grace period) and
sweeps any process left with this run's marker (``D2LCOMPAT_LAUNCH_ID``) so none
outlives it. SIGINT/SIGTERM sent to the launcher are forwarded the same way.
``--timeout`` bounds the whole run (exit 124).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from . import _worker

__all__ = ["command", "launch"]

#: Seconds the workers get to exit after SIGTERM before they are killed.
DEFAULT_GRACE = 5.0
MARKER = "D2LCOMPAT_LAUNCH_ID"


def _backend(name: str | None) -> tuple[str, tuple[str, ...]]:
    from d2lcompat_spec import discover, is_installed

    specs = discover()
    wanted = (name or os.environ.get("D2LCOMPAT_BACKEND", "")).strip().lower()
    if not wanted:
        installed = [n for n, s in specs.items() if is_installed(s)]
        if not installed:
            raise SystemExit("d2lcompat launch: no backend is installed.")
        wanted = installed[0]
    if wanted not in specs:
        raise SystemExit(f"d2lcompat launch: unknown backend {wanted!r}; known: {', '.join(specs)}.")
    return wanted, specs[wanted].launcher


def _free_ports(n: int) -> list[int]:
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


def command(
    script: str, args: Sequence[str], nproc: int, backend: str | None = None,
    processes: bool = False, log_dir: str = "log",
) -> list[tuple[list[str], dict[str, str]]]:
    """The ``(argv, environment)`` of each process `launch` starts (`launch` puts its
    worker wrapper in front of ``script``). ``log_dir`` fills the ``{log_dir}`` of a
    framework launcher's arguments (paddle's ``--log_dir``).

    Examples
    --------
    >>> [(argv[1:4], env["D2LCOMPAT_CPU_DEVICES"])
    ...  for argv, env in command("train.py", [], 2, backend="jax")]
    [(['train.py'], '2')]
    """
    if nproc < 1:
        raise SystemExit(f"d2lcompat launch: --nproc must be >= 1, got {nproc}.")
    name, launcher = _backend(backend)
    base = dict(os.environ, D2LCOMPAT_BACKEND=name)
    for k in ("D2LCOMPAT_RANK", "D2LCOMPAT_WORLD_SIZE", "D2LCOMPAT_ADDRESSES"):
        base.pop(k, None)
    py = sys.executable
    if processes:
        addrs = ",".join(f"127.0.0.1:{p}" for p in _free_ports(nproc))
        # As torchrun does: N workers share the cores instead of each taking all of them.
        base.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        return [
            ([py, script, *args], dict(base, D2LCOMPAT_RANK=str(r), D2LCOMPAT_WORLD_SIZE=str(nproc),
                                       D2LCOMPAT_ADDRESSES=addrs))
            for r in range(nproc)
        ]
    if launcher:
        fmt = [a.format(nproc=nproc, log_dir=log_dir) for a in launcher]
        return [([py, *fmt, script, *args], base)]
    return [([py, script, *args], dict(base, D2LCOMPAT_CPU_DEVICES=str(nproc)))]


def _exit_status(rc: int) -> int:
    """A shell's exit status for a child's return code (``-9`` -> 137)."""
    return rc if rc >= 0 else 128 - rc


def _how(rc: int) -> str:
    if rc < 0 or rc > 128:
        sig = -rc if rc < 0 else rc - 128
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name} (signal {sig})"
    return f"exit code {rc}"


def _last_lines(path: Path, n: int = 3, width: int = 400) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no output)"
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()][-n:]
    text = " | ".join(lines) or "(no output)"
    return text if len(text) <= width else "..." + text[-width:]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _marked(launch_id: str) -> list[int]:
    """The processes (not this one) whose environment carries this run's marker."""
    want = f"{MARKER}={launch_id}".encode()
    found: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if want in env.split(b"\0"):
            found.append(int(entry.name))
    return found


#: Seconds within which a rank killed by a signal counts as failing before a peer that
#: raised (the peer likely died of the closed connection).
_KILL_WINDOW = 2.0

class _Run:
    """The processes of one launch, their logs, and how to stop them all."""

    def __init__(self, run_dir: Path, launch_id: str, nproc: int, grace: float) -> None:
        self.dir = run_dir
        self.id = launch_id
        self.grace = grace
        self.procs: list[subprocess.Popen[bytes]] = []
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, bytes] = {}
        self._prefix = nproc > 1

    # ------------------------------------------------------------- output
    def pump(self, final: bool = False) -> None:
        """Copy the new lines of each rank's log to stdout (``[rank r]`` first when
        there are several workers)."""
        for path in sorted(self.dir.glob("rank*.log")):
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets.get(path, 0))
                    chunk = f.read()
            except OSError:
                continue
            if not chunk and not (final and self._partial.get(path)):
                continue
            self._offsets[path] = self._offsets.get(path, 0) + len(chunk)
            data = self._partial.pop(path, b"") + chunk
            lines = data.split(b"\n")
            rest = lines.pop()
            if final and rest:
                lines.append(rest)
                rest = b""
            if rest:
                self._partial[path] = rest
            prefix = f"[{path.stem.replace('rank', 'rank ')}] ".encode() if self._prefix else b""
            out = b"".join(prefix + ln + b"\n" for ln in lines)
            if out:
                sys.stdout.buffer.write(out)
        sys.stdout.flush()

    # ------------------------------------------------------------ failures
    def exits(self) -> list[dict[str, Any]]:
        out = []
        for path in self.dir.glob("rank*.exit"):
            rec = _read_json(path)
            if rec is not None:
                out.append(rec)
        return out

    def first_failure(self) -> dict[str, Any] | None:
        """The worker that failed first (by time of death), not one we stopped."""
        failed = [r for r in self.exits() if r.get("returncode") and not r.get("stopped")]
        if not failed:
            return None
        first = min(failed, key=lambda r: float(r.get("time", 0.0)))
        # A rank killed by a signal (SIGKILL, the OOM killer) has no moment of failure of
        # its own, only the moment its wrapper saw it gone; a peer cut off by it can raise
        # ("connection closed by peer") a little before that: name the killed rank.
        killed = [r for r in failed if int(r["returncode"]) < 0]
        if killed:
            k = min(killed, key=lambda r: float(r.get("time", 0.0)))
            if float(k.get("time", 0.0)) - float(first.get("time", 0.0)) < _KILL_WINDOW:
                return k
        return first

    # ------------------------------------------------------------ stopping
    def _pids(self) -> set[int]:
        if Path("/proc").is_dir():
            # Only processes that carry the run's marker: a pid from a file could have
            # been reused by an unrelated process since.
            return set(_marked(self.id))
        pids: set[int] = set()
        for path in self.dir.glob("rank*.pid"):
            rec = _read_json(path) or {}
            pids.update(int(rec[k]) for k in ("worker", "script") if isinstance(rec.get(k), int))
        return pids

    def _signal_all(self, sig: int) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, sig)  # the launcher and what shares its session
                except OSError:
                    pass
        for pid in self._pids():
            try:
                os.kill(pid, sig)
            except OSError:
                pass

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """``sig`` to every process of the run, SIGKILL to those alive after the grace
        period, then a sweep for any process left with the run's marker."""
        if any(p.poll() is None for p in self.procs) or self._pids():
            self._signal_all(sig)
            deadline = time.monotonic() + self.grace
            while time.monotonic() < deadline:
                self.pump()
                if all(p.poll() is not None for p in self.procs) and not self._pids():
                    break
                time.sleep(0.05)
        for _ in range(3):
            self._signal_all(signal.SIGKILL)
            for p in self.procs:
                try:
                    p.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
            if not self._pids():
                break
            time.sleep(0.1)


def _say(line: str) -> None:
    print(f"d2lcompat launch: {line}", file=sys.stderr, flush=True)


def launch(
    script: str, args: Sequence[str], nproc: int, backend: str | None = None,
    processes: bool = False, timeout: float | None = None, log_dir: str | None = None,
    grace: float | None = None,
) -> int:
    """Start the workers (see the module's docstring) and return 0 when every worker
    succeeded; else the exit status of the rank that failed first (``128 + signal``
    when it was killed by a signal), 124 after ``timeout``, ``128 + signal`` when the
    launcher itself got SIGINT/SIGTERM, 2 when ``script`` does not exist."""
    if not os.path.isfile(script):
        _say(f"no such script: {script!r} (from {os.getcwd()}); nothing was started.")
        return 2
    grace = DEFAULT_GRACE if grace is None else float(grace)
    own_dir = log_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="d2lcompat-launch-") if own_dir else str(log_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in [*run_dir.glob("rank*.exit"), *run_dir.glob("rank*.pid"), *run_dir.glob("rank*.log")]:
        old.unlink()
    plan = command(os.path.abspath(_worker.__file__), [script, *args], nproc, backend, processes,
                   log_dir=str(run_dir / "launcher"))
    launch_id = uuid.uuid4().hex
    one_process = len(plan) == 1 and "D2LCOMPAT_CPU_DEVICES" in plan[0][1]
    run = _Run(run_dir, launch_id, 1 if one_process else nproc, grace)
    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    start, start_wall = time.monotonic(), time.time()
    deadline = None if timeout is None else start + timeout
    status = 0
    failed = True
    try:
        with open(run_dir / "launcher.log", "ab") as launcher_log:
            for argv, env in plan:
                env = dict(env, PYTHONUNBUFFERED="1", **{
                    MARKER: launch_id, _worker.RUN_DIR: str(run_dir), _worker.GRACE: str(grace),
                })
                run.procs.append(subprocess.Popen(
                    argv, env=env, stdin=subprocess.DEVNULL, stdout=launcher_log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                ))
        while True:
            run.pump()
            if received:
                sig = received[0]
                _say(f"got {signal.Signals(sig).name}: stopping the workers (logs in {run_dir}).")
                run.stop(sig)
                status = 128 + sig
                break
            # Whether every process ended, read before the records: a worker writes its
            # record before it exits, so a failure is never mistaken for a bare exit.
            done = all(p.poll() is not None for p in run.procs)
            first = run.first_failure()
            if first is not None:
                time.sleep(0.3)  # let a near-simultaneous death be recorded too
                first = run.first_failure() or first
                run.stop()
                rank, rc = int(first["rank"]), int(first["returncode"])
                log = run_dir / f"rank{rank}.log"
                _say(
                    f"rank {rank} failed first ({_how(rc)}, {float(first['time']) - start_wall:.1f} s "
                    f"after the start); last output: {_last_lines(log)}; full log: {log}"
                )
                status = _exit_status(rc)
                break
            if done:
                bad = [p for p in run.procs if p.returncode]
                if bad:  # the framework's launcher (or a worker wrapper) itself failed
                    rc = bad[0].returncode
                    log = run_dir / "launcher.log"
                    what = " ".join(plan[run.procs.index(bad[0])][0][1:3])
                    _say(
                        f"the process {what!r} ended ({_how(rc)}) before any worker recorded "
                        f"a failure; last output: {_last_lines(log)}; full log: {log}"
                    )
                    status = _exit_status(rc)
                else:
                    failed = False
                break
            if deadline is not None and time.monotonic() > deadline:
                _say(f"stopping the workers after --timeout {timeout} s (logs in {run_dir}).")
                run.stop()
                status = 124
                break
            time.sleep(0.1)
    finally:
        run.stop(signal.SIGKILL)  # nothing left to stop after a clean run but strays
        run.pump(final=True)
        for s, h in handlers.items():
            signal.signal(s, h)
    if not failed and own_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    return status
