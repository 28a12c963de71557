"""The coordinator's overview (``/overview``, ``/api/overview``) and the full
performance report (report/) downloaded from it.

``GET /overview/report?from=YYYY-MM-DD&to=YYYY-MM-DD&format=html|zip`` computes the
report for the period in-process (in a worker thread, like ``make report``) and sends
it as a download: ``format=html`` the report page, ``format=zip`` its CSV files (plus
kerncijfers.json). Coordinators only (permission ``overview``). The download is
written to a temporary directory that is removed afterwards; the audit log records
who downloaded which period (no conversation content).
"""
from __future__ import annotations

import datetime as dt
import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from sanic import Blueprint, response
from sanic.request import Request

from desk.web import jsonr, needs, render, run, user_of

MAX_DAYS = 366

bp = Blueprint("desk_overview")


def parse_period(start: Optional[str], end: Optional[str]) -> Tuple[Optional[Tuple[dt.date, dt.date]], Optional[str]]:
    """((from, to), None) or (None, a Dutch message for the coordinator)."""
    dates = []
    for text, label in ((start, "begindatum"), (end, "einddatum")):
        if not text:
            return None, f"Vul een {label} in."
        try:
            dates.append(dt.date.fromisoformat(text))
        except ValueError:
            return None, f"De {label} '{text}' is geen geldige datum."
    if dates[1] < dates[0]:
        return None, "De einddatum ligt vóór de begindatum."
    if (dates[1] - dates[0]).days >= MAX_DAYS:
        return None, "Kies een periode van hoogstens een jaar."
    return (dates[0], dates[1]), None


def build_report(start: dt.date, end: dt.date, endpoints: Any, tickets_url: Optional[str],
                 fmt: str) -> Tuple[bytes, Dict[str, Any]]:
    """The report as bytes (report.html, or a ZIP with the CSV files) and its key figures."""
    from report import metrics, render

    period = metrics.Period.from_dates(start, end)
    data = metrics.collect(period, endpoints=endpoints, tickets_url=tickets_url)
    with tempfile.TemporaryDirectory(prefix="appcare-report-") as tmp:
        out = Path(tmp)
        path = render.write_report(data, out)
        if fmt == "html":
            body = path.read_bytes()
        else:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for file in sorted(out.iterdir()):
                    if file.suffix in (".csv", ".json"):
                        archive.write(file, file.name)
            body = buffer.getvalue()
    return body, {"conversations": data.totals.get("conversations")}


@bp.get("/overview")
@needs("overview")
async def overview_page(request: Request):
    overview = await run(request.app.ctx.service.overview)
    return render(request, "overview.html", overview=overview)


@bp.get("/api/overview")
@needs("overview")
async def api_overview(request: Request):
    return jsonr(await run(request.app.ctx.service.overview))


@bp.get("/overview/report")
@needs("overview")
async def report_download(request: Request):
    ctx = request.app.ctx
    fmt = request.args.get("format") or "html"
    if fmt not in ("html", "zip"):
        fmt = "html"
    form = {"from": request.args.get("from") or "", "to": request.args.get("to") or ""}
    period, problem = parse_period(form["from"], form["to"])
    if period is None:
        return render(request, "overview.html", status=422, overview=await run(ctx.service.overview),
                      report_form=form, report_error=problem)
    start, end = period
    try:
        body, _figures = await run(build_report, start, end, ctx.editor.endpoints, ctx.settings.db_url, fmt)
    except (ValueError, FileNotFoundError, OSError) as exc:
        await run(ctx.store.audit, user_of(request)["username"], "report_failed", None,
                  {"from": start.isoformat(), "to": end.isoformat(), "error": type(exc).__name__})
        return render(request, "overview.html", status=500, overview=await run(ctx.service.overview),
                      report_form=form,
                      report_error="Het rapport kon niet worden gemaakt: de gegevens zijn nu niet te lezen. "
                                   "Probeer het later opnieuw of vraag het aan de beheerder.")
    await run(ctx.store.audit, user_of(request)["username"], "report_downloaded", None,
              {"from": start.isoformat(), "to": end.isoformat(), "format": fmt})
    name = f"rapport_{start.isoformat()}_{end.isoformat()}"
    if fmt == "html":
        return response.raw(body, content_type="text/html; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}.html"'})
    return response.raw(body, content_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}_csv.zip"'})
