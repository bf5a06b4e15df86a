"""The scenario registry: each docs/scenarios.md ID is one plain function, written once.

A scenario runs in the process of one backend (chosen by ``D2LCOMPAT_BACKEND``)
against the public API only, and asserts values. Its outcome is ``pass``,
``fail`` (with the assertion or error) or ``unsupported`` (with a reason: from
the backend's data file ``unsupported/<backend>.toml``, or raised by the
scenario itself as `Unsupported` when the machine lacks what it needs, e.g. a
second device).
"""

from __future__ import annotations

import importlib
import tempfile
import time
import tomllib
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "SCENARIOS",
    "Context",
    "Result",
    "Scenario",
    "Unsupported",
    "known_unsupported",
    "run_scenario",
    "run_all",
    "scenario",
]

GROUPS = ("mc", "pa", "in_", "di", "cl", "ty", "io", "dv", "hy", "ls", "op", "ly", "da", "dp", "gl", "gl_hybrid", "rn", "at", "tx")


class Unsupported(Exception):
    """Raised by a scenario when what it needs is absent here (a second device, a native
    framework file format); the reason is shown in the report."""


@dataclass(frozen=True)
class Context:
    """What a scenario gets: a private temporary folder, and (for cross-backend
    scenarios) a folder of reference files written by other backends."""

    tmp: Path
    shared: Path | None = None


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    fn: Callable[[Context], None]


@dataclass
class Result:
    """One scenario's outcome on one backend (one record of the JSON report)."""

    id: str
    backend: str
    status: str  # "pass" | "fail" | "unsupported"
    message: str = ""
    duration: float = 0.0
    device: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SCENARIOS: dict[str, Scenario] = {}


def scenario(sid: str, title: str) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    """Register ``fn(ctx)`` as the scenario ``sid`` (an ID of docs/scenarios.md)."""

    def register(fn: Callable[[Context], None]) -> Callable[[Context], None]:
        if sid in SCENARIOS:
            raise RuntimeError(f"scenario {sid} is defined twice")
        SCENARIOS[sid] = Scenario(sid, title, fn)
        return fn

    return register


def load_all() -> dict[str, Scenario]:
    """Import every scenario module; return the catalogue, sorted by ID."""
    for group in GROUPS:
        importlib.import_module(f"d2lcompat_conformance.scenarios.{group}")
    return dict(sorted(SCENARIOS.items()))


def known_unsupported(backend: str) -> dict[str, str]:
    """The known divergences of ``backend``: {scenario ID: reason}, from its data file."""
    path = resources.files("d2lcompat_conformance") / "unsupported" / f"{backend}.toml"
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {sid: str(entry["reason"]) for sid, entry in data.get("unsupported", {}).items()}


def run_scenario(sid: str, tmp: Path | None = None, shared: Path | None = None) -> Result:
    """Run one scenario in this process and classify the outcome.

    A scenario listed as unsupported in the backend's data file still runs: if it
    passes, the stale entry is reported as a failure, so the data cannot hide a fix.
    """
    import d2lcompat

    backend = d2lcompat.backend()
    sc = load_all()[sid]
    listed = known_unsupported(backend).get(sid)
    device = repr(d2lcompat.default_device())
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"d2lc-{sid}-") as scratch:
        ctx = Context(tmp=tmp or Path(scratch), shared=shared)
        try:
            sc.fn(ctx)
        except Unsupported as exc:
            return Result(sid, backend, "unsupported", str(exc), time.perf_counter() - start, device)
        except Exception as exc:  # noqa: BLE001 - every failure is a result, not a crash
            took = time.perf_counter() - start
            if listed is not None:
                return Result(sid, backend, "unsupported", listed, took, device,
                              {"error": f"{type(exc).__name__}: {exc}"})
            tb = traceback.format_exc(limit=6)
            return Result(sid, backend, "fail", f"{type(exc).__name__}: {exc}\n{tb}", took, device)
    took = time.perf_counter() - start
    if listed is not None:
        return Result(
            sid, backend, "fail",
            f"listed as unsupported ({listed}) but it passes: remove it from "
            f"unsupported/{backend}.toml", took, device,
        )
    return Result(sid, backend, "pass", "", took, device)


def run_all(ids: list[str] | None = None,
            on_result: Callable[[Result], None] | None = None,
            shared: Path | None = None) -> list[Result]:
    """Run the catalogue (or ``ids``) in this process."""
    results = []
    for sid in ids or list(load_all()):
        r = run_scenario(sid, shared=shared)
        results.append(r)
        if on_result is not None:
            on_result(r)
    return results
