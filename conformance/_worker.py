"""One backend's process for the conformance runner: ``python -m d2lcompat_conformance._worker``.

The runner starts one worker per backend (``D2LCOMPAT_BACKEND`` set, and
``D2LCOMPAT_DEVICE`` when ``--device`` was given) because importing two
frameworks into one process can segfault. The worker speaks a line protocol:
one JSON object per line on the *original* standard output, which it keeps for
itself; anything a framework prints (Python or C level) goes to standard error,
so it can never corrupt the protocol. Messages, in order:

``{"type": "env", ...}``
    backend, framework version, devices, default device, Python, platform.
``{"type": "start", "id": ...}`` / ``{"type": "result", ...}``
    around every scenario, so that when the process dies the runner knows which
    scenario killed it (``start`` without ``result``).
``{"type": "xb-written"}``; ``xb-start``, ``xb`` (one per record) or ``xb-error``, ``xb-done``
    the cross-backend phase; ``xb-start`` without ``xb-done`` names the writer whose
    files crashed the reader.
``{"type": "note", "message": ...}``
    something the report should show that is not a scenario result.
``{"type": "done"}``
    the worker finished on its own.

Modes (combinable, run in this order)::

    --run [--ids MC01,PA02] [--shared DIR]   the catalogue (all IDs when --ids is absent)
    --xb-write ROOT                          xb.write_reference(ROOT/<this backend>)
    --xb-check ROOT --writer A [--writer B]  xb.check_reference(ROOT/A, "A"), ...

Examples
--------
Run two scenarios on torch and print the protocol::

    D2LCOMPAT_BACKEND=torch python -m d2lcompat_conformance._worker --run --ids MC01,PA02
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["SEEDED_INPUT_SHAPE", "main", "seeded_input"]

#: XB02's fixed input: the same numbers on every backend, built with NumPy.
SEEDED_INPUT_SHAPE = (2, 20)
SEEDED_OUTPUT_FILE = "seeded_output.npy"


def seeded_input() -> Any:
    """XB02's fixed input, a float32 NumPy array of shape `SEEDED_INPUT_SHAPE`.

    Examples
    --------
    >>> seeded_input().shape
    (2, 20)
    """
    import numpy as np

    n = SEEDED_INPUT_SHAPE[0] * SEEDED_INPUT_SHAPE[1]
    return np.linspace(-1.0, 1.0, n, dtype=np.float32).reshape(SEEDED_INPUT_SHAPE)


class _Channel:
    """The protocol stream: the process's original stdout, kept away from framework prints."""

    def __init__(self) -> None:
        sys.stdout.flush()
        # Duplicate fd 1 for the protocol, then point fd 1 at stderr: C-level prints from a
        # framework (paddle's glog, XLA) would otherwise land in the middle of a JSON line.
        self._out: IO[str] = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def send(self, kind: str, **fields: Any) -> None:
        self._out.write(json.dumps({"type": kind, **fields}, default=str) + "\n")
        self._out.flush()


def _environment() -> dict[str, Any]:
    import d2lcompat

    info = next(b for b in d2lcompat.backends() if b.active)
    return {
        "backend": info.name,
        "version": info.version,
        "devices": info.devices or [],
        "default_device": repr(d2lcompat.default_device()),
        "d2lcompat": d2lcompat.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pid": os.getpid(),
    }


def _write_seeded(shared: Path, backend: str) -> None:
    """Write this backend's IN07 digest and XB02 output into the shared folder.

    Written before the catalogue so that IN07 of a backend that runs later can compare
    against it; the runner compares all of them afterwards (XB02).
    """
    import numpy as np

    import d2lcompat
    from d2lcompat import ops

    from .scenarios.in_ import SEEDED_DIGEST_FILE, seeded_digest, seeded_net

    digest = seeded_digest()
    out = ops.to_numpy(seeded_net()(ops.tensor(seeded_input())))
    # Write to a temporary name and rename: a concurrent IN07 must never read half a file.
    tmp = shared / f".{backend}.{os.getpid()}.tmp"
    tmp.write_text(digest + "\n", encoding="utf-8")
    os.replace(tmp, shared / f"{backend}.{SEEDED_DIGEST_FILE}")
    with open(tmp, "wb") as fh:
        np.save(fh, np.asarray(out, dtype=np.float32))
    os.replace(tmp, shared / f"{backend}.{SEEDED_OUTPUT_FILE}")
    d2lcompat.seed(0)  # leave the global generator where a fresh process would have it


def _run_catalogue(chan: _Channel, ids: list[str] | None, shared: Path | None) -> None:
    from ._registry import load_all, run_scenario

    catalogue = load_all()
    unknown = [i for i in ids or [] if i not in catalogue]
    for sid in unknown:
        chan.send("note", message=f"{sid} is not in this worker's catalogue")
    for sid in [i for i in ids or list(catalogue) if i in catalogue]:
        chan.send("start", id=sid, title=catalogue[sid].title)
        result = run_scenario(sid, shared=shared)
        chan.send("result", title=catalogue[sid].title, **result.to_dict())


def _xb_write(chan: _Channel, root: Path, backend: str) -> None:
    from . import xb

    target = root / backend
    target.mkdir(parents=True, exist_ok=True)
    xb.write_reference(target)
    chan.send("xb-written", backend=backend)


def _xb_check(chan: _Channel, root: Path, writers: Sequence[str], backend: str) -> None:
    try:
        from . import xb
    except Exception as exc:  # noqa: BLE001 - an absent or broken xb module fails every pair
        for writer in writers:
            chan.send("xb-error", writer=writer, message=f"{type(exc).__name__}: {exc}")
        return
    for writer in writers:
        chan.send("xb-start", writer=writer)
        try:
            records = xb.check_reference(root / writer, writer)
        except Exception as exc:  # noqa: BLE001 - one broken writer must not hide the others
            chan.send(
                "xb-error",
                writer=writer,
                message=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}",
            )
        else:
            for rec in records:
                chan.send("xb", **{"writer": writer, "reader": backend, **rec})
        chan.send("xb-done", writer=writer)


def build_parser() -> argparse.ArgumentParser:
    """The worker's command line (private: the runner is its only caller)."""
    p = argparse.ArgumentParser(prog="python -m d2lcompat_conformance._worker")
    p.add_argument("--run", action="store_true", help="run the catalogue")
    p.add_argument("--ids", default=None, help="comma-separated scenario IDs (default: all)")
    p.add_argument("--shared", type=Path, default=None, help="folder shared by every backend")
    p.add_argument("--xb-write", type=Path, default=None, metavar="ROOT")
    p.add_argument("--xb-check", type=Path, default=None, metavar="ROOT")
    p.add_argument("--writer", action="append", default=[], help="with --xb-check (repeatable)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the requested modes in this process; the exit code is 0 unless the worker broke.

    Scenario failures are results, not errors: they never change the exit code.
    """
    args = build_parser().parse_args(argv)
    chan = _Channel()
    started = time.perf_counter()
    try:
        env = _environment()
    except Exception as exc:  # noqa: BLE001 - report why the backend cannot start at all
        chan.send("fatal", message=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
        return 3
    chan.send("env", **env)
    backend = env["backend"]
    if args.shared is not None:
        try:
            _write_seeded(args.shared, backend)
        except Exception as exc:  # noqa: BLE001 - XB02 reports it; the catalogue still runs
            chan.send("note", message=f"seeded digest not written: {type(exc).__name__}: {exc}")
    if args.run:
        ids = [i.strip() for i in args.ids.split(",") if i.strip()] if args.ids else None
        _run_catalogue(chan, ids, args.shared)
    if args.xb_write is not None:
        try:
            _xb_write(chan, args.xb_write, backend)
        except Exception as exc:  # noqa: BLE001 - every reader reports this writer as failed
            chan.send(
                "xb-write-error",
                message=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}",
            )
    if args.xb_check is not None:
        _xb_check(chan, args.xb_check, args.writer, backend)
    chan.send("done", seconds=time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
