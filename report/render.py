"""Writes the report: one self-contained HTML file (charts as base64 PNG made with
matplotlib's Agg backend, no external files or scripts) and one CSV file per table
beside it (UTF-8 with BOM so Excel shows "één" correctly, comma-separated, decimal
point), plus ``kerncijfers.json`` with the key figures.

Labels in the report are Dutch; it contains counts, rates, durations and masked
example texts only.
"""
from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from jinja2 import Environment, select_autoescape  # noqa: E402

from appcare.clock import WEEKDAY_NAMES  # noqa: E402
from appcare.stats import percentile  # noqa: E402
from report.metrics import (  # noqa: E402
    ReportData,
    Table,
    municipality_label,
)

COLORS = ["#1f5fa8", "#e07b00", "#2e9e5b", "#8e44ad", "#c0392b", "#16a2b8", "#7f8c8d"]
DPI = 110


# --------------------------------------------------------------------------- formatting


def nl_number(value: Any, digits: int = 1) -> str:
    """Dutch notation: 1.234 and 71,4."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "ja" if value else "nee"
    if isinstance(value, int):
        return f"{value:,}".replace(",", ".")
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}".replace(",", ".")
        text = f"{value:,.{digits}f}"
        return text.replace(",", "X").replace(".", ",").replace("X", ".")
    return str(value)


def nl_percent(rate: Optional[float]) -> str:
    return "–" if rate is None else nl_number(rate * 100.0) + "%"


def nl_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    minutes = seconds / 60.0
    if minutes < 1:
        return f"{nl_number(float(seconds), 0)} s"
    if minutes < 120:
        return f"{nl_number(minutes, 0 if minutes >= 10 else 1)} min"
    hours = minutes / 60.0
    if hours < 48:
        return f"{nl_number(hours, 1)} uur"
    return f"{nl_number(hours / 24.0, 1)} dagen"


def nl_ms(ms: Optional[float]) -> str:
    if ms is None:
        return "–"
    if ms >= 1000:
        return f"{nl_number(ms / 1000.0, 2)} s"
    return f"{nl_number(float(round(ms)), 0)} ms"


# --------------------------------------------------------------------------- charts


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float = 7.5, height: float = 3.2):
    fig, ax = plt.subplots(figsize=(width, height))
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, ax


def _no_data(ax, title: str) -> None:
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    ax.text(0.5, 0.5, "Geen gegevens in deze periode", ha="center", va="center", fontsize=12,
            color="#555555", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def chart_per_day(data: ReportData) -> str:
    days = data.series["days"]
    per_day = data.series["conversations_per_day"]
    fig, ax = _figure(8.5, 3.2)
    title = "Gesprekken per dag"
    if not any(sum(v) for v in per_day.values()):
        _no_data(ax, title)
        return _png(fig)
    bottom = [0] * len(days)
    positions = list(range(len(days)))
    for i, (municipality, values) in enumerate(sorted(per_day.items())):
        ax.bar(positions, values, bottom=bottom, color=COLORS[i % len(COLORS)], label=municipality_label(municipality))
        bottom = [a + b for a, b in zip(bottom, values)]
    step = max(1, len(days) // 14)
    ax.set_xticks(positions[::step])
    ax.set_xticklabels([f"{d[8:10]}-{d[5:7]}" for d in days[::step]], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("gesprekken")
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    return _png(fig)


def chart_per_hour(data: ReportData) -> str:
    conversations = data.series["conversations_per_hour"]
    messages = data.series["messages_per_hour"]
    fig, ax = _figure()
    title = "Gesprekken en berichten per uur van de dag (Nederlandse tijd)"
    if not sum(messages):
        _no_data(ax, title)
        return _png(fig)
    hours = list(range(24))
    for index, item in enumerate(data.series.get("kcc_weekday_hours") or []):
        start, end = item.split("-")
        begin = int(start[:2]) + int(start[3:]) / 60.0 - 0.5
        finish = int(end[:2]) + int(end[3:]) / 60.0 - 0.5
        ax.axvspan(begin, finish, color="#e3edf8", zorder=0,
                   label=f"KCC open op werkdagen ({item.replace('-', '–')})" if index == 0 else None)
    ax.bar(hours, conversations, color=COLORS[0], label="gesprekken (start)")
    ax.plot(hours, messages, color=COLORS[1], marker="o", markersize=3, linewidth=1.5, label="berichten")
    ax.set_xticks(hours)
    ax.set_xticklabels([f"{h}" for h in hours], fontsize=8)
    ax.set_xlabel("uur")
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    return _png(fig)


def chart_per_weekday(data: ReportData) -> str:
    values = data.series["conversations_per_weekday"]
    fig, ax = _figure(6.0, 3.0)
    title = "Gesprekken per dag van de week"
    if not sum(values):
        _no_data(ax, title)
        return _png(fig)
    ax.bar(range(7), values, color=[COLORS[0]] * 5 + [COLORS[6]] * 2)
    ax.set_xticks(range(7))
    ax.set_xticklabels([d[:2] for d in WEEKDAY_NAMES])
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    return _png(fig)


def _barh(items: Sequence[Tuple[str, float]], title: str, color: str, xlabel: str = "") -> str:
    height = max(2.2, 0.42 * len(items) + 1.0)
    fig, ax = _figure(7.5, height)
    ax.grid(axis="y", visible=False)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if not items or not any(v for _, v in items):
        _no_data(ax, title)
        return _png(fig)
    labels = [label for label, _ in items][::-1]
    values = [value for _, value in items][::-1]
    positions = list(range(len(labels)))
    bars = ax.barh(positions, values, color=color)
    ax.set_yticks(positions)
    ax.set_yticklabels(labels)
    for bar, value in zip(bars, values):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {nl_number(value)}", va="center", fontsize=8)
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    if xlabel:
        ax.set_xlabel(xlabel)
    return _png(fig)


def chart_topics(data: ReportData) -> str:
    return _barh(data.series["topics"][:12], "Onderwerpen (berichten)", COLORS[0])


def chart_outcomes(data: ReportData) -> str:
    items = [(label, value) for label, value in data.series["outcomes"]]
    fig, ax = _figure(7.5, 1.9)
    title = "Uitkomst van de gesprekken"
    total = sum(v for _, v in items)
    if not total:
        _no_data(ax, title)
        return _png(fig)
    ax.grid(visible=False)
    left = 0
    colors = [COLORS[2], "#9ccfb0", COLORS[1], COLORS[6]]
    for (label, value), color in zip(items, colors):
        if not value:
            continue
        ax.barh([0], [value], left=left, color=color, label=f"{label} ({nl_number(value)})")
        if value / total >= 0.07:
            ax.text(left + value / 2, 0, f"{nl_number(100.0 * value / total, 0)}%", ha="center", va="center",
                    color="white", fontsize=10, fontweight="bold")
        left += value
    ax.set_xlim(0, total)
    ax.set_ylim(-0.5, 0.5)
    ax.set_yticks([])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("gesprekken")
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.55), ncol=2)
    return _png(fig)


def chart_reasons(data: ReportData) -> str:
    return _barh(data.series["reasons"], "Redenen van overdracht (gesprekken)", COLORS[1])


def chart_latency(data: ReportData) -> str:
    values = data.series["latencies_ms"]
    fig, ax = _figure(7.5, 3.0)
    title = "Reactietijd van de assistent"
    if not values:
        _no_data(ax, title)
        return _png(fig)
    top = percentile(values, 99) or max(values)
    clipped = [min(v, top) for v in values]
    ax.hist(clipped, bins=30, color=COLORS[0])
    for p, style in ((50, "-"), (95, "--")):
        value = percentile(values, p)
        ax.axvline(value, color=COLORS[4], linestyle=style, linewidth=1.3, label=f"p{p}: {nl_ms(value)}")
    ax.set_xlabel("milliseconden (van bericht tot eerste antwoord)")
    ax.set_ylabel("antwoorden")
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    ax.legend(frameon=False, fontsize=8)
    return _png(fig)


def chart_first_reply(data: ReportData) -> str:
    groups = data.series["first_reply_min"]
    fig, ax = _figure(7.5, 2.6)
    title = "Eerste reactie van een medewerker na overdracht"
    present = [(label, values) for label, values in groups.items() if values]
    if not present:
        _no_data(ax, title)
        return _png(fig)
    ax.grid(axis="y", visible=False)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.8)
    hours = [[v / 60.0 for v in values] for _, values in present]
    ax.boxplot(hours, vert=False, labels=[f"{label} (n={len(values)})" for label, values in present],
               widths=0.5, patch_artist=True, showfliers=False, boxprops={"facecolor": "#d6e4f5"},
               medianprops={"color": COLORS[4], "linewidth": 2})
    jitter = [((i * 7919) % 100) / 100.0 * 0.3 - 0.15 for i in range(max(len(v) for v in hours))]
    for row, values in enumerate(hours, 1):
        ax.scatter(values, [row + jitter[i] for i in range(len(values))], s=12, color=COLORS[0], alpha=0.7, zorder=3)
    ax.set_xlabel("uren")
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    return _png(fig)


def chart_feedback(data: ReportData) -> str:
    feedback = data.series["feedback"]
    fig, ax = _figure(6.0, 2.8)
    title = "Feedback van inwoners"
    if not any(up or down for up, down in feedback.values()):
        _no_data(ax, title)
        return _png(fig)
    labels = list(feedback)
    positions = list(range(len(labels)))
    ups = [feedback[m][0] for m in labels]
    downs = [feedback[m][1] for m in labels]
    ax.bar([p - 0.2 for p in positions], ups, width=0.4, color=COLORS[2], label="duim omhoog")
    ax.bar([p + 0.2 for p in positions], downs, width=0.4, color=COLORS[4], label="duim omlaag")
    ax.set_xticks(positions)
    ax.set_xticklabels(labels)
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    ax.legend(frameon=False, fontsize=8)
    return _png(fig)


CHARTS = [
    ("per_dag", "Gesprekken per dag", chart_per_day),
    ("per_uur", "Per uur", chart_per_hour),
    ("per_weekdag", "Per weekdag", chart_per_weekday),
    ("onderwerpen", "Onderwerpen", chart_topics),
    ("uitkomst", "Uitkomst", chart_outcomes),
    ("redenen", "Redenen van overdracht", chart_reasons),
    ("reactietijd", "Reactietijd assistent", chart_latency),
    ("eerste_reactie", "Eerste reactie medewerker", chart_first_reply),
    ("feedback", "Feedback", chart_feedback),
]


# --------------------------------------------------------------------------- CSV


def write_csv(table: Table, directory: Path) -> Path:
    path = directory / f"{table.name}.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(table.columns)
        for row in table.rows:
            writer.writerow(["" if value is None else value for value in row])
    return path


# --------------------------------------------------------------------------- HTML

TEMPLATE = r"""<!DOCTYPE html>
<html lang="nl">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
  body { font-family: "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d2733; margin: 0; background: #f5f7fa; }
  main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
  h1 { font-size: 26px; margin: 0 0 4px; color: #15406e; }
  h2 { font-size: 19px; margin: 36px 0 8px; color: #15406e; border-bottom: 2px solid #e3e9f1; padding-bottom: 4px; }
  h3 { font-size: 15px; margin: 20px 0 6px; }
  p.sub { margin: 0 0 16px; color: #4a5866; }
  .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; margin: 18px 0; }
  .card { border: 1px solid #dfe6ee; border-radius: 8px; padding: 12px 14px; background: #fbfcfe; }
  .card .value { font-size: 26px; font-weight: 700; color: #15406e; }
  .card .label { font-size: 13px; color: #4a5866; }
  .card .detail { font-size: 12px; color: #6b7885; margin-top: 2px; }
  img.chart { max-width: 100%; height: auto; display: block; margin: 10px 0; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 8px 0 4px; }
  th, td { border-bottom: 1px solid #e3e9f1; padding: 5px 8px; text-align: right; vertical-align: top; }
  th { background: #eef3f9; font-weight: 600; }
  th:first-child, td:first-child, td.text { text-align: left; }
  td:first-child, td.text { white-space: nowrap; }
  td.long { white-space: normal; }
  tr.total td { font-weight: 600; background: #f7f9fc; }
  .note { font-size: 12px; color: #5f6b78; margin: 2px 0 10px; }
  .csv { font-size: 12px; }
  .notice { background: #fff7e6; border: 1px solid #f0d08a; padding: 8px 12px; border-radius: 6px; font-size: 13px; }
  nav ol { columns: 2; font-size: 14px; }
  dl dt { font-weight: 600; margin-top: 8px; }
  dl dd { margin: 2px 0 0 0; font-size: 14px; }
  @media print { body { background: #fff; } main { padding: 0; } h2 { page-break-after: avoid; } img.chart { page-break-inside: avoid; } }
</style>
</head>
<body>
<main>
<h1>{{ title }}</h1>
<p class="sub">Periode: <strong>{{ period }}</strong>{% if municipality %} · Gemeente: <strong>{{ municipality }}</strong>{% endif %}
 · Gemaakt op {{ generated }} · Bron: gespreksgegevens van de assistent en tickets van het klantcontactcentrum (KCC)</p>
{% if demo %}<p class="notice"><strong>Demonstratie:</strong> dit rapport is gemaakt met gesimuleerde gesprekken, niet met echte inwoners.</p>{% endif %}
{% for note in notes %}<p class="notice">{{ note }}</p>{% endfor %}

<div class="cards">
{% for card in cards %}
  <div class="card"><div class="value">{{ card.value }}</div><div class="label">{{ card.label }}</div>{% if card.detail %}<div class="detail">{{ card.detail }}</div>{% endif %}</div>
{% endfor %}
</div>

<nav><strong>Inhoud</strong><ol>
{% for section in sections %}<li><a href="#{{ section.id }}">{{ section.title }}</a></li>{% endfor %}
<li><a href="#uitleg">Zo lees je dit rapport</a></li>
</ol></nav>

{% for section in sections %}
<section id="{{ section.id }}">
<h2>{{ section.title }}</h2>
{% if section.intro %}<p>{{ section.intro }}</p>{% endif %}
{% for chart in section.charts %}<img class="chart" alt="{{ chart.alt }}" src="data:image/png;base64,{{ chart.data }}">
{% endfor %}
{% for table in section.tables %}
<h3>{{ table.title }}</h3>
{% if table.rows %}
<table>
<thead><tr>{% for column in table.columns %}<th>{{ column }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in table.rows %}<tr{% if row.total %} class="total"{% endif %}>{% for cell in row.cells %}<td{% if cell.text %} class="text{% if cell.long %} long{% endif %}"{% endif %}>{{ cell.value }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
{% else %}<p class="note">Geen gegevens in deze periode.</p>{% endif %}
{% if table.note %}<p class="note">{{ table.note }}</p>{% endif %}
<p class="csv">Tabel als CSV: <a href="{{ table.csv }}">{{ table.csv }}</a>{% if table.truncated %} (de CSV bevat alle {{ table.total_rows }} regels){% endif %}</p>
{% endfor %}
</section>
{% endfor %}

<section id="uitleg">
<h2>Zo lees je dit rapport</h2>
<dl>
<dt>Gesprek</dt><dd>Eén sessie van één inwoner met de assistent. Na 4 uur stilte begint een nieuw gesprek. Een gesprek telt mee op de dag en het uur van het eerste bericht (Nederlandse tijd, zomer- en wintertijd meegerekend).</dd>
<dt>Berichten</dt><dd>Berichten van inwoners, inclusief klikken op knoppen. Antwoorden van de assistent en van medewerkers tellen niet mee.</dd>
<dt>Zelf beantwoord</dt><dd>Gesprekken die de assistent helemaal zelf afhandelde: er is niet overgedragen aan het KCC en er liep geen gesprek met een medewerker.</dd>
<dt>In één keer beantwoord</dt><dd>Zelf beantwoord, zonder verduidelijkingsvraag, zonder verzoek om de vraag anders te stellen en zonder bericht dat de assistent niet begreep.</dd>
<dt>Overgedragen</dt><dd>Gesprekken waarin de assistent het gesprek aan een medewerker van het KCC gaf, met de reden: de inwoner vroeg erom, een persoonlijke zaak, een klacht, een onderwerp dat de assistent niet kent, of twee keer niet begrepen.</dd>
<dt>Niet begrepen</dt><dd>Berichten die de assistent niet met genoeg zekerheid herkende (fallback) of waarop hij een verduidelijkingsvraag stelde.</dd>
<dt>KCC-uren</dt><dd>De openingstijden van het klantcontactcentrum van de gemeente, met feestdagen en uitzonderingen.</dd>
<dt>Reactietijd assistent</dt><dd>Tijd van het bericht van de inwoner tot het eerste antwoord van de assistent. p50 is de mediaan (de helft is sneller), p95: 95% van de antwoorden is sneller.</dd>
<dt>Eerste reactie medewerker</dt><dd>Tijd van de overdracht tot het eerste antwoord van een medewerker; afhandeltijd: tot het sluiten van het ticket. Buiten KCC-uren wacht een inwoner tot het KCC weer open is.</dd>
<dt>Feedback</dt><dd>Na een feitelijk antwoord vraagt de assistent één keer "Heb je hier iets aan gehad?" met een duim omhoog of omlaag.</dd>
<dt>Privacy</dt><dd>Dit rapport bevat alleen aantallen, percentages, tijden en voorbeeldvragen waarin persoonsgegevens (BSN, telefoonnummer, e-mail, adres, namen) zijn vervangen. Een voorbeeldvraag staat er alleen in als hij minstens twee keer voorkwam of als er iets in is gemaskeerd. Er staan geen telefoonnummers of andere kenmerken van inwoners in.</dd>
</dl>
</section>
</main>
</body>
</html>
"""

HTML_ROW_LIMIT = 60


def _exact_number(value: Any) -> str:
    """Like nl_number, with as many decimals (up to 4) as the value has: rates such as
    0,0084 euro and averages such as 2,35 are not rounded away."""
    if isinstance(value, float) and not isinstance(value, bool):
        digits = next((d for d in range(1, 5) if round(value, d) == value), 4)
        return nl_number(value, digits)
    return nl_number(value)


def _cells(row: Sequence[Any], exact: bool = False) -> List[Dict[str, Any]]:
    fmt = _exact_number if exact else nl_number
    return [{"value": fmt(v), "text": isinstance(v, str), "long": isinstance(v, str) and len(v) > 40}
            for v in row]


def _table_view(table: Table, rows: Optional[List[List[Any]]] = None, limit: int = HTML_ROW_LIMIT,
                exact: bool = False) -> Dict[str, Any]:
    source = table.rows if rows is None else rows
    return {
        "title": table.title,
        "columns": table.columns,
        "rows": [{"cells": _cells(row, exact), "total": "Alle" in row[:3] and table.name.startswith("per_")}
                 for row in source[:limit]],
        "note": table.note,
        "csv": f"{table.name}.csv",
        "truncated": len(source) > limit or rows is not None and len(rows) != len(table.rows),
        "total_rows": len(table.rows),
    }


def _cards(data: ReportData) -> List[Dict[str, str]]:
    t = data.totals
    return [
        {"value": nl_number(t["conversations"]), "label": "gesprekken",
         "detail": f"{nl_number(t['messages'])} berichten van inwoners"},
        {"value": nl_percent(t["containment_rate"]), "label": "zelf beantwoord door de assistent",
         "detail": f"{nl_number(t['contained'])} gesprekken zonder medewerker"},
        {"value": nl_percent(t["one_go_rate"]), "label": "in één keer beantwoord",
         "detail": f"{nl_number(t['one_go'])} gesprekken zonder verduidelijking"},
        {"value": nl_percent(t["handoff_rate"]), "label": "overgedragen aan het KCC",
         "detail": f"{nl_number(t['handoffs'])} gesprekken"},
        {"value": nl_ms(t["bot_latency_ms_p50"]), "label": "reactietijd assistent (mediaan)",
         "detail": f"p95: {nl_ms(t['bot_latency_ms_p95'])}"},
        {"value": nl_duration(t["human_first_reply_median_s"]), "label": "eerste reactie medewerker (mediaan)",
         "detail": f"{nl_number(t['tickets_answered'])} van {nl_number(t['tickets'])} overdrachten beantwoord"},
        {"value": f"{nl_number(t['feedback_up'])} / {nl_number(t['feedback_down'])}",
         "label": "duim omhoog / omlaag", "detail": f"{nl_percent(t['feedback_positive_rate'])} positief"},
        {"value": nl_number(t["not_understood"]), "label": "niet begrepen berichten",
         "detail": f"{nl_number(t['conversations_with_clarification'])} gesprekken met verduidelijkingsvraag"},
    ]


def render_html(data: ReportData, demo: bool = False) -> str:
    charts = {key: {"alt": alt, "data": fn(data)} for key, alt, fn in CHARTS}
    tables = data.tables
    day_totals = [row for row in tables["per_dag"].rows if row[1] == "Alle"]
    sections = [
        {"id": "kerncijfers", "title": "Kerncijfers", "charts": [charts["uitkomst"]],
         "tables": [_table_view(tables["kerncijfers"], exact=True), _table_view(tables["per_gemeente_kanaal"])]},
        {"id": "wanneer", "title": "Wanneer: per dag, week, maand, uur en weekdag",
         "charts": [charts["per_dag"], charts["per_uur"], charts["per_weekdag"]],
         "tables": [_table_view(tables["per_dag"], day_totals), _table_view(tables["per_week"]),
                    _table_view(tables["per_maand"]), _table_view(tables["per_uur"]),
                    _table_view(tables["per_weekdag"]), _table_view(tables["kcc_uren"])]},
        {"id": "onderwerpen", "title": "Waarover: onderwerpen en vragen", "charts": [charts["onderwerpen"]],
         "tables": [_table_view(tables["onderwerpen"]), _table_view(tables["topvragen"]),
                    _table_view(tables["niet_begrepen"]), _table_view(tables["intenties"])]},
        {"id": "overdracht", "title": "Overdracht aan het klantcontactcentrum", "charts": [charts["redenen"]],
         "tables": [_table_view(tables["overdracht_redenen"])]},
        {"id": "snelheid", "title": "Snelheid", "charts": [charts["reactietijd"], charts["eerste_reactie"]],
         "tables": [_table_view(tables["snelheid"])]},
        {"id": "feedback", "title": "Feedback van inwoners", "charts": [charts["feedback"]],
         "tables": [_table_view(tables["feedback"])]},
    ]
    if "whatsapp_kosten" in tables and tables["whatsapp_kosten"].rows:
        sections.append({"id": "whatsapp", "title": "WhatsApp-berichten en geschatte kosten", "charts": [],
                         "tables": [_table_view(tables["whatsapp_kosten"], exact=True)]})
    sections[1]["tables"][0]["title"] = "Per dag (alle gemeenten en kanalen; de CSV heeft ook de uitsplitsing)"
    environment = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    template = environment.from_string(TEMPLATE)
    return template.render(
        title="Prestaties van de digitale assistent",
        period=data.period.label(),
        municipality=municipality_label(data.municipality_filter) if data.municipality_filter else None,
        generated=data.generated_at.strftime("%d-%m-%Y %H:%M"),
        demo=demo,
        notes=data.notes,
        cards=_cards(data),
        sections=sections,
    )


def write_report(data: ReportData, out_dir: Path, demo: bool = False) -> Path:
    """Writes report.html, one CSV per table and kerncijfers.json into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for table in data.tables.values():
        write_csv(table, out_dir)
    figures = dict(data.totals)
    figures["period_start"] = data.period.start.isoformat()
    figures["period_end"] = data.period.end.isoformat()
    figures["municipality"] = data.municipality_filter
    figures["by_municipality"] = data.by_municipality
    (out_dir / "kerncijfers.json").write_text(json.dumps(figures, indent=2, ensure_ascii=False), encoding="utf-8")
    path = out_dir / "report.html"
    path.write_text(render_html(data, demo=demo), encoding="utf-8")
    return path
