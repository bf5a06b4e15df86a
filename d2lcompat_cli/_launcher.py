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

A worker that fails stops the others; ``--timeout`` bounds the whole run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

__all__ = ["command", "launch"]


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
    processes: bool = False,
) -> list[tuple[list[str], dict[str, str]]]:
    """The ``(argv, environment)`` of each process `launch` starts.

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
        return [([py, *(a.format(nproc=nproc) for a in launcher), script, *args], base)]
    return [([py, script, *args], dict(base, D2LCOMPAT_CPU_DEVICES=str(nproc)))]


def launch(
    script: str, args: Sequence[str], nproc: int, backend: str | None = None,
    processes: bool = False, timeout: float | None = None,
) -> int:
    """Start the workers (see the module's docstring) and return the first non-zero exit
    status, or 0 when every worker succeeded."""
    plan = command(script, args, nproc, backend, processes)
    procs = [subprocess.Popen(argv, env=env) for argv, env in plan]
    deadline = None if timeout is None else time.monotonic() + timeout
    status = 0
    try:
        pending = list(procs)
        while pending:
            for p in list(pending):
                rc = p.poll()
                if rc is None:
                    continue
                pending.remove(p)
                if rc != 0 and status == 0:
                    status = rc
                    for q in pending:  # one worker failed: the others would wait forever
                        q.terminate()
            if deadline is not None and time.monotonic() > deadline and pending:
                print(f"d2lcompat launch: stopping the workers after {timeout} s", file=sys.stderr)
                for q in pending:
                    q.kill()
                status = status or 124
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return status
