"""appcare.ops.metrics: the desk's metrics from the handoff store (the real PostgreSQL
of this machine; skipped when it is absent), without personal data."""
from __future__ import annotations

import uuid

import pytest

from tests.support.postgres import needs_pg, pg_url  # noqa: F401 - pg_url is a fixture

pytestmark = pytest.mark.timeout(120)


@needs_pg
def test_desk_metrics_from_the_handoff_store(pg_url: str) -> None:
    from appcare.handoff_store import HandoffStore
    from appcare.ops.metrics import desk_metrics, mount_desk

    store = HandoffStore(pg_url)
    first = store.open_ticket("31600000001", "request_human", "s", [], "terneuzen", channel="whatsapp")
    store.open_ticket("31600000002", "complaint", "s", [], "lelystad", channel="whatsapp")
    reply = store.add_staff_reply(first.id, "anna", "Goedemiddag")
    store.set_delivery(reply, "sent")
    store.close(first.id, "beantwoord")
    body, content_type = desk_metrics(lambda: store)
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert 'appcare_handoffs_total{municipality="terneuzen",reason="request_human"} 1.0' in text
    assert 'appcare_desk_tickets{municipality="lelystad",status="open"} 1.0' in text
    assert 'appcare_desk_staff_replies_total{delivery="sent"} 1.0' in text
    assert "appcare_desk_first_reply_seconds_count 1.0" in text and "appcare_desk_database_up 1.0" in text
    assert "3160000000" not in text

    from sanic import Sanic

    app = Sanic(f"desk_metrics_{uuid.uuid4().hex[:8]}")
    mount_desk(app, lambda: store)
    paths = {route.path for route in app.router.routes}
    assert {"metrics", "health"} <= {p.strip("/") for p in paths}
