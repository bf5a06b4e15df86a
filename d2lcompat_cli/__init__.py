"""The ``d2lcompat`` command: ``info``, ``conformance``, ``convert``, ``launch``.

This launcher lives outside the ``d2lcompat`` package on purpose: importing
anything inside ``d2lcompat`` chooses a backend and imports its framework.
``conformance`` orchestrates one subprocess per backend and never imports a
framework itself, so it works even where the default backend is broken;
``info`` and ``convert`` import ``d2lcompat`` (one backend) when they run;
``launch`` imports no framework either: it starts the workers (see `_launch`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import types
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def _is_d2lcompat_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a `d2lcompat.D2LCompatError` (or a plugin error of
    `d2lcompat_spec`), told apart without importing ``d2lcompat``: importing it would
    choose a backend, and may be the very thing that failed."""
    for cls in type(exc).__mro__:
        if (cls.__module__, cls.__name__) in {
            ("d2lcompat", "D2LCompatError"),
            ("d2lcompat_spec", "PluginError"),
        }:
            return True
    return False


def _version() -> str:
    try:
        return importlib.metadata.version("d2lcompat")
    except importlib.metadata.PackageNotFoundError:  # a bare source tree on PYTHONPATH
        return "unknown (not installed)"


def _table(rows: list[list[str]], width: int, wrap: Sequence[int]) -> list[str]:
    """Plain text columns, two spaces apart. When the lines would be wider than
    ``width``, only the columns ``wrap`` narrow (the widest first, down to 6) and wrap:
    the others, the install command above all, are never cut."""
    import textwrap

    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    total = sum(widths) + 2 * (len(widths) - 1)
    while total > width:
        col = max(wrap, key=lambda i: widths[i])
        if widths[col] <= 6:
            break
        widths[col] -= 1
        total -= 1
    lines = []
    for n, row in enumerate(rows):
        cells = [
            textwrap.wrap(c, widths[i], break_on_hyphens=False) or [""] if i in wrap else [c]
            for i, c in enumerate(row)
        ]
        for k in range(max(map(len, cells))):
            parts = [(c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths)]
            lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("─" * min(width, total))
    return lines


def _info(args: argparse.Namespace) -> int:
    """The backends, their versions and devices; works even when no backend can load."""
    import os
    import shutil

    from d2lcompat_spec import discover, install_hint, installed_version, is_installed

    d2lcompat: types.ModuleType | None = None
    try:
        import d2lcompat as loaded
    except ImportError as exc:  # BackendError: a broken D2LCOMPAT_BACKEND or adapter
        if not _is_d2lcompat_error(exc):
            raise
        problem: str | None = str(exc)
        title = "d2lcompat — no backend in use"
    else:
        d2lcompat, problem = loaded, None
        title = f"d2lcompat {loaded.__version__} — backend in use: {loaded.backend()}"

    if d2lcompat is not None:
        found = [
            (b.name + (" *" if b.active else ""), b.installed, b.version, b.devices, b.extra)
            for b in d2lcompat.backends()
        ]
    else:
        found = [
            (s.name, is_installed(s), installed_version(s), None, s.extra)
            for s in discover().values()
        ]
    rows = [["backend", "installed", "devices", "install with"]]
    for name, installed, version, devices, extra in found:
        # Devices are listed for the backend in use only: listing another backend's
        # would import a second framework into this process.
        rows.append([
            name,
            (version or "yes") if installed else "no",
            ", ".join(devices) if devices is not None else "-",
            install_hint(extra),
        ])
    width = shutil.get_terminal_size((80, 24)).columns  # COLUMNS, else the terminal's
    print(title)
    print("\n".join(_table(rows, width, wrap=(1, 2))))
    if d2lcompat is None:
        print(f"d2lcompat info: BackendError: {problem}", file=sys.stderr)
        if os.environ.get("D2LCOMPAT_BACKEND", "").strip():
            print(
                "fix: set D2LCOMPAT_BACKEND to an installed backend listed above, or unset it.",
                file=sys.stderr,
            )
        return 1
    print("* in use (its devices only). Install in a d2lcompat checkout, in a venv.")
    print(f"default device: {d2lcompat.default_device()!r}")
    return 0


def _conformance(args: argparse.Namespace) -> int:
    from d2lcompat_conformance.runner import main as run

    return run(args)


def _convert(args: argparse.Namespace) -> int:
    from d2lcompat._io import convert_cli  # imports the chosen backend

    return convert_cli(args)


def _launch(args: argparse.Namespace) -> int:
    from ._launcher import launch

    return launch(
        args.script, args.args, nproc=args.nproc, backend=args.backend,
        processes=args.processes, timeout=args.timeout, log_dir=args.log_dir, grace=args.grace,
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``d2lcompat`` argument parser (``info``, ``conformance``, ``convert``)."""
    parser = argparse.ArgumentParser(
        prog="d2lcompat",
        description="One Block/Parameter/Device API on PyTorch, TensorFlow, PaddlePaddle and JAX.",
    )
    parser.add_argument("--version", action="version", version=f"d2lcompat {_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (default: one message)"
    )
    # --debug is accepted after the command too; SUPPRESS keeps the top-level value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", parents=[common], help="backends, versions and devices")
    p.set_defaults(func=_info)
    p = sub.add_parser(
        "conformance", parents=[common], help="run the conformance catalogue on each backend"
    )
    p.add_argument(
        "--backends",
        default=None,
        help="comma-separated (default: D2LCOMPAT_BACKEND if set, else every registered one; "
        "one not installed is reported as such, with its install command)",
    )
    p.add_argument("--device", default=None, help="default device for every scenario, e.g. gpu:0")
    p.add_argument("--report", action="append", default=[],
                   help="out.html, out.md or out.json (repeatable; default: "
                   "reports/conformance.html, .md and .json)")
    p.add_argument("--install", action="store_true",
                   help="first pip-install every backend that is not installed, one at a time, "
                   "into this environment (a failure is reported in its column)")
    p.add_argument("--constraints", default=None,
                   help="pip constraints for --install (default: ./constraints.txt if present)")
    p.add_argument("--only", default=None, help="comma-separated scenario IDs or prefixes (MC,IO01)")
    p.add_argument("--no-xb", action="store_true", help="skip the cross-backend (XB) matrix")
    p.add_argument("--jobs", type=int, default=None, help="backends run at once (default: one per core, at most 4)")
    p.add_argument("--timeout", type=float, default=None, help="seconds a backend's worker may stay silent (default 300)")
    p.set_defaults(func=_conformance)
    p = sub.add_parser(
        "convert", parents=[common], help="turn a native checkpoint into the portable safetensors file"
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--map", action="append", default=[], help="explicit name mapping NATIVE=PORTABLE")
    p.add_argument("--trusted", action="store_true", help="allow pickle-based formats (.pdparams)")
    p.set_defaults(func=_convert)
    p = sub.add_parser(
        "launch",
        help="run a training script on N workers with the framework's own launcher",
        description="torch: torchrun; paddle: python -m paddle.distributed.launch; jax and "
        "tensorflow: one process with N devices (D2LCOMPAT_CPU_DEVICES=N on CPU), or N "
        "processes with --processes. The script calls d2lcompat.parallel.init().",
    )
    p.add_argument("--nproc", type=int, required=True, help="number of workers (or devices)")
    p.add_argument("--backend", default=None, help="the backend (default: D2LCOMPAT_BACKEND, else the first installed)")
    p.add_argument("--processes", action="store_true",
                   help="start N processes on loopback with d2lcompat's own group variables "
                        "(for jax and tensorflow; torch and paddle accept it too)")
    p.add_argument("--timeout", type=float, default=None, help="seconds before every worker is stopped")
    p.add_argument("--log-dir", default=None,
                   help="where each rank's output goes (rank<r>.log; default: a temporary "
                        "folder, removed after a clean run, kept and named after a failure)")
    p.add_argument("--grace", type=float, default=None,
                   help="seconds the workers get to exit after SIGTERM before SIGKILL (default 5)")
    p.add_argument("script")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_launch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``d2lcompat`` command; the exit status.

    A user error (any `d2lcompat.D2LCompatError`, a missing or unreadable file) prints
    its message, which says what to do, and returns 1; ``--debug`` re-raises it with
    its traceback. Usage errors exit with status 2 (argparse).

    Examples
    --------
    >>> main(["--version"])  # doctest: +SKIP
    d2lcompat 0.1.0
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"d2lcompat {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if getattr(args, "debug", False) or not (
            _is_d2lcompat_error(exc) or isinstance(exc, OSError)
        ):
            raise
        print(f"d2lcompat {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("(run with --debug to see the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
