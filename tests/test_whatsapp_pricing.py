"""Per-message pricing (issue 15): the ``pricing`` object of Meta's status webhooks is
recorded on the outbox row of the message it reports on, through the real channel
(Sanic server, signed webhooks, tests/fake_graph_api.py as Meta). The first status
that carries pricing wins, so a message is never counted twice.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from channels.webhook_parser import parse_webhook
from channels.whatsapp import ScaleSettings, WhatsAppInput
from tests.fake_graph_api import FakeGraphAPI
from tests.test_whatsapp_channel import (
    APP_SECRET,
    ChannelServer,
    EchoBot,
    make_config,
    new_sender,
    text_payload,
    wait_until,
    wamid_of,
)
from tests.support.cluster import status_payload

pytestmark = pytest.mark.timeout(90)


def _status(wamid: str, recipient: str, status: str, pricing: Any, callback: Any = None) -> bytes:
    body = json.loads(status_payload(wamid, recipient, "123456789", status, callback))
    item = body["entry"][0]["changes"][0]["value"]["statuses"][0]
    if pricing is None:
        item.pop("pricing")
    else:
        item["pricing"] = pricing
    return json.dumps(body).encode("utf-8")


@pytest.fixture
def graph() -> Any:
    with FakeGraphAPI() as fake:
        yield fake


def test_status_with_pricing_sets_category_and_billable_once(tmp_path: Path, graph: FakeGraphAPI) -> None:
    config = make_config(graph, tmp_path / "p.db")
    server = ChannelServer(WhatsAppInput(config, ScaleSettings(sweep_interval=0.3)), EchoBot()).start()
    sender = new_sender()
    try:
        payload = text_payload(sender, ["hallo"])
        assert server.post(payload).status_code == 200
        server.wait_handled(sender, [wamid_of(payload)])
        [row] = server.store.outgoing_for_recipient(sender)
        assert row.status == "sent" and row.wamid
        assert row.pricing_category is None and row.billable is None

        # A status without pricing changes nothing.
        assert server.post(_status(row.wamid, sender, "sent", None)).status_code == 200
        assert server.store.get_outgoing(row.id).pricing_category is None
        # The first status with pricing is recorded ...
        pricing = {"billable": True, "pricing_model": "PMP", "category": "service", "type": "regular"}
        assert server.post(_status(row.wamid, sender, "delivered", pricing)).status_code == 200
        assert wait_until(lambda: server.store.get_outgoing(row.id).pricing_category == "service")
        updated = server.store.get_outgoing(row.id)
        assert updated.billable is True and updated.delivery_status == "delivered"
        # ... and a later one (Meta repeats pricing on read) does not overwrite it.
        other = {"billable": False, "pricing_model": "CBP", "category": "utility"}
        assert server.post(_status(row.wamid, sender, "read", other)).status_code == 200
        assert wait_until(lambda: server.store.get_outgoing(row.id).delivery_status == "read")
        final = server.store.get_outgoing(row.id)
        assert (final.pricing_category, final.billable) == ("service", True)
    finally:
        server.stop()


def test_status_matched_by_callback_data_gets_pricing(tmp_path: Path, graph: FakeGraphAPI) -> None:
    """The fake Graph API reports every message it took like Meta, with pricing and
    ``biz_opaque_callback_data``; the row is found by either."""
    server = ChannelServer(WhatsAppInput(make_config(graph, tmp_path / "c.db"), ScaleSettings(sweep_interval=0.3)),
                           EchoBot()).start()
    graph.report_statuses_to(server.base + "/webhook", APP_SECRET)
    sender = new_sender()
    try:
        payload = text_payload(sender, ["hoi"])
        assert server.post(payload).status_code == 200
        server.wait_handled(sender, [wamid_of(payload)])
        assert wait_until(lambda: all(r.pricing_category for r in server.store.outgoing_for_recipient(sender)))
        rows = server.store.outgoing_for_recipient(sender)
    finally:
        server.stop()
    assert [(r.pricing_category, r.billable) for r in rows] == [("service", True)] * len(rows)


def test_pricing_is_parsed_defensively() -> None:
    def parse(pricing: Any) -> Any:
        return parse_webhook(json.loads(_status("wamid.X", "31600000000", "sent", pricing)))

    [s] = parse({"billable": "false", "pricing_model": "PMP", "category": "Utility"}).statuses
    assert (s.pricing_category, s.billable, s.pricing_model) == ("utility", False, "PMP")
    [s] = parse({"type": "marketing"}).statuses  # category only as type
    assert (s.pricing_category, s.billable) == ("marketing", None)
    [s] = parse({"type": "free_customer_service", "category": "service"}).statuses
    assert (s.pricing_category, s.billable) == ("service", False)
    for junk in ("junk", [1], {"billable": "maybe", "category": 5.5}, None):
        [s] = parse(junk).statuses
        assert s.pricing_category is None and s.billable is None
