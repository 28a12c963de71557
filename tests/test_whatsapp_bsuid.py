"""Business-scoped user ids (BSUID) and usernames (issue 15): parser, conversation
key, replies with ``recipient``, statuses with ``recipient_user_id``, change events,
subject access. Payloads follow Meta's documented shapes."""
from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from channels.webhook_parser import BSUID_RE, parse_webhook  # noqa: E402

PNID = "106540352242922"


def new_bsuid() -> str:
    return "NL." + str(uuid.uuid4().int)[:20]


def new_phone() -> str:
    return "316" + str(uuid.uuid4().int)[:8]


def new_wamid() -> str:
    return "wamid.HBgL" + uuid.uuid4().hex.upper()


def envelope(value: Dict[str, Any]) -> Dict[str, Any]:
    value = dict(value)
    value.setdefault("messaging_product", "whatsapp")
    value.setdefault("metadata", {"display_phone_number": "31850000000", "phone_number_id": PNID})
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }


def message_payload(
    text: str,
    phone: Optional[str] = None,
    bsuid: Optional[str] = None,
    username: Optional[str] = None,
    ts: int = 1717405200,
    wamid: Optional[str] = None,
) -> Dict[str, Any]:
    contact: Dict[str, Any] = {"profile": {"name": "Test Persoon"}}
    message: Dict[str, Any] = {
        "id": wamid or new_wamid(), "timestamp": str(ts), "type": "text", "text": {"body": text},
    }
    if phone:
        contact["wa_id"] = phone
        message["from"] = phone
    if bsuid:
        contact["user_id"] = bsuid
        message["from_user_id"] = bsuid
    if username:
        contact["profile"]["username"] = username
    return envelope({"contacts": [contact], "messages": [message]})


def system_payload(
    stype: str, phone: Optional[str], bsuid: Optional[str], new_phone: Optional[str] = None,
    new_bsuid: Optional[str] = None, ts: int = 1717405300,
) -> Dict[str, Any]:
    message: Dict[str, Any] = {"id": new_wamid(), "timestamp": str(ts), "type": "system",
                               "system": {"type": stype, "body": "Gebruiker heeft een nieuw nummer"}}
    if phone:
        message["from"] = phone
    if bsuid:
        message["from_user_id"] = bsuid
    if new_phone:
        message["system"]["wa_id"] = new_phone
    if new_bsuid:
        message["system"]["user_id"] = new_bsuid
    return envelope({"messages": [message]})


def status_payload(
    wamid: str, status: str, phone: Optional[str] = None, bsuid: Optional[str] = None,
    callback: Optional[str] = None, errors: Optional[List[Dict[str, Any]]] = None,
) -> Dict[str, Any]:
    item: Dict[str, Any] = {"id": wamid, "status": status, "timestamp": "1717405260"}
    if phone:
        item["recipient_id"] = phone
    if bsuid:
        item["recipient_user_id"] = bsuid
    if callback:
        item["biz_opaque_callback_data"] = callback
    if errors:
        item["errors"] = errors
    return envelope({"statuses": [item]})


# ------------------------------------------------------------------- parser
def test_username_only_message_is_parsed_with_bsuid_and_username() -> None:
    bsuid = new_bsuid()
    result = parse_webhook(message_payload("hoi", bsuid=bsuid, username="jan.jansen"))
    assert not result.skipped
    (message,) = result.messages
    assert message.phone is None and message.user_id == bsuid and message.wa_id == bsuid
    assert message.username == "jan.jansen" and message.profile_name == "Test Persoon"
    assert message.answerable and message.text == "hoi"


def test_message_with_both_ids_and_invalid_bsuid() -> None:
    phone, bsuid = new_phone(), new_bsuid()
    (message,) = parse_webhook(message_payload("hoi", phone=phone, bsuid=bsuid)).messages
    assert (message.wa_id, message.phone, message.user_id) == (phone, phone, bsuid)
    for bad in ("nl.123", "NL123", "NL.12-3", "NL." + "1" * 129, "NLD.123", "NL. 1"):
        assert not BSUID_RE.match(bad)
        result = parse_webhook(message_payload("hoi", bsuid=bad))
        assert not result.messages and result.skipped == ["text message without id/from"]
    assert BSUID_RE.match("NL.13491208655302741918") and BSUID_RE.match("US." + "a" * 128)


def test_status_with_recipient_user_id_only_and_failed_without_contacts() -> None:
    bsuid = new_bsuid()
    result = parse_webhook(status_payload("wamid.A", "failed", bsuid=bsuid, errors=[{"code": 131026}]))
    (status,) = result.statuses
    assert status.recipient_id is None and status.recipient_user_id == bsuid and status.error_code == 131026


def test_change_system_messages_report_the_new_ids() -> None:
    phone, bsuid, new_p, new_b = new_phone(), new_bsuid(), new_phone(), new_bsuid()
    (message,) = parse_webhook(system_payload("user_changed_number", phone, bsuid, new_p, new_b)).messages
    assert not message.answerable and message.details["system_type"] == "user_changed_number"
    assert message.change == {"type": "user_changed_number", "new_phone": new_p, "new_user_id": new_b}
    legacy = system_payload("user_changed_number", phone, None)
    legacy["entry"][0]["changes"][0]["value"]["messages"][0]["system"]["new_wa_id"] = new_p
    (message,) = parse_webhook(legacy).messages
    assert message.change["new_phone"] == new_p and message.change["new_user_id"] is None
    (message,) = parse_webhook(system_payload("user_changed_user_id", None, bsuid, None, new_b)).messages
    assert message.change == {"type": "user_changed_user_id", "new_phone": None, "new_user_id": new_b}
    (message,) = parse_webhook(system_payload("customer_identity_changed", phone, None)).messages
    assert message.change is None and not message.answerable
