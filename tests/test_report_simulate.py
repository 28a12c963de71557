"""report.simulate through the real assistant: a handful of conversations with the
trained model (starts its own action server and Rasa server, about a minute), then the
report on what it stored. Skipped only when no trained model exists (`make train`)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from appcare.plugins import live_model


def test_simulation_through_the_real_assistant(tmp_path):
    from report import metrics, render, simulate

    model = live_model.served()
    if model is None:
        pytest.skip("no trained model in models/ (run `make train`)")
    kinds = ["passport", "human", "unclear", "opening", "complaint", "greet_topic", "roadworks"]
    info = simulate.simulate(tmp_path / "demo", conversations=len(kinds), days=3, seed=7, model=model, kinds=kinds)
    out = tmp_path / "demo"
    assert json.loads((out / "simulation.json").read_text())["conversations"] == len(kinds)
    assert Path(info["tracker_db"]).exists() and Path(info["endpoints"]).exists()

    # Every event came from Rasa; timestamps were shifted per conversation, order kept.
    engine = sa.create_engine(f"sqlite:///{info['tracker_db']}")
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT sender_id, timestamp, type_name FROM events ORDER BY sender_id, id")).all()
    engine.dispose()
    assert len({r.sender_id for r in rows}) == len(kinds)
    assert {"session_started", "user", "bot", "action", "slot"} <= {r.type_name for r in rows}
    by_sender = {}
    for row in rows:
        by_sender.setdefault(row.sender_id, []).append(row.timestamp)
    for sender, stamps in by_sender.items():
        assert stamps == sorted(stamps), sender

    period = metrics.Period.of(info["from"], info["to"])
    data = metrics.collect(period, endpoints=info["endpoints"], tickets_url=info["tickets_url"])
    t = data.totals
    assert t["conversations"] == len(kinds)
    assert t["messages"] >= len(kinds)
    assert set(data.municipalities) <= {"terneuzen", "lelystad"}
    assert set(data.channels) <= {"whatsapp", "rest"}
    assert t["handoffs"] >= 2  # asked for a human, a complaint (and maybe twice not understood)
    assert t["tickets"] == t["handoffs"]  # every handoff opened exactly one ticket, in the period
    assert 0 < t["bot_latency_ms_p50"] < 10_000
    assert t["contained"] >= 3
    # The model decides the reason of each handoff; an explicit request for a human is unambiguous.
    assert t["handoff_reasons"].get("request_human", 0) >= 1
    tickets = metrics.load_tickets(info["tickets_url"], period)
    for ticket in tickets:
        assert period.start_ts <= ticket.created < period.end_ts
        if ticket.first_reply is not None:
            assert ticket.first_reply >= ticket.created
        if ticket.closed is not None:
            assert ticket.closed >= ticket.created
    path = render.write_report(data, out)
    assert path.exists() and (out / "kerncijfers.csv").exists()
    html = path.read_text(encoding="utf-8")
    for sender in by_sender:
        assert sender not in html
    metrics.dispose_engines()
