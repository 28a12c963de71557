"""Parses Meta's WhatsApp Cloud API webhook payloads into typed events.

Pure functions, no I/O. A payload (``object: whatsapp_business_account``) has
``entry[].changes[].value`` objects; a ``messages`` change carries ``messages``
(citizen -> us), ``statuses`` (delivery reports of our messages), ``contacts``
(profile names) and ``errors``. Every message becomes an :class:`InboundMessage`
whose ``text`` is what Rasa receives:

* text                       -> the text (a leading "/" is removed unless text
                                payloads are allowed: citizens cannot inject intents)
* interactive button/list    -> the ``id`` of the chosen option (the payload the bot
                                offered, e.g. ``/passport_fees``)
* template quick-reply button -> its payload (or its text)
* reaction 👍 ❤️ 🙏          -> ``/thanks``; other or removed reactions are ignored
* image/video/document with a caption -> the caption
* anything else (audio, voice, sticker, location, contacts, unsupported ...)
                             -> ``/non_text_message`` with ``message_type``
* system messages (number changed ...) are not answered; a change of number or
  of business-scoped user id is reported in ``InboundMessage.change``.

Identifiers (issue 15): a message may carry the citizen's phone number
(``from``/``contacts[].wa_id``), a business-scoped user id (BSUID,
``from_user_id``/``contacts[].user_id``, e.g. ``NL.13491208655302741918``) or both; a
citizen with a username may arrive without a phone number. ``InboundMessage.wa_id``
is the phone number when present, else the BSUID (the channel maps both to one
conversation key); ``phone``, ``user_id`` and ``username`` carry them separately.
BSUIDs are validated strictly (:data:`BSUID_RE`); invalid ones are treated as absent.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

EXPECTED_OBJECT = "whatsapp_business_account"
THANKS_PAYLOAD = "/thanks"
NON_TEXT_PAYLOAD = "/non_text_message"
THANKS_EMOJI = {"\U0001F44D", "\u2764", "\U0001F64F"}  # 👍 ❤ 🙏 (after normalisation)
CAPTIONED_TYPES = {"image", "video", "document"}
# Business-scoped user id: ISO country code, a dot, up to 128 alphanumerics.
BSUID_RE = re.compile(r"^[A-Z]{2}\.[A-Za-z0-9]{1,128}$")
CHANGE_SYSTEM_TYPES = {"user_changed_number", "user_changed_user_id"}
_EMOJI_MODIFIERS = {chr(c) for c in range(0x1F3FB, 0x1F400)} | {"\uFE0F", "\uFE0E"}
# Limits of what a (signed) webhook may put into the database (issue 16): a value
# beyond them is normalised or dropped here, never left to fail in the database.
ID_LENGTH = 191  # wamid columns
TYPE_LENGTH = 32  # whatsapp_inbox.message_type
PHONE_LENGTH = 64  # Meta's wa_id is a phone number (digits)
NAME_LENGTH = 256
MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z: the last second datetime can show
MAX_CODE = 2**31 - 1  # error codes go into INTEGER columns
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL (PostgreSQL text) and lone surrogates (no UTF-8)
_NOT_TOKEN = re.compile(r"[^a-z0-9_]+")


class WebhookPayloadError(ValueError):
    """The payload cannot be used at all (wrong object, no entries)."""


@dataclass(frozen=True)
class InboundMessage:
    wamid: str
    wa_id: str
    phone_number_id: str
    timestamp: Optional[int]
    message_type: str  # text, interactive, button, reaction, image, voice, ...
    text: Optional[str]  # what Rasa receives; None when ignored
    profile_name: Optional[str] = None
    ignore_reason: Optional[str] = None  # set when the message is recorded but not answered
    details: Dict[str, Any] = field(default_factory=dict)  # non-personal extras for metadata
    # Identifiers (personal data: never log them, use appcare.pii.conversation_hash):
    phone: Optional[str] = None  # the phone number (``from``), None for username-only citizens
    user_id: Optional[str] = None  # business-scoped user id (``from_user_id``)
    username: Optional[str] = None  # ``contacts[].profile.username``
    parent_user_id: Optional[str] = None
    # A system message about a changed identity: {"type", "new_phone", "new_user_id"}
    change: Optional[Dict[str, Optional[str]]] = None

    @property
    def answerable(self) -> bool:
        return self.ignore_reason is None and bool(self.text)


@dataclass(frozen=True)
class StatusUpdate:
    wamid: str
    status: str  # sent | delivered | read | failed | deleted ...
    recipient_id: Optional[str]  # phone number; may be missing (username-only citizen)
    phone_number_id: Optional[str]
    timestamp: Optional[int]
    recipient_user_id: Optional[str] = None  # BSUID of the recipient
    error_code: Optional[int] = None
    error_title: Optional[str] = None
    # Meta echoes the ``biz_opaque_callback_data`` we sent with the message; the
    # channel puts its outbox row id there (``appcare:<id>``).
    callback_data: Optional[str] = None
    # ``pricing`` of the status (per-message pricing): category (service, utility,
    # marketing, authentication, ...), billable, pricing model (PMP, older CBP).
    pricing_category: Optional[str] = None
    billable: Optional[bool] = None
    pricing_model: Optional[str] = None


@dataclass
class ParseResult:
    messages: List[InboundMessage] = field(default_factory=list)
    statuses: List[StatusUpdate] = field(default_factory=list)
    errors: List[Tuple[Optional[int], Optional[str]]] = field(default_factory=list)  # (code, title)
    skipped: List[str] = field(default_factory=list)  # short reasons, never content
    ignored_changes: int = 0


def normalise_emoji(emoji: str) -> str:
    return "".join(ch for ch in emoji if ch not in _EMOJI_MODIFIERS)


def _int(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: 1e999 (infinity)
        return None


def _bounded(value: Any, low: int, high: int) -> Optional[int]:
    number = _int(value)
    return number if number is not None and low <= number <= high else None


def _timestamp(value: Any) -> Optional[int]:
    """Epoch seconds, None when absent or outside what datetime can show."""
    return _bounded(value, 1, MAX_TIMESTAMP)


def _code(value: Any) -> Optional[int]:
    return _bounded(value, 0, MAX_CODE)


def _str(value: Any) -> Optional[str]:
    """A stripped, storable string (no NUL, lone surrogates replaced), None when empty
    or not a string/integer."""
    if value is None:
        return None
    if isinstance(value, (str, int)):
        try:
            value = str(value).strip()
        except ValueError:  # an integer too long to print
            return None
        if _UNSTORABLE.search(value):
            value = _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", value).strip()
        return value or None
    return None


def _token(value: Any, default: str, limit: int = TYPE_LENGTH) -> str:
    """A message/interactive/system type as a short lower-case token: unknown and new
    types are kept (stored, logged) but can carry no content and fit their column."""
    text = _NOT_TOKEN.sub("_", (_str(value) or "").lower()).strip("_")[:limit]
    return text or default


def _message_id(value: Any) -> Optional[str]:
    """A wamid; one longer than its column is replaced by a stable digest, so a
    redelivery is still recognised (and a distinct id stays distinct)."""
    text = _str(value)
    if text and len(text) > ID_LENGTH:
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text


def _phone(value: Any) -> Optional[str]:
    """The citizen's number (``from``, ``wa_id``) when it can be one: short, printable,
    without spaces and without the ``@`` of a tenant conversation id."""
    text = _str(value)
    if not text or len(text) > PHONE_LENGTH or "@" in text or " " in text or not text.isprintable():
        return None
    return text


def _dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> List[Any]:
    return value if isinstance(value, list) else []


def valid_bsuid(value: Any) -> Optional[str]:
    """The business-scoped user id when it has the documented shape, else None."""
    text = _str(value)
    return text if text and BSUID_RE.match(text) else None


def is_bsuid(value: Any) -> bool:
    return valid_bsuid(value) is not None


def parse_webhook(payload: Any, allow_text_payloads: bool = False) -> ParseResult:
    """Parses a whole webhook body. Raises :class:`WebhookPayloadError` when it
    is not a WhatsApp Business Account notification at all; broken items inside
    a valid payload are skipped and reported in ``ParseResult.skipped``."""
    if not isinstance(payload, dict):
        raise WebhookPayloadError("payload is not a JSON object")
    obj = payload.get("object")
    if obj != EXPECTED_OBJECT:
        shown = obj if isinstance(obj, str) and re.fullmatch(r"[a-z_]{1,40}", obj) else type(obj).__name__
        raise WebhookPayloadError(f"unexpected object type {shown!r}")
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise WebhookPayloadError("missing 'entry' list")

    result = ParseResult()
    for entry in entries:
        changes = _dict(entry).get("changes")
        if not isinstance(changes, list):
            result.skipped.append("entry without 'changes'")
            continue
        for change in changes:
            change = _dict(change)
            if change.get("field") != "messages":
                result.ignored_changes += 1
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                result.skipped.append("change without 'value'")
                continue
            _parse_value(value, result, allow_text_payloads)
    return result


def _parse_value(value: Dict[str, Any], result: ParseResult, allow_text_payloads: bool) -> None:
    phone_number_id = _str(_dict(value.get("metadata")).get("phone_number_id"))
    names: Dict[str, Any] = {}  # wa_id or user_id -> contact info
    for contact in _list(value.get("contacts")):
        contact = _dict(contact)
        wa_id = _phone(contact.get("wa_id"))
        user_id = valid_bsuid(contact.get("user_id"))
        profile = _dict(contact.get("profile"))
        info = {
            "name": (_str(profile.get("name")) or "")[:NAME_LENGTH] or None,
            "username": (_str(profile.get("username")) or "")[:128] or None,
            "wa_id": wa_id,
            "user_id": user_id,
        }
        for key in (wa_id, user_id):
            if key:
                names[key] = info

    for error in _list(value.get("errors")):
        error = _dict(error)
        result.errors.append((_code(error.get("code")), _str(error.get("title"))))

    raw_messages = _list(value.get("messages"))
    if raw_messages and not phone_number_id:
        result.skipped.append(f"{len(raw_messages)} message(s) without metadata.phone_number_id")
        raw_messages = []
    for raw in raw_messages:
        message = _parse_message(_dict(raw), phone_number_id or "", names, allow_text_payloads)
        if isinstance(message, str):
            result.skipped.append(message)
        else:
            result.messages.append(message)

    for raw in _list(value.get("statuses")):
        raw = _dict(raw)
        wamid, status = _message_id(raw.get("id")), _str(raw.get("status"))
        if not wamid or not status:
            result.skipped.append("status without id/status")
            continue
        errors = [_dict(e) for e in _list(raw.get("errors"))]
        first = errors[0] if errors else {}
        result.statuses.append(
            StatusUpdate(
                wamid=wamid,
                status=status,
                recipient_id=_phone(raw.get("recipient_id")),
                recipient_user_id=valid_bsuid(raw.get("recipient_user_id")),
                phone_number_id=phone_number_id,
                timestamp=_timestamp(raw.get("timestamp")),
                error_code=_code(first.get("code")),
                error_title=_str(first.get("title")),
                callback_data=(_str(raw.get("biz_opaque_callback_data")) or "")[:512] or None,
                **_pricing(raw.get("pricing")),
            )
        )


BILLING_TYPES = ("regular", "free_customer_service", "free_entry_point")


def _pricing(value: Any) -> Dict[str, Any]:
    """The ``pricing`` object of a status, parsed defensively: ``category`` (newer
    payloads may carry ``type`` instead or as well), ``billable`` (bool, or "true"/"false"),
    ``pricing_model``. Missing or malformed values become None."""
    pricing = _dict(value)
    if not pricing:
        return {}
    # ``type`` is the billing type in PMP payloads (regular, free_customer_service,
    # free_entry_point); only a category-like value stands in for a missing category.
    kind = (_str(pricing.get("type")) or "").lower()
    category = _str(pricing.get("category")) or (kind if kind and kind not in BILLING_TYPES else None)
    billable = pricing.get("billable")
    if isinstance(billable, str):
        billable = {"true": True, "false": False}.get(billable.strip().lower())
    elif not isinstance(billable, bool):
        billable = None
    if billable is None and kind in BILLING_TYPES:
        billable = kind == "regular"
    return {
        "pricing_category": category.strip().lower()[:32] if category and category.strip() else None,
        "billable": billable,
        "pricing_model": (_str(pricing.get("pricing_model")) or "")[:16] or None,
    }


def _strip_payload_prefix(text: str) -> str:
    return text.lstrip("/").strip()


def _parse_message(
    raw: Dict[str, Any], phone_number_id: str, names: Dict[str, str], allow_text_payloads: bool
) -> Any:
    """Returns an InboundMessage, or a short reason string when unusable."""
    wamid = _message_id(raw.get("id"))
    phone = _phone(raw.get("from"))
    user_id = valid_bsuid(raw.get("from_user_id"))
    mtype = _token(raw.get("type"), "unknown")
    if phone is None and _str(raw.get("from")):
        return f"{mtype} message with an unusable 'from'"
    contact = names.get(phone or "") or names.get(user_id or "") or {}
    if contact and phone and contact.get("wa_id") not in (None, phone):
        contact = {}
    if contact and user_id and contact.get("user_id") not in (None, user_id):
        contact = {}
    routing_id = phone or user_id  # the message's sender: ``from``, else ``from_user_id``
    phone = phone or contact.get("wa_id")
    user_id = user_id or contact.get("user_id")
    if not wamid or not routing_id:
        return f"{mtype} message without id/from"
    base: Dict[str, Any] = dict(
        wamid=wamid,
        wa_id=routing_id,
        phone_number_id=phone_number_id,
        timestamp=_timestamp(raw.get("timestamp")),
        profile_name=contact.get("name"),
        phone=phone,
        user_id=user_id,
        username=contact.get("username"),
        parent_user_id=valid_bsuid(raw.get("parent_user_id")),
    )
    details: Dict[str, Any] = {}
    context = _dict(raw.get("context"))
    if _message_id(context.get("id")):
        details["context_wamid"] = _message_id(context.get("id"))
    if context.get("forwarded") or context.get("frequently_forwarded"):
        details["forwarded"] = True

    def build(message_type: str, text: Optional[str], ignore: Optional[str] = None) -> InboundMessage:
        return InboundMessage(
            message_type=message_type, text=text, ignore_reason=ignore, details=details, **base
        )

    if mtype == "text":
        body = _str(_dict(raw.get("text")).get("body"))
        if not body:
            # no usable text (missing, empty, not a string): the citizen is asked to type
            details["unusable_content"] = True
            return build("text", NON_TEXT_PAYLOAD)
        if not allow_text_payloads and body.startswith("/"):
            body = _strip_payload_prefix(body)
            if not body:
                return build("text", None, "empty text")
        return build("text", body)

    if mtype == "interactive":
        interactive = _dict(raw.get("interactive"))
        itype = _token(interactive.get("type"), "unknown")
        details["interactive_type"] = itype
        if itype in ("button_reply", "list_reply"):
            reply = _dict(interactive.get(itype))
            payload = _str(reply.get("id")) or _str(reply.get("title"))
            if not payload:
                details["unusable_content"] = True
                return build("interactive", NON_TEXT_PAYLOAD)
            if _str(reply.get("title")):
                details["button_title"] = _str(reply.get("title"))  # text if the id is refused
            return build("interactive", payload)
        # e.g. nfm_reply (WhatsApp Flows): not supported by this bot
        return build("interactive", NON_TEXT_PAYLOAD)

    if mtype == "button":  # quick-reply button of a template message
        button = _dict(raw.get("button"))
        payload = _str(button.get("payload")) or _str(button.get("text"))
        if not payload:
            details["unusable_content"] = True
            return build("button", NON_TEXT_PAYLOAD)
        if _str(button.get("text")):
            details["button_title"] = _str(button.get("text"))  # text if the payload is refused
        return build("button", payload)

    if mtype == "reaction":
        reaction = _dict(raw.get("reaction"))
        if _message_id(reaction.get("message_id")):
            details["reacted_wamid"] = _message_id(reaction.get("message_id"))
        emoji = (_str(reaction.get("emoji")) or "")[:32] if isinstance(reaction.get("emoji"), str) else ""
        if not emoji:
            return build("reaction", None, "reaction removed")
        details["emoji"] = emoji
        if normalise_emoji(emoji) in THANKS_EMOJI:
            return build("reaction", THANKS_PAYLOAD)
        return build("reaction", None, "reaction not answered")

    if mtype == "system":
        system = _dict(raw.get("system"))
        stype = _token(system.get("type"), "unknown", 40)
        details["system_type"] = stype
        if stype in CHANGE_SYSTEM_TYPES:
            new_phone = _phone(system.get("new_wa_id")) or _phone(system.get("wa_id"))
            new_user_id = valid_bsuid(system.get("new_user_id")) or valid_bsuid(system.get("user_id"))
            change = {"type": stype, "new_phone": new_phone, "new_user_id": new_user_id}
            if new_phone == phone:
                change["new_phone"] = None
            if new_user_id == user_id:
                change["new_user_id"] = None
            return InboundMessage(
                message_type="system", text=None, ignore_reason="system message", details=details,
                change=change, **base
            )
        return build("system", None, "system message")

    if mtype in CAPTIONED_TYPES:
        caption = _str(_dict(raw.get(mtype)).get("caption"))
        if caption:
            if not allow_text_payloads and caption.startswith("/"):
                caption = _strip_payload_prefix(caption) or None
            if caption:
                details["has_caption"] = True
                return build(mtype, caption)
        return build(mtype, NON_TEXT_PAYLOAD)

    if mtype == "audio":
        mtype = "voice" if _dict(raw.get("audio")).get("voice") else "audio"
        return build(mtype, NON_TEXT_PAYLOAD)

    if mtype == "unsupported" or raw.get("errors"):
        codes = [_code(_dict(e).get("code")) for e in _list(raw.get("errors"))]
        if codes and codes[0] is not None:
            details["error_code"] = codes[0]
        return build(mtype, NON_TEXT_PAYLOAD)

    # sticker, location, contacts, order, video without caption, unknown new types
    return build(mtype, NON_TEXT_PAYLOAD)
