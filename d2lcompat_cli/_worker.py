"""One worker of ``d2lcompat launch``: runs the user's script as a child process and
records how it ended (standard library only; run as a file, by path, under any launcher).

``d2lcompat launch`` starts this file in place of the script — directly (``--processes``,
one process with N devices) or under the framework's launcher (``torchrun``,
``python -m paddle.distributed.launch``), which then sets the rank variables. It

* writes the script's output (stdout and stderr) to ``<run dir>/rank<r>.log``;
* writes ``rank<r>.pid`` at once (its own pid and the script's), so the launcher can
  stop every process, whoever started it;
* forwards SIGTERM/SIGINT/SIGHUP to the script, and kills it when it has not exited
  ``D2LCOMPAT_LAUNCH_GRACE`` seconds later (a script may catch SIGTERM: JAX's runtime);
* writes ``rank<r>.exit`` (JSON: exit code or signal, time of death, whether it was
  stopped by a signal it forwarded), the record from which the launcher names the rank
  that failed first — a framework launcher's own verdict can name a rank that merely
  timed out waiting for the dead one;
* asks the kernel to kill the script when this process dies (``PR_SET_PDEATHSIG``,
  Linux), so a SIGKILL here leaves no orphan.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

RUN_DIR = "D2LCOMPAT_LAUNCH_DIR"
GRACE = "D2LCOMPAT_LAUNCH_GRACE"
RAISED = "D2LCOMPAT_LAUNCH_RAISED"
_RANK_VARS = ("D2LCOMPAT_RANK", "RANK", "PADDLE_TRAINER_ID")


def rank_from_env(env: dict[str, str] | os._Environ[str] | None = None) -> int:
    """This worker's rank: d2lcompat's variable, torchrun's, or paddle's; 0 when none is set.

    Examples
    --------
    >>> rank_from_env({"RANK": "3"}), rank_from_env({})
    (3, 0)
    """
    env = os.environ if env is None else env
    for key in _RANK_VARS:
        value = env.get(key, "").strip()
        if value.isdigit():
            return int(value)
    return 0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _write(path: str, data: dict[str, object]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: _worker.py script.py [args...]", file=sys.stderr)
        return 2
    run_dir = os.environ.get(RUN_DIR) or "."
    grace = float(os.environ.get(GRACE, "5") or 5)
    rank = rank_from_env()
    stopping: list[float] = []  # when a forwarded signal arrived

    # The moment the script's uncaught exception was raised (`parallel.init`'s hook writes
    # it): a peer that dies of the closed connection afterwards may exit first.
    raised = os.path.join(run_dir, f"rank{rank}.raised")
    with open(os.path.join(run_dir, f"rank{rank}.log"), "ab", buffering=0) as log:
        child = subprocess.Popen(
            [sys.executable, *argv], stdin=subprocess.DEVNULL, stdout=log,
            env={**os.environ, RAISED: raised},
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    _write(os.path.join(run_dir, f"rank{rank}.pid"), {"rank": rank, "worker": os.getpid(),
                                                        "script": child.pid})

    def forward(signum: int, frame: FrameType | None) -> None:
        if not stopping:
            stopping.append(time.monotonic())
            # A script that ignores the signal is killed after the grace period.
            timer = threading.Timer(grace, child.kill)
            timer.daemon = True
            timer.start()
        try:
            child.send_signal(signum)
        except OSError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    # A blocking wait: the time of death is taken the moment the script exits (a polled
    # wait would blur which of two ranks died first).
    rc = child.wait()
    died = time.time()
    try:
        with open(raised) as f:
            died = min(died, float(f.read()))
    except (OSError, ValueError):
        pass
    _write(os.path.join(run_dir, f"rank{rank}.exit"), {
        "rank": rank, "returncode": rc, "time": died, "stopped": bool(stopping),
    })
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
