"""The d2lcompat conformance catalogue (docs/scenarios.md), its runner and its reports.

Every scenario is written once, against the public API, and runs on every backend.

Examples
--------
Run the whole catalogue against a backend in a fresh process (what an adapter author
calls last; raises `ConformanceError` listing the failures)::

    from d2lcompat_conformance import check_backend
    results = check_backend("mybackend")

Run the whole catalogue against the backend of this process (what an adapter author
calls last)::

    from d2lcompat_conformance import run_all
    failures = [r for r in run_all() if r.status == "fail"]
"""

from ._registry import (
    SCENARIOS,
    Context,
    Result,
    Scenario,
    Unsupported,
    known_unsupported,
    load_all,
    run_all,
    run_scenario,
    scenario,
)
from .runner import ConformanceError, check_backend

__all__ = [
    "SCENARIOS",
    "ConformanceError",
    "Context",
    "Result",
    "Scenario",
    "Unsupported",
    "check_backend",
    "known_unsupported",
    "load_all",
    "run_all",
    "run_scenario",
    "scenario",
]
