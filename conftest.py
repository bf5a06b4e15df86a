"""The documentation is tested: every ```python block of README.md and docs/*.md runs.

`sybil <https://sybil.readthedocs.io>`_ collects each block as a pytest item, in page
order, one namespace per page (a block sees the names earlier blocks of its page
defined). A block written as a doctest (``>>>`` lines) has its printed output
checked. A page runs in a fresh temporary working directory, so the files it saves
never land in the repository. Shell blocks (```bash, ```console, ```sh, ```text) are
not run.

A block that cannot run everywhere says so right above it, in an HTML comment that
the rendered page hides and pytest reports (``-ra``) as a skip with its reason::

    <!-- skip: next requires("torch") -->      only under the torch backend
    <!-- skip: next requires("gpu") -->        only where a GPU is visible

See docs/development.md, "Documentation is tested".
"""

from __future__ import annotations

import doctest
import os
import shutil
import sys
import tempfile
from typing import Any

# pytest put this folder first on sys.path to import this file; take it off again, so
# that the tests import the installed d2lcompat (the wheel tox built: a module missing
# from the wheel must fail here too), not the source folder of the same name.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

from sybil import Sybil
from sybil.integration import pytest as _sybil_pytest
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

BACKENDS = ("torch", "tensorflow", "paddle", "jax")


def _requires(*needs: str) -> str | None:
    """The skip reason when this process lacks one of ``needs`` (a backend name or
    ``"gpu"``), else None (the block runs)."""
    import d2lcompat

    missing = []
    for need in needs:
        if need in BACKENDS:
            if d2lcompat.backend() != need:
                missing.append(f"the {need} backend")
        elif need == "gpu":
            if d2lcompat.num_gpus() == 0:
                missing.append("a GPU")
        else:
            raise ValueError(f"requires({need!r}): use a backend name {BACKENDS} or 'gpu'")
    if not missing:
        return None
    return f"needs {' and '.join(missing)}; this run has {d2lcompat.backend()} on " + (
        "a GPU" if d2lcompat.num_gpus() else "CPU only"
    )


_filter = _sybil_pytest.SybilItem._traceback_filter


def _traceback_filter(self: Any, excinfo: Any) -> Any:
    # sybil 10.1 cuts the traceback at its own frame and indexes the next one, which
    # fails (an INTERNALERROR that hides the failure) when there is none: keep it whole.
    try:
        return _filter(self, excinfo)
    except IndexError:
        return excinfo.traceback


_sybil_pytest.SybilItem._traceback_filter = _traceback_filter  # type: ignore[method-assign]


def _setup(namespace: dict[str, Any]) -> None:
    namespace["__cwd"] = os.getcwd()
    namespace["__tmp"] = tempfile.mkdtemp(prefix="d2lcompat-docs-")
    os.chdir(namespace["__tmp"])
    namespace["requires"] = _requires


def _teardown(namespace: dict[str, Any]) -> None:
    os.chdir(namespace["__cwd"])
    shutil.rmtree(namespace["__tmp"], ignore_errors=True)


pytest_collect_file = Sybil(
    parsers=[
        PythonCodeBlockParser(
            doctest_optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        ),
        SkipParser(),
    ],
    patterns=["README.md", "docs/*.md"],
    setup=_setup,
    teardown=_teardown,
).pytest()


def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    """Report a skipped doc block at its own line (``docs/x.md:42: needs ...``), not at
    the line of pytest that raised the skip."""
    if not isinstance(item, _sybil_pytest.SybilItem) or call.excinfo is None:
        return None
    import pytest

    report = pytest.TestReport.from_item_and_call(item, call)
    if report.skipped and isinstance(report.longrepr, tuple):
        _, _, reason = report.longrepr
        report.longrepr = (str(item.path), item.example.line - 1, reason)  # shown 1-based
    return report
