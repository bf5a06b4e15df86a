"""The conformance runner and its reports.

The reports are tested on a synthetic document (no subprocess), the worker protocol
with a fake worker (a crash must cost one scenario, not the rest), and the whole
command once end to end on the backend of this test environment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from d2lcompat_conformance import report as reports
from d2lcompat_conformance import runner
from d2lcompat_conformance.runner import BackendRun, build_report

FRAMEWORKS = ("torch", "tensorflow", "paddle", "jax", "flax")
IDS = ["MC01", "PA02", "DV06", "IO09"]
TITLES = {
    "MC01": "Sequential on (2, 20)",
    "PA02": "collect_params | names <in order>",
    "DV06": "mixing devices raises",
    "IO09": "native import",
}


def _rec(sid: str, backend: str, status: str, message: str = "") -> dict[str, Any]:
    return {
        "id": sid,
        "title": TITLES[sid],
        "backend": backend,
        "status": status,
        "message": message,
        "duration": 0.25,
        "device": "cpu(0)",
        "details": {},
    }


@pytest.fixture()
def doc() -> dict[str, Any]:
    """A report with two backends that ran, one missing, a failure, an unsupported, XB."""
    torch = BackendRun("torch", installed=True, extra="torch", version="2.13.0")
    torch.env = {
        "devices": ["cpu(0)"],
        "default_device": "cpu(0)",
        "python": "3.11.7",
        "platform": "Linux",
    }
    torch.results = {sid: _rec(sid, "torch", "pass") for sid in IDS}
    torch.results["DV06"] = _rec("DV06", "torch", "unsupported", "needs two devices")
    jax = BackendRun("jax", installed=True, extra="jax", version="0.10.2")
    jax.env = {"devices": ["cpu(0)", "cpu(1)"], "default_device": "cpu(0)"}
    jax.results = {sid: _rec(sid, "jax", "pass") for sid in IDS}
    jax.results["PA02"] = _rec(
        "PA02", "jax", "fail", "AssertionError: <b>names</b> & order\nline 2"
    )
    paddle = BackendRun("paddle", installed=False, extra="paddle")
    xb = []
    for w in ("torch", "jax"):
        for r in ("torch", "jax"):
            for sid in ("XB01", "XB02", "XB03"):
                bad = (w, r, sid) == ("jax", "torch", "XB03")
                xb.append(
                    {
                        "id": sid,
                        "title": runner.XB_TITLES[sid],
                        "writer": w,
                        "reader": r,
                        "status": "fail" if bad else "pass",
                        "message": "dtype differs" if bad else "",
                    }
                )
    return build_report(
        [torch, jax, paddle],
        TITLES,
        IDS,
        xb,
        device=None,
        seconds=12.5,
        command="d2lcompat conformance",
    )


# ---------------------------------------------------------------------------- JSON


def test_json_schema_and_content(doc: dict[str, Any], tmp_path: Path) -> None:
    path = reports.write(doc, tmp_path / "out.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema"] == runner.SCHEMA
    assert set(data) >= {
        "created",
        "command",
        "duration",
        "ok",
        "environment",
        "backends",
        "scenarios",
        "results",
        "unsupported",
        "xb",
        "summary",
    }
    assert data["ok"] is False
    assert data["backends"] == ["torch", "jax", "paddle"]
    env = data["environment"]
    assert {"python", "platform", "d2lcompat", "backends"} <= set(env)
    assert env["backends"]["jax"]["devices"] == ["cpu(0)", "cpu(1)"]
    assert env["backends"]["torch"]["version"] == "2.13.0"
    paddle = env["backends"]["paddle"]
    assert paddle["installed"] is False and 'pip install ".[paddle]" -c constraints.txt' in paddle["error"]
    assert len(data["results"]) == len(IDS) * 2  # one record per scenario x backend that ran
    for rec in data["results"]:
        assert set(rec) >= {"id", "title", "backend", "status", "message", "duration", "device"}
        assert rec["status"] in {"pass", "fail", "unsupported"}
        assert isinstance(rec["duration"], float)
    assert {(r["id"], r["backend"]) for r in data["results"]} == {
        (i, b) for i in IDS for b in ("torch", "jax")
    }
    assert data["summary"]["backends"]["jax"] == {"pass": 3, "fail": 1, "unsupported": 0}
    assert data["summary"]["backends"]["torch"] == {"pass": 3, "fail": 0, "unsupported": 1}
    assert data["summary"]["missing"] == ["paddle"]
    assert data["summary"]["xb"] == {"pass": 11, "fail": 1, "unsupported": 0}
    assert len(data["xb"]) == 12 and all(
        set(x) >= {"id", "writer", "reader", "status", "message"} for x in data["xb"]
    )
    assert [s["id"] for s in data["scenarios"]] == [*IDS, "XB01", "XB02", "XB03"]


def test_all_passing_report_is_ok(doc: dict[str, Any]) -> None:
    torch = BackendRun("torch", installed=True, extra="torch")
    torch.results = {sid: _rec(sid, "torch", "pass") for sid in IDS}
    ok = build_report([torch], TITLES, IDS, [], device="cpu", seconds=1.0, command="x")
    assert ok["ok"] is True and ok["summary"]["failed"] == 0


# ---------------------------------------------------------------------------- Markdown


def test_markdown_matrix(doc: dict[str, Any]) -> None:
    md = reports.to_markdown(doc)
    lines = md.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| ID |"))
    # paddle did not run: it keeps its column, which says why
    assert lines[header] == "| ID | scenario | torch | jax | paddle |"
    assert lines[header + 1] == "|---|---|---|---|---|"
    rows = {line.split(" | ")[0][2:]: line for line in lines[header + 2 : header + 2 + len(IDS)]}
    assert list(rows) == IDS
    for row in rows.values():  # every row has one cell per column: pipes in titles are escaped
        assert row.replace("\\|", "").count("|") == 6
        assert row.split(" | ")[4] == "⛔ not installed |"
    assert '⛔ **paddle** did not run: not installed: pip install ".[paddle]" -c constraints.txt' in md
    assert "❌" in rows["PA02"].split(" | ")[3] and "✅" in rows["PA02"].split(" | ")[2]
    assert "unsupported" in rows["DV06"].split(" | ")[2]
    assert "### PA02 on jax" in md and "AssertionError: <b>names</b> & order" in md
    assert "needs two devices" in md  # the unsupported reason
    assert 'pip install ".[paddle]" -c constraints.txt' in md
    assert "| writer \\ reader | torch | jax |" in md and "❌ 2/3" in md


# ---------------------------------------------------------------------------- HTML


class _Cells(HTMLParser):
    """Collects matrix cells (data-id x data-backend), XB cells, and checks external assets."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], str] = {}
        self.xb: dict[tuple[str, str], str] = {}
        self.external: list[str] = []
        self.details = 0
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in {"script", "link", "img", "iframe"} or (a.get("src") or "").startswith("http"):
            self.external.append(tag)
        if tag == "details":
            self.details += 1
        if tag == "td" and "data-id" in a:
            self.cells[(str(a["data-id"]), str(a["data-backend"]))] = str(a.get("class"))
        if tag == "td" and "data-writer" in a:
            self.xb[(str(a["data-writer"]), str(a["data-reader"]))] = str(a.get("class"))


def test_markdown_states_the_totals_the_docs_quote(doc: dict[str, Any]) -> None:
    md = reports.to_markdown(doc)
    assert (
        "**Totals:** 4 scenario IDs × 2 backend(s) = 8 records: 6 pass, 1 unsupported, 1 fail; "
        "XB: 12 records (XB01, XB02, XB03 × 2×2 pairs), 11 pass."
    ) in md
    assert "Slowest scenario per backend: torch: MC01 (0.2 s); jax: MC01 (0.2 s)." in md


def test_html_parses_and_has_every_cell(doc: dict[str, Any], tmp_path: Path) -> None:
    text = reports.write(doc, tmp_path / "out.html").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    parser = _Cells()
    parser.feed(text)
    parser.close()
    assert parser.external == []  # self-contained: no scripts, stylesheets or images
    assert set(parser.cells) == {(i, b) for i in IDS for b in ("torch", "jax", "paddle")}
    assert {parser.cells[(i, "paddle")] for i in IDS} == {"cell none"}  # the column says why
    assert '>not installed</td>' in text
    assert parser.cells[("PA02", "jax")] == "cell fail"
    assert parser.cells[("DV06", "torch")] == "cell unsupported"
    assert parser.cells[("MC01", "torch")] == "cell pass"
    assert parser.details >= len(IDS) * 2 + 4  # every cell expands
    assert set(parser.xb) == {(w, r) for w in ("torch", "jax") for r in ("torch", "jax")}
    assert parser.xb[("jax", "torch")] == "cell fail"
    # messages are escaped, never interpreted as markup
    assert "&lt;b&gt;names&lt;/b&gt; &amp; order" in text and "<b>names</b>" not in text
    assert "needs two devices" in text and "2.13.0" in text and "cpu(1)" in text
    assert "pip install &quot;.[paddle]&quot; -c constraints.txt" in text


def test_no_backend_hint_keeps_its_extras(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # "[torch]" in the hint must not be taken for rich markup (it was: 'pip install "d2lcompat"')
    from d2lcompat_spec import discover, install_hint

    specs = discover()
    monkeypatch.setattr(runner, "_resolve", lambda requested: ([], specs))
    monkeypatch.delenv("D2LCOMPAT_BACKEND", raising=False)
    monkeypatch.setenv("COLUMNS", "400")
    ns = argparse.Namespace(backends=None, device=None, report=[], only=None, no_xb=True)
    assert runner.main(ns) == 1
    out = capsys.readouterr().out
    assert "No d2lcompat backend is installed" in out
    for spec in specs.values():
        assert install_hint(spec.extra) in out


def test_unknown_report_format(doc: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=".pdf"):
        reports.write(doc, tmp_path / "out.pdf")


def test_rerender_from_json(doc: dict[str, Any], tmp_path: Path) -> None:
    src = reports.write(doc, tmp_path / "in.json")
    assert reports.main([str(src), str(tmp_path / "again.html")]) == 0
    assert (tmp_path / "again.html").read_text(encoding="utf-8") == reports.to_html(doc)


# ---------------------------------------------------------------------------- data files


def test_unsupported_files_are_valid_toml() -> None:
    import tomllib

    folder = Path(runner.__file__).parent / "unsupported"
    for name in ("torch", "tensorflow", "paddle", "jax"):
        data = tomllib.loads((folder / f"{name}.toml").read_text(encoding="utf-8"))
        ids = set(runner.catalogue())
        for sid, entry in data.get("unsupported", {}).items():
            assert sid in ids, f"{name}.toml lists unknown scenario {sid}"
            assert str(entry["reason"]).strip(), f"{name}.toml: {sid} needs a reason"


def test_catalogue_is_read_without_a_framework() -> None:
    ids = runner.catalogue()
    assert list(ids)[:2] == ["MC01", "MC02"] and "IO08" in ids
    assert runner._select(ids, "mc,IO01") == [i for i in ids if i.startswith("MC")] + ["IO01"]


def test_runner_imports_no_framework() -> None:
    code = (
        "import sys, d2lcompat_conformance.runner, d2lcompat_conformance.report\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{FRAMEWORKS!r} + ('d2lcompat',))\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------- the protocol

_FAKE_WORKER = """
import json, os, sys
args = sys.argv[1:]
ids = args[args.index("--ids") + 1].split(",") if "--ids" in args else []
out = sys.stdout
def send(**m):
    out.write(json.dumps(m) + "\\n"); out.flush()
send(type="env", backend="fake", version="1", devices=["cpu(0)"], default_device="cpu(0)")
for sid in ids:
    send(type="start", id=sid)
    if sid == "{crash}":
        os.abort()
    if sid == "{hang}":
        import time; time.sleep(60)
    send(type="result", id=sid, backend="fake", status="pass", message="", duration=0.0,
         device="cpu(0)")
send(type="done")
"""


def _fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: str = "", hang: str = "") -> None:
    (tmp_path / "fake_worker.py").write_text(
        textwrap.dedent(_FAKE_WORKER).replace("{crash}", crash).replace("{hang}", hang)
    )
    monkeypatch.setattr(runner, "WORKER_MODULE", "fake_worker")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    )


def test_a_crash_costs_one_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(tmp_path, monkeypatch, crash="B")
    run = runner.run_backend(BackendRun("fake", True, "fake"), ["A", "B", "C"], {}, timeout=30)
    assert run.results["A"]["status"] == "pass"
    assert run.results["B"]["status"] == "fail"
    assert (
        "SIGABRT" in run.results["B"]["message"]
        and "crashed the worker" in run.results["B"]["message"]
    )
    assert run.results["C"]["status"] == "pass"  # resumed in a fresh worker
    assert run.workers == 2 and any("restarted" in n for n in run.notes)


def test_a_hang_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(tmp_path, monkeypatch, hang="A")
    run = runner.run_backend(BackendRun("fake", True, "fake"), ["A", "B"], {}, timeout=4)
    assert run.results["A"]["status"] == "fail" and "timeout" in run.results["A"]["message"]
    assert run.results["B"]["status"] == "pass"


# ---------------------------------------------------------------------------- end to end


def test_command_end_to_end(tmp_path: Path) -> None:
    import d2lcompat

    name = d2lcompat.backend()
    out = tmp_path / "x.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "d2lcompat",
            "conformance",
            "--backends",
            name,
            "--only",
            "MC01,PA02",
            "--report",
            str(out),
            "--no-xb",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["ok"] is True and data["backends"] == [name]
    assert [(r["id"], r["backend"], r["status"]) for r in data["results"]] == [
        ("MC01", name, "pass"),
        ("PA02", name, "pass"),
    ]
    assert data["xb"] == []
    info = data["environment"]["backends"][name]
    assert info["installed"] and info["version"] and info["devices"]


def test_check_backend_one_call() -> None:
    import d2lcompat
    from d2lcompat_conformance import ConformanceError, Result, check_backend

    results = check_backend(d2lcompat.backend(), ["MC01"])
    assert [(type(r), r.id, r.status) for r in results] == [(Result, "MC01", "pass")]
    with pytest.raises(ConformanceError, match="not a registered"):
        check_backend("no-such-backend")


# ---------------------------------------------------------------------------- backends not installed


def _installed_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, names: set[str]) -> None:
    """Pretend only ``names`` (and what the fake pip "installs": a marker file) are installed."""

    def fake_is_installed(spec: Any) -> bool:
        return spec.name in names or (tmp_path / f"installed-{spec.extra}").exists()

    monkeypatch.setattr(runner, "is_installed", fake_is_installed)
    monkeypatch.setattr(runner, "installed_version", lambda spec: "9.9")


def test_bare_command_shows_every_backend_and_writes_the_default_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from d2lcompat_spec import discover, install_hint

    specs = discover()
    first = next(iter(specs))
    _fake(tmp_path, monkeypatch)
    _installed_only(monkeypatch, tmp_path, {first})
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("D2LCOMPAT_BACKEND", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    ns = argparse.Namespace(backends=None, device=None, report=[], only="MC01,PA02", no_xb=True)
    assert runner.main(ns) == 0  # a backend nobody asked for is reported, not a failure
    out = capsys.readouterr().out
    written = [tmp_path / "reports" / f"conformance.{ext}" for ext in ("html", "md", "json")]
    assert all(p.is_file() for p in written)
    for p in written:
        assert f"report written: {p}\n" in out
    data = json.loads(written[2].read_text(encoding="utf-8"))
    others = [n for n in specs if n != first]
    assert data["backends"] == list(specs)  # every registered backend is a column
    assert data["summary"]["not_run"] == others and data["summary"]["missing"] == []
    for name in others:
        info = data["environment"]["backends"][name]
        assert info["missing"] == "not installed"
        assert info["error"] == f"not installed: {install_hint(specs[name].extra)}"
        assert out.count(f"not installed: {install_hint(specs[name].extra)}") == 1  # said once
    md = written[1].read_text(encoding="utf-8")
    assert "| ID | scenario | " + " | ".join(specs) + " |" in md
    assert f"on 1 of {len(specs)} backends" in md
    assert f"all passed: 0 failure(s) on 1 of {len(specs)} backend(s), not installed: " in out


_FAKE_PIP = """
import pathlib, sys
req = next(a for a in sys.argv[1:] if a.startswith("d2lcompat["))
extra = req[len("d2lcompat["):-1]
if extra == "{fail}":
    print("Collecting " + extra)
    print("ERROR: Could not find a version that satisfies the requirement " + extra, file=sys.stderr)
    print("ERROR: No matching distribution found for " + extra, file=sys.stderr)
    sys.exit(1)
if extra == "{index}" and "--extra-index-url" not in sys.argv:
    print("ERROR: No matching distribution found for " + extra, file=sys.stderr)
    sys.exit(1)
assert "-c" in sys.argv and sys.argv[sys.argv.index("-c") + 1].endswith("constraints.txt")
pathlib.Path(r"{folder}", "installed-" + extra).touch()
"""


def test_install_reports_a_backend_pip_cannot_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from d2lcompat_spec import discover

    specs = discover()
    names = list(specs)
    fail, index = names[-1], names[0]  # index: found only on its own index (torch's CPU build)
    monkeypatch.setitem(runner.EXTRA_INDEX, index, "https://example.invalid/whl")
    pip = tmp_path / "fake_pip.py"
    pip.write_text(
        textwrap.dedent(_FAKE_PIP)
        .replace("{fail}", specs[fail].extra)
        .replace("{index}", specs[index].extra)
        .replace("{folder}", str(tmp_path))
    )
    monkeypatch.setattr(runner, "PIP", [sys.executable, str(pip)])
    _fake(tmp_path, monkeypatch)
    _installed_only(monkeypatch, tmp_path, set())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "constraints.txt").write_text("")
    monkeypatch.delenv("D2LCOMPAT_BACKEND", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    ns = argparse.Namespace(backends=None, device=None, report=[str(tmp_path / "r.json")],
                            only="MC01", no_xb=True, install=True)
    assert runner.main(ns) == 1  # a backend that could not be installed fails the run
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["backends"] == names
    ran = [n for n in names if n != fail]
    assert sorted(data["summary"]["backends"]) == sorted(ran)
    assert data["summary"]["missing"] == [fail]
    info = data["environment"]["backends"][fail]
    assert info["missing"] == "install failed"
    assert info["install_error"] == (
        f"ERROR: Could not find a version that satisfies the requirement {specs[fail].extra} "
        f"ERROR: No matching distribution found for {specs[fail].extra}"
    )
    assert info["error"].startswith("could not be installed on this machine (ERROR: Could not")
    assert "retrying with --extra-index-url https://example.invalid/whl" in out
    assert f"{fail} could not be installed" in out
    assert data["environment"]["install_seconds"] > 0
    assert "wall time" in out and "(installing" in out
