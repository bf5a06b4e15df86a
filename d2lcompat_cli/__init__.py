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
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _info(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    import d2lcompat

    table = Table(title=f"d2lcompat {d2lcompat.__version__} — backend in use: {d2lcompat.backend()}")
    for col in ("backend", "installed", "version", "active", "devices", "install with"):
        table.add_column(col)
    for b in d2lcompat.backends():
        table.add_row(
            b.name,
            "yes" if b.installed else "no",
            b.version or "-",
            "*" if b.active else "",
            ", ".join(b.devices) if b.devices is not None else "(other process)",
            escape(f'pip install "d2lcompat[{b.extra}]"'),
        )
    Console().print(table)
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
        processes=args.processes, timeout=args.timeout,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="d2lcompat",
        description="One Block/Parameter/Device API on PyTorch, TensorFlow, PaddlePaddle and JAX.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="backends, versions and devices")
    p.set_defaults(func=_info)
    p = sub.add_parser("conformance", help="run the conformance catalogue on each backend")
    p.add_argument("--backends", default=None, help="comma-separated (default: every installed one)")
    p.add_argument("--device", default=None, help="default device for every scenario, e.g. gpu:0")
    p.add_argument("--report", action="append", default=[], help="out.html, out.md or out.json (repeatable)")
    p.add_argument("--only", default=None, help="comma-separated scenario IDs or prefixes (MC,IO01)")
    p.add_argument("--no-xb", action="store_true", help="skip the cross-backend (XB) matrix")
    p.add_argument("--jobs", type=int, default=None, help="backends run at once (default: one per core, at most 4)")
    p.add_argument("--timeout", type=float, default=None, help="seconds a backend's worker may stay silent (default 300)")
    p.set_defaults(func=_conformance)
    p = sub.add_parser("convert", help="turn a native checkpoint into the portable safetensors file")
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
    p.add_argument("script")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(func=_launch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
