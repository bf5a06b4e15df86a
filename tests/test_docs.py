"""The documentation as a whole: what the examples (run by sybil, see conftest.py) cannot
check by running.

Skip markers carry a reason; install commands are the one that works (from a checkout);
links resolve to files of the repository; the committed conformance report still
matches the catalogue; docs quote no conformance count by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from d2lcompat_conformance.runner import catalogue
from d2lcompat_spec import install_hint

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SOURCES = [
    p
    for folder in ("d2lcompat", "d2lcompat_cli", "backends", "conformance", "tests", "benchmarks")
    for p in sorted((ROOT / folder).rglob("*"))
    if p.suffix in {".py", ".toml"} and "__pycache__" not in p.parts
]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_pages_are_collected() -> None:
    names = {_rel(p) for p in PAGES}
    assert {"README.md", "docs/user-guide.md", "docs/development.md", "docs/api.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_skip_marker_gives_its_reason(page: Path) -> None:
    # sybil counts a block under a bare "skip: next" as passed: that would hide it
    for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        # sybil's own pattern: a directive starts its line
        m = re.match(r"[ \t]*<!--+\s*skip:\s*(next|start)\b(.*?)-->", line)
        if m:
            assert re.fullmatch(r"\s*(requires\(.+\)|\".+\")\s*", m.group(2)), (
                f"{_rel(page)}:{n}: say why: skip: {m.group(1)} requires(\"torch\"|\"gpu\") "
                f"or skip: {m.group(1)} \"reason\" (docs/development.md)"
            )


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_install_commands_are_the_one_that_works(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    # d2lcompat is not on a package index: `pip install "d2lcompat[torch]"` finds nothing
    assert not re.search(r"pip install [\"']?d2lcompat\b", text), _rel(page)


def test_readme_installs_from_the_checkout_in_a_venv() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert install_hint("torch") in text and "python3 -m venv" in text


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (page.parent / target).exists():
            missing.append(target)
    # a bare page name in the text (`SCENARIOS.md`) must name a page that exists too
    for name in re.findall(r"(?<![\w/.\[(-])([A-Z][A-Z_]+\.md)\b", text):
        if not ((page.parent / name).exists() or (ROOT / name).exists()):
            missing.append(name)
    assert not missing, f"{_rel(page)} links to files the repository does not have: {missing}"


@pytest.mark.parametrize("source", SOURCES, ids=_rel)
def test_docstrings_name_pages_that_exist(source: Path) -> None:
    text = source.read_text(encoding="utf-8")
    missing = [m for m in re.findall(r"\bdocs/[\w-]+\.md\b", text) if not (ROOT / m).exists()]
    assert not missing, f"{_rel(source)} names missing pages: {missing}"


def test_committed_conformance_report_matches_the_catalogue() -> None:
    report = (ROOT / "docs" / "conformance-report.md").read_text(encoding="utf-8")
    ids = re.findall(r"^\| ([A-Z]{2}\d{2}) \|", report, flags=re.M)
    known = set(catalogue())
    assert ids and set(ids) <= known, f"stale IDs in the report: {sorted(set(ids) - known)}"
    assert "**Totals:**" in report  # the counts the docs refer to are generated


@pytest.mark.parametrize("page", [p for p in PAGES if "conformance-report" not in p.name], ids=_rel)
def test_conformance_counts_are_not_typed_by_hand(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"\b\d+ (scenario )?IDs\b", text), (
        f"{_rel(page)} quotes a count of scenario IDs: link docs/conformance-report.md instead"
    )


def _repl_breaks(text: str) -> list[tuple[int, str]]:
    """The ``...`` continuation lines that are blank and followed by more of the same
    statement: pasted into the Python REPL, that blank line ends the statement (a class
    ends before its next method), so the example does not paste cleanly."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines[:-1]):
        stripped = line.strip()
        if stripped == "..." and lines[i + 1].lstrip().startswith("... "):
            found.append((i + 1, lines[i + 1].strip()))
    return found


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_doctest_examples_paste_into_the_repl(page: Path) -> None:
    breaks = _repl_breaks(page.read_text(encoding="utf-8"))
    assert breaks == [], (
        f"{_rel(page)}: a blank '...' line inside an indented block (line, next line): {breaks}; "
        "remove the blank line, or end the block there"
    )


def test_repl_breaks_are_found() -> None:
    bad = ">>> class A:\n...     x = 1\n...\n...     def f(self):\n...         pass\n>>> A()"
    good = ">>> class A:\n...     x = 1\n...     def f(self):\n...         pass\n...\n>>> A()"
    assert _repl_breaks(bad) == [(3, "...     def f(self):")]
    assert _repl_breaks(good) == []
