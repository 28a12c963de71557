"""Unit tests of the pure parts of the WhatsApp channel (parser, formatting,
config, signature) and of the inbox store's retention rules."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from channels import formatting
from channels.config import WhatsAppConfig, parse_tenants
from channels.formatting import BotMessage
from channels.inbox import InboxStore, NewInbound
from channels.webhook_parser import WebhookPayloadError, parse_webhook
from channels.whatsapp import verify_signature

ROOT = Path(__file__).resolve().parents[1]

FIXTURES = ROOT / "tests" / "fixtures" / "whatsapp"


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------ parser
def test_every_fixture_parses() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        result = parse_webhook(json.loads(path.read_text(encoding="utf-8")))
        assert not result.skipped, path.name


def test_parser_details() -> None:
    (msg,) = parse_webhook(load("interactive_list_reply")).messages
    assert msg.text == '/inform{"document_type":"paspoort"}' and msg.details["interactive_type"] == "list_reply"
    assert msg.profile_name == "Jan Jansen" and msg.timestamp == 1717405200
    (voice,) = parse_webhook(load("voice")).messages
    assert voice.message_type == "voice" and voice.text == "/non_text_message"
    (removed,) = parse_webhook(load("reaction_removed")).messages
    assert not removed.answerable and removed.ignore_reason == "reaction removed"
    statuses = parse_webhook(load("status_failed")).statuses
    assert statuses[0].status == "failed" and statuses[0].error_code == 131047
    multi = parse_webhook(load("multi_entry"))
    assert len(multi.messages) == 3 and len(multi.statuses) == 1
    assert parse_webhook(load("template_status_update")).ignored_changes == 1
    assert parse_webhook(load("webhook_errors")).errors == [(130429, "Rate limit hit")]


def test_typed_payloads_are_neutralised_unless_allowed() -> None:
    payload = load("text")
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = '/inform{"municipality":"x"}'
    assert parse_webhook(payload).messages[0].text == 'inform{"municipality":"x"}'
    assert parse_webhook(payload, allow_text_payloads=True).messages[0].text == '/inform{"municipality":"x"}'


@pytest.mark.parametrize("payload", [None, [], "x", {"object": "page"}, {"object": "whatsapp_business_account"}])
def test_unusable_payloads_raise(payload: object) -> None:
    with pytest.raises(WebhookPayloadError):
        parse_webhook(payload)


def test_broken_items_are_skipped_not_fatal() -> None:
    payload = load("multi_entry")
    payload["entry"][0]["changes"][0]["value"]["messages"][0].pop("from")
    payload["entry"].append({"changes": "nope"})
    result = parse_webhook(payload)
    assert len(result.messages) == 2 and len(result.skipped) == 2


# -------------------------------------------------------------- formatting
def test_split_text_prefers_paragraphs_then_sentences() -> None:
    paragraphs = "\n\n".join(("Alinea %d. " % i) * 80 for i in range(10))
    parts = formatting.split_text(paragraphs)
    assert all(len(p) <= 4096 for p in parts) and len(parts) > 1
    assert all(p.endswith(".") for p in parts)
    one_paragraph = "Een lange zin over het paspoort. " * 400
    parts = formatting.split_text(one_paragraph)
    assert all(len(p) <= 4096 and p.endswith(".") for p in parts)
    assert "".join(parts).replace(" ", "") == one_paragraph.replace(" ", "")
    unbroken = "x" * 9000
    assert [len(p) for p in formatting.split_text(unbroken)] == [4096, 4096, 808]
    assert formatting.split_text("   ") == []


def test_text_payload_preview_url() -> None:
    (with_url,) = formatting.text_payloads("31", "Kijk op www.terneuzen.nl")
    (without,) = formatting.text_payloads("31", "Geen link")
    assert with_url["text"]["preview_url"] is True and without["text"]["preview_url"] is False
    assert with_url["messaging_product"] == "whatsapp" and with_url["to"] == "31"


def test_buttons_limits_and_fallbacks() -> None:
    (three,) = formatting.button_payloads("31", "", [{"title": "A", "payload": "/a"}, {"title": "B"}, {"title": "A", "payload": "/a"}])
    buttons = three["interactive"]["action"]["buttons"]
    assert three["interactive"]["body"]["text"] == formatting.DEFAULT_CHOICE_BODY
    assert [b["reply"]["id"] for b in buttons] == ["/a", "B"]  # duplicate dropped, title as payload
    long_payload = "/inform" + json.dumps({"x": "y" * 300})
    (one,) = formatting.button_payloads("31", "Kies", [{"title": "Lang", "payload": long_payload}])
    assert one["interactive"]["action"]["buttons"][0]["reply"]["id"] == "Lang"
    rows = formatting.button_payloads(
        "31", "Kies", [{"title": "Een heel erg lange titel voor een rij", "payload": f"/p{i}"} for i in range(5)]
    )[0]["interactive"]["action"]["sections"][0]["rows"]
    assert len(rows[0]["title"]) == 24 and rows[0]["description"] == "Een heel erg lange titel voor een rij"
    links = formatting.button_payloads("31", "Meer info", [{"title": "Website", "url": "https://lelystad.nl"}])
    assert links[0]["type"] == "text" and "Website: https://lelystad.nl" in links[0]["text"]["body"]
    long_body = formatting.button_payloads("31", "Lange uitleg. " * 200, [{"title": "Ok", "payload": "/ok"}])
    assert [p["type"] for p in long_body] == ["text", "interactive"]
    assert len(long_body[-1]["interactive"]["body"]["text"]) <= 1024


def test_media_custom_and_template_payloads() -> None:
    (doc,) = formatting.attachment_payloads("31", "https://x.nl/formulier.pdf")
    assert doc["type"] == "document" and doc["document"] == {"link": "https://x.nl/formulier.pdf", "filename": "formulier.pdf"}
    (img,) = formatting.attachment_payloads("31", {"type": "image", "payload": {"src": "https://x.nl/a.png"}})
    assert img["type"] == "image"
    custom = formatting.custom_payload("31", {"whatsapp": {"type": "location", "location": {"latitude": 1, "longitude": 2}}})
    assert custom["type"] == "location" and custom["to"] == "31" and custom["messaging_product"] == "whatsapp"
    assert formatting.custom_payload("31", {"foo": 1}) is None
    tpl = formatting.template_payload("31", "appcare_heropenen", "nl")
    assert tpl["template"] == {"name": "appcare_heropenen", "language": {"code": "nl"}}


def test_plan_turn_merges_texts_and_keeps_buttons_last() -> None:
    messages = [
        BotMessage("buttons", text="Kies", buttons=[{"title": "Ja", "payload": "/affirm"}]),
        BotMessage("text", text="Eén"),
        BotMessage("text", text="Twee"),
        BotMessage("image", url="https://x.nl/kaart.png"),
        BotMessage("text", text="Drie " * 819),  # 4,094 characters
        BotMessage("text", text="Vier"),
    ]
    plan = formatting.plan_turn("31", messages)
    assert [formatting.describe(p) for p in plan] == ["text", "image", "text", "interactive_button"]
    assert plan[0]["text"]["body"] == "Eén\n\nTwee"
    # "Vier" would exceed 4,096 merged with "Drie ...": it joins the buttons' body instead
    assert plan[3]["interactive"]["body"]["text"] == "Vier\n\nKies"


def test_plan_turn_puts_a_short_answer_and_its_question_in_one_message() -> None:
    """One bubble instead of two: the answer, then the feedback question with its buttons."""
    feedback = [{"title": "👍 Ja", "payload": "/feedback_positive"}, {"title": "👎 Nee", "payload": "/feedback_negative"}]
    messages = [BotMessage("text", text="Een paspoort kost € 77,87."), BotMessage("text", text="Let op: ..."),
                BotMessage("buttons", text="Heb je hier iets aan gehad?", buttons=feedback)]
    plan = formatting.plan_turn("31", messages)
    assert [formatting.describe(p) for p in plan] == ["interactive_button"]
    body = plan[0]["interactive"]["body"]["text"]
    assert body == "Een paspoort kost € 77,87.\n\nLet op: ...\n\nHeb je hier iets aan gehad?"
    assert [b["reply"]["id"] for b in plan[0]["interactive"]["action"]["buttons"]] == [
        "/feedback_positive", "/feedback_negative"]
    long_answer = BotMessage("text", text="x" * 1000)
    plan = formatting.plan_turn("31", [long_answer, messages[2]])
    assert [formatting.describe(p) for p in plan] == ["text", "interactive_button"]  # over 1,024: two messages


# ------------------------------------------------------------ config, security
def test_config_and_tenants() -> None:
    config = WhatsAppConfig.load({}, environ={"WHATSAPP_ACCESS_TOKEN": "t", "WHATSAPP_API_VERSION": "21.0"})
    assert not config.configured and config.api_version == "v21.0"
    assert config.missing == ["WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN"]
    assert parse_tenants("1:terneuzen,,bad, 2 : lelystad") == {"1": "terneuzen", "2": "lelystad"}
    assert parse_tenants({"3": "Almere"}) == {"3": "Almere"}


def test_verify_signature() -> None:
    body = b'{"object":"whatsapp_business_account"}'
    good = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert verify_signature("s3cret", body, good)
    assert verify_signature("s3cret", body, good.upper().replace("SHA256=", "sha256="))
    assert not verify_signature("s3cret", body + b" ", good)
    assert not verify_signature("other", body, good)
    assert not verify_signature("s3cret", body, None)
    assert not verify_signature("s3cret", body, good.replace("sha256=", "sha1="))


# ---------------------------------------------------------------- retention
def test_dedupe_ids_are_kept_at_least_seven_days(tmp_path: Path) -> None:
    store = InboxStore(f"sqlite:///{tmp_path}/retention.db")
    now = time.time()

    def item(wamid: str) -> NewInbound:
        return NewInbound(wamid, "1", "31600000000", "text", "hoi", {}, now, True, True)

    assert store.record_inbound([item("old")], now - 8 * 86400) == [True]
    assert store.record_inbound([item("recent")], now - 2 * 86400) == [True]
    store.finish_inbound("old")
    store.finish_inbound("recent")
    store.purge(retention_days=1, now=now)  # 1 day asked, 7 days enforced
    assert store.inbound_status("old") is None
    assert store.inbound_status("recent") == "done"
    assert store.record_inbound([item("old")], now) == [True]  # purged id is new again
    store.purge(retention_days=1, now=now + 6 * 86400)
    assert store.inbound_status("old") == "pending"  # open messages are never purged
    assert store.record_inbound([item("old")], now) == [False]


# ------------------------------------------------- status webhooks settle sends
def test_status_with_our_callback_data_settles_the_outbox_row(tmp_path: Path) -> None:
    from channels.inbox import callback_data, outbox_id_of
    from tests.support.cluster import status_payload

    store = InboxStore(f"sqlite:///{tmp_path / 'cb.db'}")
    (row_id,) = store.add_outgoing("1000000001", "31611111111", [{"type": "text"}], ["text"])
    (other_id,) = store.add_outgoing("1000000001", "31622222222", [{"type": "text"}], ["text"])
    for outbox_id in (row_id, other_id):
        assert store.mark_sending(outbox_id)
        assert store.mark_unknown(outbox_id, "timeout")  # the HTTP answer with the wamid was lost
    assert outbox_id_of(callback_data(row_id)) == row_id
    assert outbox_id_of("someone-else:12") is None and outbox_id_of("appcare:12x") is None

    body = json.loads(status_payload("wamid.META1", "31611111111", "1000000001", "sent", callback_data(row_id)))
    (status,) = parse_webhook(body).statuses
    assert status.callback_data == callback_data(row_id)
    # a report naming another citizen's row does not touch it
    wrong = json.loads(status_payload("wamid.META2", "31699999999", "1000000001", "sent", callback_data(other_id)))
    store.record_statuses(parse_webhook(wrong).statuses + [status])
    settled, untouched = store.get_outgoing(row_id), store.get_outgoing(other_id)
    assert settled.status == "sent" and settled.wamid == "wamid.META1" and settled.payload is None
    assert untouched.status == "unknown" and untouched.wamid is None
    # a claim is conditional: a settled row is never posted again
    assert not store.mark_sending(row_id, ("unknown",))


def test_a_turn_without_reply_gets_the_domains_technical_problem_text(monkeypatch) -> None:
    """Editors change the no-reply text in domain/ (utter_technical_problem); the
    channel setting WHATSAPP_ERROR_TEXT still overrides it."""
    from types import SimpleNamespace

    from appcare import content
    from channels import turn_recovery
    from channels.whatsapp import ScaleSettings

    domain = SimpleNamespace(responses={"utter_technical_problem": [{"text": "Oeps, probeer het zo. Bel {phone}."}]})
    phone = content.load("lelystad").contact.phone.value
    assert turn_recovery.no_reply_text(SimpleNamespace(domain=domain), "lelystad") == f"Oeps, probeer het zo. Bel {phone}."
    assert turn_recovery.no_reply_text(None, "lelystad") == turn_recovery.FALLBACK_NO_REPLY_TEXT.replace("{phone}", phone)
    monkeypatch.delenv("WHATSAPP_ERROR_TEXT", raising=False)
    assert ScaleSettings.load({}).error_text == ""
    monkeypatch.setenv("WHATSAPP_ERROR_TEXT", "Even niet bereikbaar.")
    assert ScaleSettings.load({}).error_text == "Even niet bereikbaar."
