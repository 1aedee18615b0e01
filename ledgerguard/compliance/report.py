"""Render the monthly compliance report (Jinja2 ``monthly_report`` in zh-CN or en) with its charts,
and write it to ``<home>/reports/monthly/<YYYY-MM>/``. Prefect-free.

Charts in the email. apprise's email plugin sends an HTML body and attachments but cannot set a
``Content-ID`` on a part, so ``<img src="cid:…">`` is impossible. The HTML therefore carries each
chart as a ``data:image/png;base64,…`` URI (shown inline by Apple Mail, Thunderbird, Outlook on
the web, most mobile clients, and the Prefect/browser view of report.html) *and* every PNG is
attached, because some clients (Gmail's web client, desktop Outlook) block data URIs: there the
images are one click away as attachments. The cost is size: each chart travels twice (~30–60 KB
each, base64 adds a third), well under any mail server's limit for four charts.

The templates write a placeholder ``lgchart:<name>`` where an image goes; it is replaced after
rendering because every ``{{ value }}`` passes through PII masking, which would rewrite digit runs
inside a base64 payload.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ledgerguard.channels.messaging import RenderedMessage, render_message
from ledgerguard.compliance.charts import Chart
from ledgerguard.compliance.monthly import MonthlyFigures, local_date

__all__ = ["ReportFiles", "TEMPLATE", "inline_charts", "render_report", "report_context", "write_report"]

TEMPLATE = "monthly_report"
PLACEHOLDER = "lgchart:"
_IMAGE_MD = re.compile(r"!\[([^\]]*)\]\(" + re.escape(PLACEHOLDER) + r"([a-z_]+)\)")


def _hours(minutes: float | None) -> float | None:
    return None if minutes is None else round(minutes / 60, 1)


def _time_rows(figures: MonthlyFigures, group: str, names: dict[str, str]) -> list[dict[str, Any]]:
    mttr = {s.key: s for s in getattr(figures.mttr, group)}
    rows = []
    for a in getattr(figures.mtta, group):
        r = mttr.get(a.key)
        rows.append({"key": a.key, "name": names.get(a.key, a.key), "incidents": a.incidents,
                     "acknowledged": a.measured, "mtta_median": a.median_minutes, "mtta_mean": a.mean_minutes,
                     "resolved": r.measured if r else 0, "mttr_median_h": _hours(r.median_minutes if r else None),
                     "mttr_mean_h": _hours(r.mean_minutes if r else None),
                     "mttr_median": r.median_minutes if r else None})
    return rows


def month_label(month: str, language: str) -> str:
    year, mon = month.split("-")
    if language.startswith("zh"):
        return f"{int(year)}年{int(mon)}月"
    names = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December"]
    return f"{names[int(mon) - 1]} {year}"


def report_context(*, figures: MonthlyFigures, language: str, agency_name: str, type_names: dict[str, str],
                   charts: list[Chart], run_url: str | None = None, folder: str | None = None) -> dict[str, Any]:
    f = figures
    first = local_date(f.start, f.timezone)
    last = local_date(f.end, f.timezone)
    consistency = f.consistency or None
    problems = (consistency or {}).get("problems") or []
    return {
        "agency": {"name": agency_name},
        "month": f.month, "month_label": month_label(f.month, language),
        "first_day": first.isoformat(), "next_first_day": last.isoformat(), "as_of": f.as_of.isoformat(),
        "f": f.model_dump(mode="json"),
        "types": type_names,
        "by_type": _time_rows(f, "by_type", type_names),
        "by_level": _time_rows(f, "by_level", {}),
        "overall": {
            "mtta_median": f.mtta.overall.median_minutes, "mtta_mean": f.mtta.overall.mean_minutes,
            "mttr_median_h": _hours(f.mttr.overall.median_minutes), "mttr_mean_h": _hours(f.mttr.overall.mean_minutes),
            "acknowledged": f.mtta.overall.measured, "resolved": f.mttr.overall.measured},
        "charts": [{"name": c.name, "title": c.title, "src": f"{PLACEHOLDER}{c.name}", "file": f"charts/{c.name}.png"}
                   for c in charts],
        "consistency": consistency, "problems": problems[:30], "more_problems": max(0, len(problems) - 30),
        "run": {"url": run_url}, "folder": folder,
    }


def _data_uri(chart: Chart) -> str:
    return "data:image/png;base64," + base64.b64encode(chart.png).decode("ascii")


def inline_charts(html: str, charts: list[Chart]) -> str:
    """Each ``lgchart:<name>`` of the HTML → the chart as a data URI."""
    for chart in charts:
        html = html.replace(f"{PLACEHOLDER}{chart.name}", _data_uri(chart))
    return html


def markdown_with_files(markdown: str) -> str:
    """Image references to the PNG files beside report.md."""
    return _IMAGE_MD.sub(lambda m: f"![{m.group(1)}](charts/{m.group(2)}.png)", markdown)


def markdown_for_artifact(markdown: str, folder: Path) -> str:
    """The Prefect UI cannot show a file of this machine: the chart is named with its path."""
    return _IMAGE_MD.sub(lambda m: f"*{m.group(1)}: `{folder / 'charts' / (m.group(2) + '.png')}`*", markdown)


def render_report(*, figures: MonthlyFigures, charts: list[Chart], language: str, agency_name: str,
                  type_names: dict[str, str], templates_dir: Path | None = None, timezone_name: str | None = None,
                  run_url: str | None = None, folder: Path | None = None) -> RenderedMessage:
    """The report as a message: subject, text, HTML with the charts inline, markdown with
    placeholders (see :func:`markdown_with_files` / :func:`markdown_for_artifact`)."""
    context = report_context(figures=figures, language=language, agency_name=agency_name, type_names=type_names,
                             charts=charts, run_url=run_url, folder=str(folder) if folder else None)
    message = render_message(name=TEMPLATE, language=language, context=context, templates_dir=templates_dir,
                             timezone_name=timezone_name or figures.timezone)
    return replace(message, html=inline_charts(message.html, charts) if message.html else None)


@dataclass(frozen=True)
class ReportFiles:
    folder: Path
    html: Path
    markdown: Path
    figures: Path
    charts: list[Path]


def write_report(*, folder: Path, message: RenderedMessage, charts: list[Chart], figures: MonthlyFigures) -> ReportFiles:
    """report.html (self-contained: charts inline), report.md (charts beside it), charts/*.png,
    figures.json (every figure, for an auditor or a spreadsheet). A re-run overwrites them."""
    from ledgerguard.compliance.charts import write_charts

    folder.mkdir(parents=True, exist_ok=True)
    chart_paths = write_charts(charts, folder / "charts")
    html = folder / "report.html"
    html.write_text(message.html or message.text, encoding="utf-8")
    markdown = folder / "report.md"
    markdown.write_text(markdown_with_files(message.markdown or message.text), encoding="utf-8")
    data = folder / "figures.json"
    data.write_text(json.dumps(figures.model_dump(mode="json"), ensure_ascii=False, indent=2), encoding="utf-8")
    return ReportFiles(folder=folder, html=html, markdown=markdown, figures=data, charts=chart_paths)
