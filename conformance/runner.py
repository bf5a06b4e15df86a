"""The conformance runner behind ``d2lcompat conformance``: orchestration, not scenarios.

The catalogue runs on each backend in a process of its own (``python -m
d2lcompat_conformance._worker`` with ``D2LCOMPAT_BACKEND`` set), because two
frameworks in one process can segfault. This process never imports
``d2lcompat`` (importing it would choose a backend and import its framework):
backends are discovered through `d2lcompat_spec`, and the scenario IDs are read
from the scenario sources with `ast`. The worker streams one JSON line per
result, so a worker that segfaults or hangs costs the scenario it was running,
not the rest: the runner records that scenario as ``fail`` with the exit signal
and the end of the worker's stderr, and resumes the others in a fresh worker.

Phases:

1. the catalogue, one worker per backend, at most ``--jobs`` at once; each worker
   first writes its IN07/XB02 seed digest and output into a shared folder, and
   at the end writes its XB reference files (``xb.write_reference``);
2. the XB matrix: one worker per reader backend checks every writer's files
   (``xb.check_reference``), for every ordered pair including A == A; XB02 is
   computed here from the digests and outputs of phase 1;
3. the terminal summary and the reports (`d2lcompat_conformance.report`).

Examples
--------
From the shell::

    d2lcompat conformance --backends torch,jax --report out.html --report out.json

From Python, for an adapter author (see docs/backend-authors.md)::

    from d2lcompat_conformance import check_backend
    results = check_backend("mybackend")   # raises ConformanceError on any failure
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d2lcompat_spec import (
    BackendSpec,
    PluginError,
    discover,
    install_hint,
    installed_version,
    is_installed,
)

from ._registry import GROUPS, Result, known_unsupported

__all__ = [
    "SCHEMA",
    "XB_TITLES",
    "BackendRun",
    "ConformanceError",
    "catalogue",
    "check_backend",
    "main",
]

#: The variable that chooses a process's backend; without ``--backends`` it chooses the
#: backends ``d2lcompat conformance`` runs.
ENV_BACKEND = "D2LCOMPAT_BACKEND"

#: The JSON report's format; bump the number when a field changes meaning.
SCHEMA = "d2lcompat-conformance/1"

#: The cross-backend IDs of docs/scenarios.md. XB01, XB03-XB06 come from ``xb.check_reference``;
#: XB02 is computed by the runner from the seed digests and outputs of every backend.
XB_TITLES: dict[str, str] = {
    "XB01": "a parameters file written by A loads under B and gives A's output",
    "XB02": "seed(42) + the same model: bit-identical parameters, outputs within tolerance",
    "XB03": "save()d tensors, lists and dicts written by A load under B",
    "XB04": "a trained LeNet with BatchNorm written by A predicts the same under B (running stats)",
    "XB05": "the same seed, data and Adam: the same 20-step loss curve (rtol 1e-4)",
    "XB06": "an LSTM file written by A loads under B (RN06); the same seed: the same LSTM "
    "parameters, outputs and 20-step clipped Adam curve (rtol 1e-4)",
}
XB_FILE_IDS = ("XB01", "XB03", "XB04", "XB05", "XB06")
#: XB02's tolerance on outputs: float32 matmuls of different libraries agree to ~1e-6.
XB02_RTOL, XB02_ATOL = 1e-5, 1e-6

DEFAULT_TIMEOUT = 300.0
#: Written when ``--report`` is not given (relative to the current directory).
DEFAULT_REPORTS = (
    "reports/conformance.html",
    "reports/conformance.md",
    "reports/conformance.json",
)
#: ``python -m`` target of the worker processes (tests point it at a fake worker).
WORKER_MODULE = "d2lcompat_conformance._worker"
MAX_RESTARTS = 3
STATUSES = ("pass", "fail", "unsupported")


class ConformanceError(AssertionError):
    """Raised by `check_backend` when a scenario fails or the backend cannot run at all."""


ConformanceError.__module__ = "d2lcompat_conformance"  # where adapter authors import it from


# --------------------------------------------------------------------------------------
# The catalogue, read without importing a framework


def catalogue() -> dict[str, str]:
    """Every scenario ID of the per-backend catalogue and its title, in docs/scenarios.md order.

    The scenario modules import ``d2lcompat`` (and so a framework), so this reads the
    ``@scenario("ID", "title")`` decorators from their source instead. The worker's
    own list stays authoritative: a result for an ID missing here is still reported.

    Examples
    --------
    >>> ids = catalogue()
    >>> "MC01" in ids and "PA02" in ids
    True
    """
    base = Path(__file__).resolve().parent / "scenarios"
    found: dict[str, str] = {}
    for group in GROUPS:  # the group order of docs/scenarios.md; IDs sorted within a group
        in_group: dict[str, str] = {}
        path = base / f"{group}.py"
        if not path.is_file():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for deco in node.decorator_list:
                if (
                    isinstance(deco, ast.Call)
                    and isinstance(deco.func, ast.Name)
                    and deco.func.id == "scenario"
                    and len(deco.args) >= 2
                    and all(
                        isinstance(a, ast.Constant) and isinstance(a.value, str)
                        for a in deco.args[:2]
                    )
                ):
                    in_group[deco.args[0].value] = deco.args[1].value  # type: ignore[attr-defined]
        found.update(sorted(in_group.items()))
    return found


def _select(ids: Iterable[str], only: str | None) -> list[str]:
    """The IDs matching ``--only`` (comma-separated IDs or prefixes: ``MC,IO01``)."""
    if not only:
        return list(ids)
    tokens = [t.strip().upper() for t in only.split(",") if t.strip()]
    return [i for i in ids if any(i.upper().startswith(t) for t in tokens)]


# --------------------------------------------------------------------------------------
# One backend's run


@dataclass
class BackendRun:
    """Everything the runner learnt about one requested backend."""

    name: str
    installed: bool
    extra: str
    version: str | None = None
    registered: bool = True
    env: dict[str, Any] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    xb_written: bool = False
    xb_write_error: str | None = None
    seconds: float = 0.0
    workers: int = 0
    #: Asked for (``--backends``, ``D2LCOMPAT_BACKEND``, ``--install``): missing, it fails the run.
    #: Without them every registered backend is listed and a missing one is only reported.
    requested: bool = True
    #: ``--install`` tried pip and it failed: the end of pip's output.
    install_error: str | None = None
    install_seconds: float = 0.0

    @property
    def runnable(self) -> bool:
        return self.registered and self.installed

    def missing_label(self) -> str:
        """The matrix cell of a backend that did not run: a few words."""
        if not self.registered:
            return "not registered"
        if self.install_error is not None:
            return "install failed"
        return "not installed"

    def missing_reason(self) -> str:
        """Why this backend did not run (empty when it did)."""
        if not self.registered:
            known = next((n for n in self.notes if n.startswith("registered backends")), "")
            return f"{self.name!r} is not a registered d2lcompat backend" + (
                f" ({known})" if known else ""
            )
        if self.install_error is not None:
            return (
                f"could not be installed on this machine ({self.install_error}); "
                f"install by hand: {install_hint(self.extra)}"
            )
        if not self.installed:
            return f"not installed: {install_hint(self.extra)}"
        return ""


@dataclass
class _Exit:
    returncode: int | None
    timed_out: bool
    stderr_tail: str
    seconds: float

    def describe(self, timeout: float) -> str:
        if self.timed_out:
            what = f"the worker was silent for {timeout:g} s and was killed (timeout)"
        elif self.returncode is not None and self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            what = f"the worker died with {name}"
        else:
            what = f"the worker exited with code {self.returncode}"
        tail = self.stderr_tail.strip()
        return what + (f"; end of its stderr:\n{tail}" if tail else "")


def _worker_env(backend: str, device: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["D2LCOMPAT_BACKEND"] = backend
    if device:
        env["D2LCOMPAT_DEVICE"] = device
    # Framework log chatter goes to stderr, of which only the tail is kept: keep it useful.
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("PYTHONFAULTHANDLER", "1")  # a segfault prints the Python stack to stderr
    return env


def _stream_worker(
    args: Sequence[str],
    env: dict[str, str],
    timeout: float,
    on_message: Callable[[dict[str, Any]], None],
) -> _Exit:
    """Start one worker, hand every protocol message to ``on_message``, return how it ended.

    ``timeout`` bounds the silence between two messages (one scenario, or the
    framework's import), not the whole run.
    """
    cmd = [sys.executable, "-m", WORKER_MODULE, *args]
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                timed_out = True
                proc.kill()
                break
            if line is None:
                break
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue  # the worker keeps stdout for the protocol; be lenient anyway
            if isinstance(msg, dict):
                on_message(msg)
        rc = proc.wait()
        reader.join(timeout=5)
        err.seek(0)
        tail = err.read()[-3000:].decode("utf-8", errors="replace")
    return _Exit(rc, timed_out, tail, time.perf_counter() - start)


def _record(msg: dict[str, Any], titles: dict[str, str]) -> dict[str, Any]:
    """A worker's result message as one JSON-report record."""
    details = msg.get("extra") or {}
    return {
        "id": msg["id"],
        "title": msg.get("title") or titles.get(msg["id"], ""),
        "backend": msg["backend"],
        "status": msg["status"],
        "message": msg.get("message", ""),
        "duration": float(msg.get("duration", 0.0)),
        "device": msg.get("device", ""),
        "details": details,
    }


def _fail(sid: str, run: BackendRun, titles: dict[str, str], message: str) -> dict[str, Any]:
    return {
        "id": sid,
        "title": titles.get(sid, ""),
        "backend": run.name,
        "status": "fail",
        "message": message,
        "duration": 0.0,
        "device": run.env.get("default_device", ""),
        "details": {},
    }


def run_backend(
    run: BackendRun,
    ids: list[str],
    titles: dict[str, str],
    *,
    device: str | None = None,
    shared: Path | None = None,
    xb_root: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    on_event: Callable[[str, BackendRun, dict[str, Any]], None] | None = None,
) -> BackendRun:
    """Run ``ids`` on one backend in worker processes; fills ``run`` and returns it.

    A worker that dies or hangs costs only the scenario it was running: the others
    resume in a fresh worker, at most `MAX_RESTARTS` times, after which the rest are
    recorded as ``fail`` with the reason.
    """
    env = _worker_env(run.name, device)
    pending = list(ids)
    want_xb = xb_root is not None
    start = time.perf_counter()
    current: list[str] = []  # the scenario between its "start" and its "result"

    def handle(msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "env":
            run.env = {k: v for k, v in msg.items() if k != "type"}
            run.version = run.env.get("version") or run.version
        elif kind == "start":
            current[:] = [msg["id"]]
        elif kind == "result":
            rec = _record(msg, titles)
            run.results[rec["id"]] = rec
            if rec["id"] in pending:
                pending.remove(rec["id"])
            current.clear()
        elif kind == "note":
            run.notes.append(str(msg.get("message", "")))
        elif kind == "fatal":
            run.error = str(msg.get("message", ""))
        elif kind == "xb-written":
            run.xb_written = True
        elif kind == "xb-write-error":
            run.xb_write_error = str(msg.get("message", ""))
        if on_event is not None:
            on_event(str(kind), run, msg)

    while True:
        current.clear()
        args: list[str] = []
        if pending:
            args += ["--run", "--ids", ",".join(pending)]
        if shared is not None:
            args += ["--shared", str(shared)]
        if want_xb:
            args += ["--xb-write", str(xb_root)]
        run.workers += 1
        ended = _stream_worker(args, env, timeout, handle)
        if ended.returncode == 0 and not ended.timed_out and run.error is None:
            # A worker that ends on its own and skipped IDs does not know them (a catalogue
            # out of step with this runner); a restart would skip them again.
            for sid in pending:
                run.results[sid] = _fail(
                    sid, run, titles, "the worker has no scenario with this ID"
                )
            pending.clear()
            if want_xb and not run.xb_written and run.xb_write_error is None:
                run.xb_write_error = "the worker ended without writing the XB reference files"
            break
        reason = ended.describe(timeout)
        if run.error is not None or not run.env:
            # The backend cannot even start: every scenario fails with the same reason.
            run.error = run.error or reason
            for sid in pending:
                run.results[sid] = _fail(
                    sid, run, titles, f"the backend failed to start: {run.error}"
                )
            pending.clear()
            if want_xb and not run.xb_written:
                run.xb_write_error = (
                    run.xb_write_error or f"the backend failed to start: {run.error}"
                )
            break
        if current:
            sid = current[0]
            run.results[sid] = _fail(sid, run, titles, f"{sid} crashed the worker: {reason}")
            pending.remove(sid)
        elif not pending and want_xb and not run.xb_written:
            run.xb_write_error = f"writing the XB reference files crashed the worker: {reason}"
            break
        if run.workers > MAX_RESTARTS:
            for sid in pending:
                run.results[sid] = _fail(
                    sid,
                    run,
                    titles,
                    f"not run: the worker crashed {run.workers} times; the last time {reason}",
                )
            pending.clear()
            if want_xb and not run.xb_written:
                run.xb_write_error = run.xb_write_error or f"not written: {reason}"
            break
        run.notes.append(f"worker restarted after: {reason.splitlines()[0]}")
    run.seconds = time.perf_counter() - start
    return run


# --------------------------------------------------------------------------------------
# The cross-backend phase


def _xb_failures(
    writer: str, reader: str, ids: Sequence[str], message: str
) -> list[dict[str, Any]]:
    return [
        {
            "id": sid,
            "title": XB_TITLES.get(sid, ""),
            "writer": writer,
            "reader": reader,
            "status": "fail",
            "message": message,
        }
        for sid in ids
    ]


def _xb_check(
    reader: BackendRun,
    writers: Sequence[BackendRun],
    xb_root: Path,
    *,
    device: str | None,
    timeout: float,
    on_event: Callable[[str, BackendRun, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``xb.check_reference`` in ``reader``'s process for every writer's files."""
    records: list[dict[str, Any]] = []
    ready = [w.name for w in writers if w.xb_written]
    for w in writers:
        if not w.xb_written:
            why = w.xb_write_error or w.error or "the writer did not run"
            records += _xb_failures(
                w.name,
                reader.name,
                XB_FILE_IDS,
                f"{w.name} could not write its reference files: {why}",
            )
    pending = list(ready)
    attempts = 0
    current: list[str] = []  # the writer between its "xb-start" and its "xb-done"
    done: set[str] = set()

    def handle(msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "xb-start":
            current[:] = [msg["writer"]]
        elif kind == "xb":
            sid = str(msg.get("id"))
            rec = {
                "id": sid,
                "title": msg.get("title") or XB_TITLES.get(sid, ""),
                "writer": msg.get("writer"),
                "reader": msg.get("reader", reader.name),
                "status": msg.get("status", "fail"),
                "message": msg.get("message", ""),
            }
            rec.update({k: v for k, v in msg.items() if k not in rec and k != "type"})
            records.append(rec)
        elif kind == "xb-error":
            records.extend(
                _xb_failures(msg["writer"], reader.name, XB_FILE_IDS, str(msg.get("message", "")))
            )
        elif kind == "xb-done":
            done.add(msg["writer"])
            current.clear()
        if kind in ("xb-start", "xb-done") and on_event is not None:
            on_event(str(kind), reader, msg)

    while pending:
        current.clear()
        args = ["--xb-check", str(xb_root)]
        for name in pending:
            args += ["--writer", name]
        attempts += 1
        ended = _stream_worker(args, _worker_env(reader.name, device), timeout, handle)
        if ended.returncode == 0 and not ended.timed_out and done >= set(pending):
            break
        reason = ended.describe(timeout)
        crashed = current[0] if current else None
        if crashed is not None:
            records.extend(
                _xb_failures(
                    crashed,
                    reader.name,
                    XB_FILE_IDS,
                    f"checking {crashed}'s files crashed {reader.name}'s worker: {reason}",
                )
            )
        pending = [name for name in pending if name not in done and name != crashed]
        if crashed is None or attempts > MAX_RESTARTS:
            for name in pending:
                records.extend(
                    _xb_failures(name, reader.name, XB_FILE_IDS, f"not checked: {reason}")
                )
            break
    return records


def _xb02(runs: Sequence[BackendRun], shared: Path) -> list[dict[str, Any]]:
    """XB02 for every ordered pair, from the digests and outputs each worker left in ``shared``."""
    import numpy as np

    digest: dict[str, str | None] = {}
    output: dict[str, Any] = {}
    for r in runs:
        d = shared / f"{r.name}.seeded_parameters.sha256"
        o = shared / f"{r.name}.seeded_output.npy"
        digest[r.name] = d.read_text(encoding="utf-8").strip() if d.is_file() else None
        output[r.name] = np.load(o) if o.is_file() else None
    records = []
    for a in runs:
        for b in runs:
            problems = []
            for r in (a,) if a is b else (a, b):
                if digest[r.name] is None or output[r.name] is None:
                    why = next((x for x in r.notes if "seeded" in x), r.error or "")
                    problems.append(
                        f"{r.name} wrote no seeded digest/output"
                        + (f" ({why.splitlines()[0]})" if why else "")
                    )
            if not problems:
                if digest[a.name] != digest[b.name]:
                    problems.append(
                        f"the seeded parameters differ: {a.name} {digest[a.name][:12]}… vs "  # type: ignore[index]
                        f"{b.name} {digest[b.name][:12]}…"  # type: ignore[index]
                    )
                oa, ob = output[a.name], output[b.name]
                if oa.shape != ob.shape:
                    problems.append(f"output shapes differ: {oa.shape} vs {ob.shape}")
                elif not np.allclose(oa, ob, rtol=XB02_RTOL, atol=XB02_ATOL):
                    err = float(np.max(np.abs(oa.astype(np.float64) - ob)))
                    problems.append(
                        f"outputs differ by up to {err:.3g} (rtol={XB02_RTOL:g}, atol={XB02_ATOL:g})"
                    )
            records.append(
                {
                    "id": "XB02",
                    "title": XB_TITLES["XB02"],
                    "writer": a.name,
                    "reader": b.name,
                    "status": "fail" if problems else "pass",
                    "message": "; ".join(problems),
                }
            )
    return records


# --------------------------------------------------------------------------------------
# Backends to run


def _resolve(requested: str | None) -> tuple[list[BackendRun], dict[str, BackendSpec]]:
    """The backends to run: the requested ones (missing ones kept, marked), else every
    registered one, the ones not installed kept as columns that say so."""
    specs = discover()
    if requested:
        names = list(dict.fromkeys(n.strip().lower() for n in requested.split(",") if n.strip()))
    else:
        names = list(specs)
    runs = []
    for n in names:
        spec = specs.get(n)
        if spec is None:
            run = BackendRun(n, installed=False, extra=n, registered=False)
            run.notes.append(f"registered backends: {', '.join(specs) or 'none'}")
            runs.append(run)
        else:
            runs.append(
                BackendRun(
                    n,
                    installed=is_installed(spec),
                    extra=spec.extra,
                    version=installed_version(spec),
                    requested=bool(requested),
                )
            )
    return runs, specs


#: A backend whose pinned build is not on PyPI, and the index that has it: constraints.txt
#: pins torch's CPU build (``torch==X+cpu``), which PyTorch publishes on its own index.
EXTRA_INDEX = {"torch": "https://download.pytorch.org/whl/cpu"}

#: The installer ``--install`` runs (tests point it at a fake).
PIP: list[str] = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]


def _pip_error(output: str) -> str:
    """The lines of pip's output that say why it failed (its ``ERROR:`` lines), else its end."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR:")]
    picked = errors[-2:] or lines[-2:] or ["pip failed without output"]
    return " ".join(picked)[:600]


def install_missing(
    runs: Sequence[BackendRun],
    specs: dict[str, BackendSpec],
    *,
    constraints: Path | None,
    console: Any,
) -> float:
    """``--install``: pip-install the framework of every registered backend that is not
    installed, one backend at a time, into this environment, pinned by ``constraints``.

    The requirement is ``d2lcompat[<extra>]``: with d2lcompat installed, pip adds only the
    extra's packages. A backend pip cannot install keeps its column, with pip's reason
    (`BackendRun.install_error`), and the others go on. Returns the seconds spent.
    """
    from rich.markup import escape

    total = time.perf_counter()
    for run in runs:
        if not run.registered or run.installed:
            continue
        run.requested = True  # asked to be installed: if it cannot be, the run fails
        cmd = [*PIP, f"d2lcompat[{run.extra}]"]
        if constraints is not None:
            cmd += ["-c", str(constraints)]
        console.print(
            f"installing {run.name}: pip install {escape(' '.join(cmd[len(PIP):]))}", soft_wrap=True
        )
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0 and run.name in EXTRA_INDEX:
            cmd += ["--extra-index-url", EXTRA_INDEX[run.name]]
            console.print(
                f"  retrying with --extra-index-url {EXTRA_INDEX[run.name]}", soft_wrap=True
            )
            proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        run.install_seconds = time.perf_counter() - start
        importlib.invalidate_caches()
        spec = specs.get(run.name)
        if proc.returncode == 0 and spec is not None and is_installed(spec):
            run.installed = True
            run.version = installed_version(spec)
            console.print(f"  {run.name} {run.version} installed in {run.install_seconds:.0f} s")
        else:
            run.install_error = (
                _pip_error(proc.stdout + "\n" + proc.stderr)
                if proc.returncode != 0
                else f"pip succeeded but {spec.module if spec else run.name!r} still cannot be imported"
            )
            console.print(
                f"  [red]{run.name} could not be installed[/] ({run.install_seconds:.0f} s): "
                f"{escape(run.install_error)}",
                soft_wrap=True,
            )
    return time.perf_counter() - total


# --------------------------------------------------------------------------------------
# The report model (plain dicts: what the JSON report holds, and what report.py renders)


def _counts(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys(STATUSES, 0)
    for r in records:
        out[r["status"]] = out.get(r["status"], 0) + 1
    return out


def build_report(
    runs: Sequence[BackendRun],
    titles: dict[str, str],
    ids: Sequence[str],
    xb: Sequence[dict[str, Any]],
    *,
    device: str | None,
    seconds: float,
    command: str,
    install_seconds: float = 0.0,
) -> dict[str, Any]:
    """Assemble the report (the JSON document; the other formats render it)."""
    results = [r.results[sid] for r in runs for sid in ids if sid in r.results]
    extra_ids = sorted({rec["id"] for r in runs for rec in r.results.values()} - set(ids))
    results += [r.results[sid] for r in runs for sid in extra_ids if sid in r.results]
    xb_ids = sorted({rec["id"] for rec in xb})
    all_ids = [*ids, *extra_ids]
    try:
        version = importlib.metadata.version("d2lcompat")
    except importlib.metadata.PackageNotFoundError:
        version = None
    backends_env: dict[str, Any] = {}
    for r in runs:
        backends_env[r.name] = {
            "registered": r.registered,
            "installed": r.installed,
            "extra": r.extra,
            "install": install_hint(r.extra) if r.registered else None,
            "version": r.version,
            "devices": r.env.get("devices", []),
            "default_device": r.env.get("default_device"),
            "python": r.env.get("python"),
            "platform": r.env.get("platform"),
            "error": r.error if r.runnable else r.missing_reason(),
            "missing": None if r.runnable else r.missing_label(),
            "install_error": r.install_error,
            "install_seconds": round(r.install_seconds, 3),
            "notes": r.notes,
            "seconds": round(r.seconds, 3),
            "workers": r.workers,
        }
    summary_backends = {
        r.name: _counts(rec for rec in results if rec["backend"] == r.name)
        for r in runs
        if r.runnable
    }
    missing = [r.name for r in runs if not r.runnable and r.requested]
    xb_counts = _counts(xb)
    failed = sum(c["fail"] for c in summary_backends.values()) + xb_counts["fail"]
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "duration": round(seconds, 3),
        "ok": failed == 0 and not missing,
        "environment": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "d2lcompat": version,
            "device": device,
            "backends": backends_env,
            "install_seconds": round(install_seconds, 3),
        },
        "backends": [r.name for r in runs],
        "scenarios": [{"id": sid, "title": titles.get(sid, "")} for sid in all_ids]
        + [{"id": sid, "title": XB_TITLES.get(sid, "")} for sid in xb_ids],
        "results": results,
        "unsupported": {r.name: known_unsupported(r.name) for r in runs if r.registered},
        "xb": list(xb),
        "summary": {
            "backends": summary_backends,
            "xb": xb_counts,
            "missing": missing,
            "not_run": [r.name for r in runs if not r.runnable],
            "failed": failed,
        },
    }


# --------------------------------------------------------------------------------------
# The terminal


_STYLE = {
    "pass": ("pass", "green"),
    "fail": ("FAIL", "bold red"),
    "unsupported": ("unsup.", "yellow"),
}


def print_summary(report: dict[str, Any], console: Any) -> None:
    """The scenario × backend matrix, the failures with their messages, and the XB matrix."""
    from rich.markup import escape
    from rich.table import Table

    runnable = [b for b in report["backends"] if b in report["summary"]["backends"]]
    # A backend that did not run keeps its column ("n/a"), explained under the table.
    columns = list(report["backends"])
    by_key = {(r["id"], r["backend"]): r for r in report["results"]}
    ids = [s["id"] for s in report["scenarios"] if not s["id"].startswith("XB")]
    # The titles only help when there is room: on a narrow terminal (or a CI log, 80
    # columns) the status columns must not be squeezed into ellipses.
    need = len("scenario") + 4 + sum(max(len(b), 6) + 3 for b in columns)  # + padding, borders
    with_titles = console.width >= need + 28
    table = Table(title="d2lcompat conformance", show_lines=False)
    table.add_column("scenario", style="bold", no_wrap=True)
    if with_titles:
        table.add_column(
            "title", max_width=min(60, console.width - need - 3), overflow="ellipsis", no_wrap=True
        )
    for b in columns:
        table.add_column(b, justify="center", no_wrap=True)
    for sid in ids:
        cells = []
        for b in columns:
            rec = by_key.get((sid, b))
            if b not in runnable:
                cells.append("[dim]n/a[/]")
            elif rec is None:
                cells.append("[dim]-[/]")
            else:
                text, style = _STYLE.get(rec["status"], (rec["status"], ""))
                cells.append(f"[{style}]{text}[/]")
        title = next((s["title"] for s in report["scenarios"] if s["id"] == sid), "")
        table.add_row(sid, *([escape(title)] if with_titles else []), *cells)
    table.add_section()
    for status in STATUSES:
        text, style = _STYLE[status]
        label = [status] if with_titles else []
        table.add_row(
            text if not with_titles else "",
            *label,
            *[
                f"[{style}]{report['summary']['backends'][b][status]}[/]"
                if b in runnable
                else "[dim]-[/]"
                for b in columns
            ],
        )
    if runnable:  # with no backend that ran, the matrix would be an empty frame
        console.print(table)

    for b, info in report["environment"]["backends"].items():
        if not (info["registered"] and info["installed"]):
            style = "bold red" if b in report["summary"]["missing"] else "bold yellow"
            label = " (n/a above)" if runnable else ""
            console.print(
                f"[{style}]{b}[/]{label}: {escape(info['error'] or 'not available')}",
                soft_wrap=True,  # an install command is never cut
            )
        elif info.get("error"):
            console.print(f"[bold red]{b} failed to start[/]: {escape(info['error'])}")

    failures = [r for r in report["results"] if r["status"] == "fail"]
    if failures:
        console.print(f"\n[bold red]{len(failures)} failure(s)[/]")
        for r in failures:
            lines = r["message"].strip().splitlines() or [""]
            console.print(f"[bold]{r['id']}[/] on [bold]{r['backend']}[/]: {escape(lines[0])}")
            for line in lines[1:4]:
                console.print(f"    [dim]{escape(line)}[/]")

    xb = report["xb"]
    if xb:
        names = list(dict.fromkeys([*(x["writer"] for x in xb), *(x["reader"] for x in xb)]))
        t = Table(title="XB: row writes, column reads (passed/checked)")
        t.add_column("writer \\ reader", style="bold")
        for n in names:
            t.add_column(n, justify="center")
        for w in names:
            row = []
            for rd in names:
                cell = [x for x in xb if x["writer"] == w and x["reader"] == rd]
                ok = sum(x["status"] == "pass" for x in cell)
                bad = sum(x["status"] == "fail" for x in cell)
                style = "red" if bad else ("green" if ok else "yellow")
                row.append(f"[{style}]{ok}/{len(cell)}[/]" if cell else "[dim]-[/]")
            t.add_row(w, *row)
        console.print(t)
        for x in (x for x in xb if x["status"] == "fail"):
            first = (x["message"].strip().splitlines() or [""])[0]
            console.print(f"[bold]{x['id']}[/] {x['writer']} -> {x['reader']}: {escape(first)}")

    verdict = "[bold green]all passed[/]" if report["ok"] else "[bold red]not conformant[/]"
    s = report["summary"]
    not_run = [b for b in s.get("not_run", []) if b not in s["missing"]]
    installing = report["environment"].get("install_seconds") or 0.0
    console.print(
        f"{verdict}: {s['failed']} failure(s) on {len(runnable)} of {len(columns)} backend(s)"
        + (f", missing backend(s): {', '.join(s['missing'])}" if s["missing"] else "")
        + (f", not installed: {', '.join(not_run)}" if not_run else "")
        + (
            f"; wall time {installing + report['duration']:.1f} s "
            f"(installing {installing:.1f} s, running {report['duration']:.1f} s)"
            if installing
            else f"; wall time {report['duration']:.1f} s"
        )
    )


# --------------------------------------------------------------------------------------
# Entry points


def _jobs_default() -> int:
    # Each worker imports a whole framework (hundreds of MB, one core busy): one per core.
    return max(1, min(4, os.cpu_count() or 1))


def _run(
    runs: list[BackendRun],
    ids: list[str],
    titles: dict[str, str],
    *,
    device: str | None,
    jobs: int,
    timeout: float,
    xb_ids: list[str],
    work: Path,
    progress: Any | None,
) -> list[dict[str, Any]]:
    """Phases 1 and 2 over ``runs``; fills each run, returns the XB records."""
    shared = work / "shared"
    xb_root = work / "xb"
    shared.mkdir()
    xb_root.mkdir()
    want_xb = bool(set(xb_ids) & set(XB_FILE_IDS))
    todo = [r for r in runs if r.runnable]
    tasks: dict[str, Any] = {}
    lock = threading.Lock()

    def on_event(kind: str, run: BackendRun, msg: dict[str, Any]) -> None:
        if progress is None:
            return
        with lock:
            task = tasks[run.name]
            fails = sum(r["status"] == "fail" for r in run.results.values())
            mark = f" [red]✗{fails}[/]" if fails else ""
            if kind == "start":
                progress.update(task, description=f"{run.name:<10} {msg['id']}{mark}")
            elif kind == "result":
                progress.update(task, advance=1, description=f"{run.name:<10} {msg['id']}{mark}")
            elif kind == "xb-start":
                progress.update(task, description=f"{run.name:<10} XB reads {msg['writer']}")
            elif kind == "xb-done":
                progress.update(task, advance=1)

    if progress is not None:
        for r in todo:
            tasks[r.name] = progress.add_task(f"{r.name:<10} starting", total=len(ids) or 1)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [
            pool.submit(
                run_backend,
                r,
                ids,
                titles,
                device=device,
                shared=shared,
                xb_root=xb_root if want_xb else None,
                timeout=timeout,
                on_event=on_event,
            )
            for r in todo
        ]
        for f in futures:
            f.result()
    if progress is not None:
        for r in todo:
            fails = sum(x["status"] == "fail" for x in r.results.values())
            progress.update(
                tasks[r.name],
                completed=len(ids) or 1,
                description=f"{r.name:<10} done" + (f" [red]✗{fails}[/]" if fails else ""),
            )

    records: list[dict[str, Any]] = []
    started = [r for r in todo if r.error is None]
    if want_xb and todo:
        if progress is not None:
            for r in started:
                tasks[r.name] = progress.add_task(f"{r.name:<10} XB", total=len(todo))
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            checks = [
                pool.submit(
                    _xb_check, r, todo, xb_root, device=device, timeout=timeout, on_event=on_event
                )
                for r in started
            ]
            for check in checks:
                records += check.result()
        for r in todo:
            if r.error is not None:
                for w in todo:
                    records += _xb_failures(
                        w.name, r.name, XB_FILE_IDS, f"{r.name} failed to start: {r.error}"
                    )
        if progress is not None:
            for r in started:
                progress.update(
                    tasks[r.name], completed=len(todo), description=f"{r.name:<10} XB done"
                )
    if "XB02" in xb_ids and todo:
        records += _xb02(todo, shared)
    order = {n: i for i, n in enumerate(r.name for r in runs)}
    records = [x for x in records if x["id"] in xb_ids]
    records.sort(key=lambda x: (x["id"], order.get(x["writer"], 99), order.get(x["reader"], 99)))
    return records


def main(args: argparse.Namespace) -> int:
    """``d2lcompat conformance``: run, summarise, write the reports; the exit code.

    Parameters
    ----------
    args : argparse.Namespace
        ``backends`` (comma-separated or None), ``device``, ``report`` (list of paths),
        ``only``, ``no_xb``, and optionally ``jobs`` and ``timeout``.

    Returns
    -------
    int
        0 when every scenario passed or is a known divergence and every requested
        backend ran; 1 when any failed or a requested backend is missing; 2 on a
        usage error.

    Examples
    --------
    >>> import argparse
    >>> ns = argparse.Namespace(backends="torch", device=None, report=["out.json"],
    ...                         only="MC01", no_xb=True)
    >>> main(ns)  # doctest: +SKIP
    0
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import report as reports

    console = Console()
    reports_out = [Path(p) for p in (getattr(args, "report", None) or DEFAULT_REPORTS)]
    bad = [str(p) for p in reports_out if p.suffix.lower() not in reports.WRITERS]
    if bad:
        console.print(
            f"[red]Unknown report format: {', '.join(bad)}; use "
            f"{', '.join(sorted(reports.WRITERS))}.[/]"
        )
        return 2
    requested = getattr(args, "backends", None)
    from_env = os.environ.get(ENV_BACKEND, "").strip()
    if not requested and from_env:
        # The variable chooses the backend of a d2lcompat process; here it chooses the
        # backends to run, so that `D2LCOMPAT_BACKEND=x d2lcompat conformance` checks x.
        requested = from_env
        console.print(
            f"{ENV_BACKEND}={escape(from_env)}: running that backend only "
            "(--backends chooses others; unset the variable to run every installed one)"
        )
    try:
        runs, specs = _resolve(requested)
    except PluginError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        return 2
    install_seconds = 0.0
    if getattr(args, "install", False):
        constraints = getattr(args, "constraints", None)
        if constraints is None and Path("constraints.txt").is_file():
            constraints = "constraints.txt"  # run in the d2lcompat checkout
        install_seconds = install_missing(
            runs, specs, constraints=Path(constraints) if constraints else None, console=console
        )
    if not any(r.runnable for r in runs) and not any(r.requested for r in runs):
        console.print(
            "[red]No d2lcompat backend is installed.[/] Install one from the d2lcompat "
            "checkout, e.g. "
            + ", ".join(escape(install_hint(s.extra)) for s in specs.values())
        )
        return 1
    titles = catalogue()
    only = getattr(args, "only", None)
    ids = _select(titles, only)
    xb_ids = [] if getattr(args, "no_xb", False) else _select(XB_TITLES, only)
    if not ids and not xb_ids:
        console.print(f"[red]--only {only!r} matches no scenario ID.[/]")
        return 2
    device = getattr(args, "device", None)
    jobs = int(getattr(args, "jobs", None) or _jobs_default())
    timeout = float(getattr(args, "timeout", None) or DEFAULT_TIMEOUT)
    # A requested backend that cannot run is reported once, by print_summary.

    start = time.perf_counter()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with tempfile.TemporaryDirectory(prefix="d2lc-conformance-") as work, progress:
        xb = _run(
            runs,
            ids,
            titles,
            device=device,
            jobs=jobs,
            timeout=timeout,
            xb_ids=xb_ids,
            work=Path(work),
            progress=progress,
        )
    report = build_report(
        runs,
        titles,
        ids,
        xb,
        device=device,
        seconds=time.perf_counter() - start,
        command=" ".join(["d2lcompat", *sys.argv[1:]]) if sys.argv else "",
        install_seconds=install_seconds,
    )
    print_summary(report, console)
    for path in reports_out:
        reports.write(report, path)
        console.print(f"report written: {escape(str(path.resolve()))}", soft_wrap=True)
    return 0 if report["ok"] else 1


def check_backend(
    name: str,
    ids: Sequence[str] | None = None,
    *,
    device: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    raise_on_failure: bool = True,
) -> list[Result]:
    """Run the whole catalogue (or ``ids``) against backend ``name`` in a subprocess.

    The one call an adapter author needs: the adapter must be installed and
    registered under the entry-point group ``d2lcompat.backends``. Known divergences
    come from ``unsupported/<name>.toml``. Safe to call from a process that has
    already imported a framework: the scenarios run in a fresh process.

    Parameters
    ----------
    name : str
        The backend's registered name (the value of ``D2LCOMPAT_BACKEND``).
    ids : sequence of str, optional
        Scenario IDs or prefixes (``["MC", "IO04"]``); default: the whole catalogue.
    device : str, optional
        Default device for every scenario (``"gpu:0"``), as ``--device``.
    timeout : float
        Seconds a worker may stay silent before it is killed.
    raise_on_failure : bool
        Raise `ConformanceError` listing the failures (the default), or return them.

    Returns
    -------
    list of Result
        One per scenario, in ID order.

    Raises
    ------
    ConformanceError
        When ``name`` is not registered or not installed, or (with ``raise_on_failure``)
        when any scenario fails.

    Examples
    --------
    >>> from d2lcompat_conformance import check_backend
    >>> [r.status for r in check_backend("torch", ["MC01"])]  # doctest: +SKIP
    ['pass']
    """
    runs, _ = _resolve(name)
    run = runs[0]
    if not run.runnable:
        raise ConformanceError(f"Cannot check backend {name!r}: {run.missing_reason()}.")
    titles = catalogue()
    selected = _select(titles, ",".join(ids)) if ids else list(titles)
    with tempfile.TemporaryDirectory(prefix="d2lc-check-") as work:
        run_backend(run, selected, titles, device=device, shared=Path(work), timeout=timeout)
    if run.error is not None and raise_on_failure:
        raise ConformanceError(f"Backend {name!r} failed to start: {run.error}")
    results = [
        Result(
            rec["id"],
            rec["backend"],
            rec["status"],
            rec["message"],
            rec["duration"],
            rec["device"],
            rec["details"],
        )
        for rec in sorted(run.results.values(), key=lambda r: r["id"])
    ]
    failed = [r for r in results if r.status == "fail"]
    if failed and raise_on_failure:
        lines = [f"  {r.id}: {(r.message.strip().splitlines() or [''])[0]}" for r in failed]
        raise ConformanceError(
            f"{len(failed)} of {len(results)} scenario(s) fail on backend {name!r}:\n"
            + "\n".join(lines)
            + f"\nFix the adapter, or list a real limitation in unsupported/{name}.toml."
        )
    return results
