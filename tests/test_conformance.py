"""The conformance catalogue under pytest: one test per scenario ID, on this process's backend.

``unsupported`` outcomes (the backend's data file, or a missing second device) are
reported as skips whose reason is the recorded one; a scenario listed as unsupported
that passes fails here, so the data cannot go stale.
"""

from __future__ import annotations

import pytest

from d2lcompat_conformance import load_all, run_scenario

IDS = list(load_all())


@pytest.mark.parametrize("sid", IDS)
def test_scenario(sid: str) -> None:
    result = run_scenario(sid)
    if result.status == "unsupported":
        pytest.skip(f"unsupported on {result.backend}: {result.message}")
    assert result.status == "pass", result.message
