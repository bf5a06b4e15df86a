"""The conformance reports: JSON, Markdown and a self-contained HTML page.

Every writer renders the same document: the dict that `runner.build_report` makes
and that the JSON report holds verbatim, so a Markdown or HTML page can also be
made later from a saved JSON file (``python -m d2lcompat_conformance.report
out.json out.html``). The format is chosen by the extension of the path.

Examples
--------
>>> import json, tempfile, pathlib
>>> doc = {"schema": "d2lcompat-conformance/1", "backends": [], "scenarios": [], "results": [],
...        "xb": [], "unsupported": {}, "environment": {"backends": {}}, "summary": {
...        "backends": {}, "xb": {"pass": 0, "fail": 0, "unsupported": 0}, "missing": [],
...        "failed": 0}, "ok": True, "duration": 0.0, "created": "", "command": ""}
>>> "<table" in to_html(doc) and to_markdown(doc).startswith("# d2lcompat conformance")
True
"""

from __future__ import annotations

import html
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["WRITERS", "to_html", "to_json", "to_markdown", "write"]

_MD_STATUS = {"pass": "✅ pass", "fail": "❌ **fail**", "unsupported": "⚪ unsupported"}


def to_json(report: dict[str, Any]) -> str:
    """The report as JSON text (the document itself, indented, UTF-8 friendly)."""
    return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"


# --------------------------------------------------------------------------------------
# shared helpers


def _runnable(report: dict[str, Any]) -> list[str]:
    return [b for b in report["backends"] if b in report["summary"]["backends"]]


def _not_run(report: dict[str, Any]) -> dict[str, str]:
    """The backends that did not run, with their matrix cell ("not installed", ...)."""
    env = report["environment"]["backends"]
    return {
        b: env.get(b, {}).get("missing") or "not available"
        for b in report["backends"]
        if b not in report["summary"]["backends"]
    }


def _did_not_run_text(report: dict[str, Any]) -> str:
    """``" on 2 of 4 backends (paddle: not installed; ...)"`` when some did not run."""
    not_run = _not_run(report)
    if not not_run:
        return ""
    n = len(report["backends"])
    return f" on {n - len(not_run)} of {n} backends (" + "; ".join(
        f"{b}: {why}" for b, why in not_run.items()
    ) + ")"


def _ids(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["id"], s["title"]) for s in report["scenarios"] if not s["id"].startswith("XB")]


def _xb_names(report: dict[str, Any]) -> list[str]:
    xb = report["xb"]
    return list(dict.fromkeys([*(x["writer"] for x in xb), *(x["reader"] for x in xb)]))


def _counts_text(counts: dict[str, int]) -> str:
    return f"{counts.get('pass', 0)} pass · {counts.get('fail', 0)} fail · {counts.get('unsupported', 0)} unsupported"


def _unsupported_source(report: dict[str, Any], rec: dict[str, Any]) -> str:
    listed = report.get("unsupported", {}).get(rec["backend"], {})
    if rec["id"] in listed:
        return f"listed in unsupported/{rec['backend']}.toml"
    return "raised by the scenario on this machine"


# --------------------------------------------------------------------------------------
# Markdown


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _totals_text(report: dict[str, Any]) -> str:
    """One sentence with the counts the docs quote (docs/conformance.md links to the
    generated report instead of typing them)."""
    ids = [sid for sid, _ in _ids(report)]
    runnable = _runnable(report)
    records = [r for r in report["results"] if r["backend"] in runnable]
    statuses = {st: sum(r["status"] == st for r in records) for st in ("pass", "unsupported", "fail")}
    text = (
        f"**Totals:** {len(ids)} scenario IDs × {len(runnable)} backend(s) = {len(records)} "
        f"records: {statuses['pass']} pass, {statuses['unsupported']} unsupported, "
        f"{statuses['fail']} fail"
    )
    if report["xb"]:
        xb_ok = sum(x["status"] == "pass" for x in report["xb"])
        xb_ids = sorted({x["id"] for x in report["xb"]})
        text += (
            f"; XB: {len(report['xb'])} records ({', '.join(xb_ids)} × "
            f"{len(_xb_names(report))}×{len(_xb_names(report))} pairs), {xb_ok} pass"
        )
    return text + "."


def _slowest(report: dict[str, Any]) -> list[str]:
    """``"torch: HY01 (3.2 s)"`` for each backend that ran."""
    out = []
    for b in _runnable(report):
        recs = [r for r in report["results"] if r["backend"] == b and r.get("duration") is not None]
        if recs:
            top = max(recs, key=lambda r: r["duration"])
            out.append(f"{b}: {top['id']} ({top['duration']:.1f} s)")
    return out


def to_markdown(report: dict[str, Any]) -> str:
    """The report as GitHub-flavoured Markdown: backends, the matrix, XB, failures, reasons."""
    env = report["environment"]
    s = report["summary"]
    verdict = (
        "**all passed**"
        if report["ok"]
        else f"**not conformant** ({s['failed']} failure(s)"
        + (f", missing: {', '.join(s['missing'])})" if s["missing"] else ")")
    ) + _did_not_run_text(report)
    out = [
        "# d2lcompat conformance",
        "",
        f"{verdict} · {report.get('created', '')} · d2lcompat {env.get('d2lcompat')} · "
        f"Python {env.get('python')} · {env.get('platform')} · {report.get('duration', 0):.1f} s"
        + (f" · device `{env['device']}`" if env.get("device") else ""),
        "",
        "## Backends",
        "",
        "| backend | version | devices | result |",
        "|---|---|---|---|",
    ]
    for name in report["backends"]:
        info = env["backends"].get(name, {})
        if name in s["backends"]:
            result = _counts_text(s["backends"][name])
            if info.get("error"):
                result = f"failed to start: {info['error']}"
        else:
            result = info.get("error") or "not available"
        out.append(
            f"| {name} | {info.get('version') or '—'} | "
            f"{_md_cell(', '.join(info.get('devices') or []) or '—')} | {_md_cell(result)} |"
        )
    by_key = {(r["id"], r["backend"]): r for r in report["results"]}
    out += ["", _totals_text(report)]
    slow = _slowest(report)
    if slow:
        out += ["", "Slowest scenario per backend: " + "; ".join(slow) + "."]
    not_run = _not_run(report)
    columns = list(report["backends"])  # a backend that did not run keeps its column
    out += [
        "",
        "## Scenarios",
        "",
        "| ID | scenario | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for sid, title in _ids(report):
        cells = [
            f"⛔ {not_run[b]}"
            if b in not_run
            else _MD_STATUS.get(by_key[(sid, b)]["status"], by_key[(sid, b)]["status"])
            if (sid, b) in by_key
            else "—"
            for b in columns
        ]
        out.append(f"| {sid} | {_md_cell(title)} | " + " | ".join(cells) + " |")
    if not_run:
        out += [""] + [
            f"⛔ **{b}** did not run: {_md_cell(env['backends'].get(b, {}).get('error') or why)}"
            + "  "
            for b, why in not_run.items()
        ]
    if report["xb"]:
        names = _xb_names(report)
        out += [
            "",
            "## XB — files written by (row), read by (column)",
            "",
            "Passed / checked records (XB01 parameters file, XB02 seeded parameters, "
            "XB03 saved tensors, XB04 trained LeNet with BatchNorm, XB05 loss curve, "
            "XB06 LSTM file and loss curve).",
            "",
            "| writer \\ reader | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for w in names:
            row = []
            for rd in names:
                cell = [x for x in report["xb"] if x["writer"] == w and x["reader"] == rd]
                ok = sum(x["status"] == "pass" for x in cell)
                bad = sum(x["status"] == "fail" for x in cell)
                row.append(
                    (f"❌ {ok}/{len(cell)}" if bad else f"✅ {ok}/{len(cell)}") if cell else "—"
                )
            out.append(f"| {w} | " + " | ".join(row) + " |")
    failures = [r for r in report["results"] if r["status"] == "fail"]
    xb_failures = [x for x in report["xb"] if x["status"] == "fail"]
    if failures or xb_failures:
        out += ["", "## Failures"]
        for r in failures:
            out += [
                "",
                f"### {r['id']} on {r['backend']}",
                "",
                "```text",
                r["message"].rstrip(),
                "```",
            ]
        for x in xb_failures:
            out += [
                "",
                f"### {x['id']}: {x['writer']} → {x['reader']}",
                "",
                "```text",
                str(x.get("message", "")).rstrip(),
                "```",
            ]
    unsupported = [r for r in report["results"] if r["status"] == "unsupported"]
    if unsupported:
        out += ["", "## Unsupported", "", "| ID | backend | reason | source |", "|---|---|---|---|"]
        for r in unsupported:
            out.append(
                f"| {r['id']} | {r['backend']} | {_md_cell(r['message'])} | "
                f"{_unsupported_source(report, r)} |"
            )
    listed = [
        (b, sid, why) for b, m in report.get("unsupported", {}).items() for sid, why in m.items()
    ]
    if listed:
        out += ["", "## Known divergences (conformance/unsupported/*.toml)", ""]
        out += [f"- **{sid}** on {b}: {_md_cell(why)}" for b, sid, why in listed]
    out += [
        "",
        f"<sub>{_md_cell(report.get('command', ''))} · schema {report.get('schema')}</sub>",
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# HTML

_CSS = """
:root { --pass:#1a7f37; --pass-bg:#dafbe1; --fail:#cf222e; --fail-bg:#ffebe9;
        --uns:#9a6700; --uns-bg:#fff8c5; --none-bg:#f6f8fa; --line:#d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:#1f2328;
       margin: 24px auto; max-width: 1300px; padding: 0 16px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; }
.verdict { display:inline-block; padding:2px 10px; border-radius:12px; font-weight:600; }
.verdict.ok { background:var(--pass-bg); color:var(--pass); }
.verdict.bad { background:var(--fail-bg); color:var(--fail); }
.meta { color:#59636e; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid var(--line); padding: 3px 8px; vertical-align: top; text-align: left; }
th { background: var(--none-bg); position: sticky; top: 0; }
td.title { color:#59636e; max-width: 460px; }
td.cell { min-width: 110px; }
td.pass { background: var(--pass-bg); } td.fail { background: var(--fail-bg); }
td.unsupported { background: var(--uns-bg); } td.none { background: var(--none-bg); color:#8c959f; }
td.pass summary { color: var(--pass); } td.fail summary { color: var(--fail); font-weight:600; }
td.unsupported summary { color: var(--uns); }
summary { cursor: pointer; white-space: nowrap; }
details pre { white-space: pre-wrap; word-break: break-word; max-width: 560px; margin: 4px 0;
              font: 12px/1.35 ui-monospace, SFMono-Regular, Menlo, monospace; }
tr.totals td { font-weight: 600; background: #fff; }
.legend span { display:inline-block; padding:1px 8px; margin-right:6px; border-radius:4px; }
code { background: var(--none-bg); padding: 0 4px; border-radius: 4px; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _cell(status: str, summary: str, body: str, attrs: str = "") -> str:
    return (
        f'<td class="cell {_e(status)}"{attrs}><details><summary>{_e(summary)}</summary>'
        f"<pre>{_e(body)}</pre></details></td>"
    )


def _result_body(report: dict[str, Any], rec: dict[str, Any]) -> str:
    head = f"{rec['status']} in {rec.get('duration', 0):.3f} s on {rec.get('device') or '?'}"
    if rec["status"] == "unsupported":
        head += f" ({_unsupported_source(report, rec)})"
    msg = rec.get("message") or ""
    err = (rec.get("details") or {}).get("error")
    if err:
        msg += f"\n\nerror behind the known divergence: {err}"
    return head + (f"\n\n{msg}" if msg else "")


def to_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (inline CSS, no scripts, no external assets).

    The scenario × backend matrix is colour-coded; every cell is a ``<details>``
    that opens to the message or the unsupported reason. Each matrix cell carries
    ``data-id`` and ``data-backend`` attributes, each XB cell ``data-writer`` and
    ``data-reader``.
    """
    env = report["environment"]
    s = report["summary"]
    columns = list(report["backends"])  # a backend that did not run keeps its column
    not_run = _not_run(report)
    by_key = {(r["id"], r["backend"]): r for r in report["results"]}
    ok = report["ok"]
    verdict = (
        "all passed"
        if ok
        else f"not conformant: {s['failed']} failure(s)"
        + (f", missing backend(s): {', '.join(s['missing'])}" if s["missing"] else "")
    ) + _did_not_run_text(report)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>d2lcompat conformance</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>d2lcompat conformance</h1>",
        f'<p><span class="verdict {"ok" if ok else "bad"}">{_e(verdict)}</span> '
        f'<span class="meta">{_e(report.get("created", ""))} · d2lcompat {_e(env.get("d2lcompat"))} · '
        f"Python {_e(env.get('python'))} · {_e(env.get('platform'))} · {env.get('cpus')} CPU(s) · "
        f"{report.get('duration', 0):.1f} s"
        + (f" · device <code>{_e(env['device'])}</code>" if env.get("device") else "")
        + "</span></p>",
        '<p class="legend"><span style="background:var(--pass-bg)">pass</span>'
        '<span style="background:var(--fail-bg)">fail</span>'
        '<span style="background:var(--uns-bg)">unsupported</span>'
        '<span class="meta">click a cell for its message or reason</span></p>',
        "<h2 id=\"backends\">Backends</h2>",
        "<table><thead><tr><th>backend</th><th>version</th><th>devices</th><th>default device</th>"
        "<th>result</th><th>time</th></tr></thead><tbody>",
    ]
    for name in report["backends"]:
        info = env["backends"].get(name, {})
        if name in s["backends"] and not info.get("error"):
            result, cls = (
                _counts_text(s["backends"][name]),
                ("fail" if s["backends"][name]["fail"] else "pass"),
            )
        else:
            result, cls = info.get("error") or "not available", "fail"
        notes = "".join(f"<br><small>{_e(n)}</small>" for n in info.get("notes") or [])
        parts.append(
            f'<tr data-backend="{_e(name)}"><th>{_e(name)}</th><td>{_e(info.get("version") or "—")}</td>'
            f"<td>{_e(', '.join(info.get('devices') or []) or '—')}</td>"
            f"<td>{_e(info.get('default_device') or '—')}</td>"
            f'<td class="{cls}">{_e(result)}{notes}</td><td>{info.get("seconds", 0):.1f} s</td></tr>'
        )
    parts += [
        "</tbody></table>",
        "<h2 id=\"scenarios\">Scenarios</h2>",
        '<table class="matrix"><thead><tr><th>ID</th><th>scenario</th>'
        + "".join(f"<th>{_e(b)}</th>" for b in columns)
        + "</tr></thead><tbody>",
    ]
    for sid, title in _ids(report):
        row = [f'<tr id="{_e(sid)}"><th>{_e(sid)}</th><td class="title">{_e(title)}</td>']
        for b in columns:
            attrs = f' data-id="{_e(sid)}" data-backend="{_e(b)}"'
            rec = by_key.get((sid, b))
            if b in not_run:
                why = env["backends"].get(b, {}).get("error") or not_run[b]
                row.append(f'<td class="cell none"{attrs} title="{_e(why)}">{_e(not_run[b])}</td>')
            elif rec is None:
                row.append(f'<td class="cell none"{attrs}>not run</td>')
            else:
                row.append(_cell(rec["status"], rec["status"], _result_body(report, rec), attrs))
        parts.append("".join(row) + "</tr>")
    parts.append(
        '<tr class="totals"><th></th><td>pass · fail · unsupported</td>'
        + "".join(
            f"<td>{c['pass']} · {c['fail']} · {c['unsupported']}</td>"
            if (c := s["backends"].get(b)) is not None
            else f"<td>{_e(not_run.get(b, '—'))}</td>"
            for b in columns
        )
        + "</tr>"
    )
    parts.append("</tbody></table>")
    if report["xb"]:
        names = _xb_names(report)
        parts += [
            "<h2 id=\"xb\">XB — files written by (row), read by (column)</h2>",
            '<p class="meta">Each cell: XB01 (parameters file), XB02 (seeded parameters and '
            "outputs), XB03 (saved tensors, lists, dicts), XB04 (trained LeNet with "
            "BatchNorm, running statistics included), XB05 (20-step Adam loss curve), XB06 "
            "(LSTM file, seeded LSTM and its clipped 20-step curve).</p>",
            '<table class="xb"><thead><tr><th>writer \\ reader</th>'
            + "".join(f"<th>{_e(n)}</th>" for n in names)
            + "</tr></thead><tbody>",
        ]
        for w in names:
            row = [f"<tr><th>{_e(w)}</th>"]
            for rd in names:
                recs = [x for x in report["xb"] if x["writer"] == w and x["reader"] == rd]
                attrs = f' data-writer="{_e(w)}" data-reader="{_e(rd)}"'
                if not recs:
                    row.append(f'<td class="cell none"{attrs}>—</td>')
                    continue
                passed = sum(x["status"] == "pass" for x in recs)
                status = (
                    "fail"
                    if any(x["status"] == "fail" for x in recs)
                    else ("pass" if passed else "unsupported")
                )
                body = "\n".join(
                    f"{x['id']} {x['status']}" + (f": {x['message']}" if x.get("message") else "")
                    for x in recs
                )
                row.append(_cell(status, f"{passed}/{len(recs)}", body, attrs))
            parts.append("".join(row) + "</tr>")
        parts.append("</tbody></table>")
    failures = [r for r in report["results"] if r["status"] == "fail"]
    if failures:
        parts.append("<h2 id=\"failures\">Failures</h2>")
        for r in failures:
            parts.append(
                f"<details open><summary><b>{_e(r['id'])}</b> on {_e(r['backend'])}: "
                f"{_e(r['title'])}</summary><pre>{_e(r['message'])}</pre></details>"
            )
    unsupported = [r for r in report["results"] if r["status"] == "unsupported"]
    listed = [
        (b, sid, why) for b, m in report.get("unsupported", {}).items() for sid, why in m.items()
    ]
    if unsupported or listed:
        parts += [
            "<h2 id=\"unsupported\">Unsupported and known divergences</h2>",
            "<table><thead><tr><th>ID</th><th>backend</th><th>reason</th><th>source</th>"
            "</tr></thead><tbody>",
        ]
        for r in unsupported:
            parts.append(
                f"<tr><th>{_e(r['id'])}</th><td>{_e(r['backend'])}</td>"
                f"<td>{_e(r['message'])}</td><td>{_e(_unsupported_source(report, r))}</td></tr>"
            )
        seen = {(r["backend"], r["id"]) for r in unsupported}
        for b, sid, why in listed:
            if (b, sid) not in seen:
                parts.append(
                    f"<tr><th>{_e(sid)}</th><td>{_e(b)}</td><td>{_e(why)}</td>"
                    f"<td>listed in unsupported/{_e(b)}.toml (not run)</td></tr>"
                )
        parts.append("</tbody></table>")
    parts += [
        f'<p class="meta"><code>{_e(report.get("command", ""))}</code> · schema '
        f"{_e(report.get('schema'))}</p>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


WRITERS: dict[str, Callable[[dict[str, Any]], str]] = {
    ".json": to_json,
    ".md": to_markdown,
    ".markdown": to_markdown,
    ".html": to_html,
    ".htm": to_html,
}


def write(report: dict[str, Any], path: str | Path) -> Path:
    """Write ``report`` to ``path`` in the format its extension names.

    Parameters
    ----------
    report : dict
        The document made by `d2lcompat_conformance.runner.build_report`.
    path : str or Path
        ``*.json``, ``*.md`` or ``*.html``; parent folders are created.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ValueError
        For an extension with no writer.

    Examples
    --------
    >>> write({}, "out.pdf")
    Traceback (most recent call last):
    ...
    ValueError: Cannot write a conformance report as '.pdf'; use .htm, .html, .json, .markdown, .md.
    """
    path = Path(path)
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise ValueError(
            f"Cannot write a conformance report as {path.suffix!r}; use "
            f"{', '.join(sorted(WRITERS))}."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(writer(report), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m d2lcompat_conformance.report IN.json OUT.(md|html|json)...``: re-render."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m d2lcompat_conformance.report IN.json OUT.html [OUT.md ...]")
        return 2
    report = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    for out in args[1:]:
        write(report, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
