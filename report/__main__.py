"""Writes the performance report for a period.

    python -m report --from 2026-11-01 --to 2026-11-30 [--endpoints endpoints.yml]
                     [--out reports/2026-11-01_2026-11-30] [--tickets-url URL] [--municipality NAME]
    python -m report --demo      # the data written by `python -m report.simulate`

Reads the tracker store of endpoints.yml and the ticket store of ``APPCARE_DB_URL``
(or ``--tickets-url``) and writes report.html, one CSV per table and kerncijfers.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path

DEMO_DIR = Path("reports/demo")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date like 2026-11-30") from exc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m report", description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="start", type=_date, help="first day (YYYY-MM-DD, Europe/Amsterdam)")
    parser.add_argument("--to", dest="end", type=_date, help="last day, included (YYYY-MM-DD)")
    parser.add_argument("--endpoints", default=None, help="endpoints file with the tracker store (endpoints.yml)")
    parser.add_argument("--tickets-url", default=None, help="database URL of the handoff tickets (APPCARE_DB_URL)")
    parser.add_argument("--municipality", default=None, help="only this municipality (default: all)")
    parser.add_argument("--out", default=None, help="output directory (default reports/<from>_<to>)")
    parser.add_argument("--demo", action="store_true",
                        help=f"report on the simulated data of `python -m report.simulate` ({DEMO_DIR}/simulation.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[report] %(message)s")

    endpoints, tickets_url, out = args.endpoints, args.tickets_url, args.out
    start, end = args.start, args.end
    demo = args.demo
    if demo:
        info_path = Path(out or DEMO_DIR) / "simulation.json"
        if not info_path.exists():
            parser.error(f"{info_path} is missing: run `python -m report.simulate` first (make demo-report)")
        info = json.loads(info_path.read_text(encoding="utf-8"))
        endpoints = endpoints or info["endpoints"]
        tickets_url = tickets_url or info["tickets_url"]
        start = start or dt.date.fromisoformat(info["from"])
        end = end or dt.date.fromisoformat(info["to"])
        out = out or str(DEMO_DIR)
    if not start or not end:
        parser.error("--from and --to are required (or --demo)")
    if end < start:
        parser.error("--to lies before --from")

    from report import metrics, render

    period = metrics.Period.from_dates(start, end)
    out_dir = Path(out or f"reports/{start.isoformat()}_{end.isoformat()}")
    try:
        data = metrics.collect(period, endpoints=endpoints, tickets_url=tickets_url, municipality=args.municipality)
    except (ValueError, FileNotFoundError) as exc:
        print(f"[report] {exc}", file=sys.stderr)
        return 2
    path = render.write_report(data, out_dir, demo=demo)
    t = data.totals
    print(f"[report] {period.label()}: {t['conversations']} gesprekken, {t['messages']} berichten, "
          f"zelf beantwoord {render.nl_percent(t['containment_rate'])}, in één keer {render.nl_percent(t['one_go_rate'])}, "
          f"overgedragen {render.nl_percent(t['handoff_rate'])}")
    print(f"[report] written: {path} (+ {len(data.tables)} CSV files, kerncijfers.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
