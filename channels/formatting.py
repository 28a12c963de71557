"""Rasa bot messages -> WhatsApp Cloud API message bodies (pure functions).

Limits (Meta): text body 4,096 characters; interactive body 1,024; reply
buttons: at most 3, title 20, id 256; list: one button label of 20, at most 10
rows, row title 24, row description 72, row id 200.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlparse

from appcare import labels

TEXT_LIMIT = 4096
INTERACTIVE_BODY_LIMIT = 1024
MAX_REPLY_BUTTONS = 3
BUTTON_TITLE_LIMIT = 20
BUTTON_ID_LIMIT = 256
MAX_LIST_ROWS = 10
ROW_TITLE_LIMIT = 24
ROW_DESCRIPTION_LIMIT = 72
ROW_ID_LIMIT = 200
ELLIPSIS = "\u2026"

# Dutch UI strings of the list message (appcare/labels.yml; last-resort texts of this
# pure formatting layer: every response with buttons in domain/ has its own text and at
# most 3 buttons, so the list and these labels do not occur in the current dialogue).
LIST_BUTTON_LABEL = labels.text("whatsapp_list.button")
LIST_SECTION_TITLE = labels.text("whatsapp_list.section")
DEFAULT_CHOICE_BODY = labels.text("whatsapp_list.default_body")
MORE_OPTIONS_INTRO = labels.text("whatsapp_list.more_options")

_URL = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?\u2026][\"')\]]?\s+")
IMAGE_EXT = {".jpg", ".jpeg", ".png"}
VIDEO_EXT = {".mp4", ".3gp"}
AUDIO_EXT = {".mp3", ".ogg", ".aac", ".amr", ".m4a"}


def has_url(text: str) -> bool:
    return bool(_URL.search(text or ""))


def truncate(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


def _cut_position(text: str, limit: int) -> int:
    """Best place to cut ``text`` so that the first part has at most ``limit`` chars."""
    floor = limit // 4
    for sep in ("\n\n", "\n"):
        idx = text.rfind(sep, 0, limit)
        if idx > floor:
            return idx
    last = None
    for match in _SENTENCE_END.finditer(text[: limit + 1]):
        end = match.start() + len(match.group(0).rstrip())
        if end <= limit:
            last = end
    if last and last > floor:
        return last
    idx = text.rfind(" ", 0, limit)
    if idx > floor:
        return idx
    return limit


def split_text(text: str, limit: int = TEXT_LIMIT) -> List[str]:
    """Splits on paragraph, line, sentence or word boundaries into parts of at most ``limit``."""
    text = (text or "").strip()
    parts: List[str] = []
    while len(text) > limit:
        cut = _cut_position(text, limit)
        head = text[:cut].rstrip()
        if not head:  # defensive: never loop forever
            head, cut = text[:limit], limit
        parts.append(head)
        text = text[cut:].strip()
    if text:
        parts.append(text)
    return parts


def _base(to: str) -> Dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}


def text_payloads(to: str, text: str) -> List[Dict[str, Any]]:
    payloads = []
    for part in split_text(text):
        payload = _base(to)
        payload.update({"type": "text", "text": {"body": part, "preview_url": has_url(part)}})
        payloads.append(payload)
    return payloads


def _button_payload(button: Dict[str, Any]) -> Optional[str]:
    payload = button.get("payload")
    if payload is None or str(payload).strip() == "":
        payload = button.get("title")
    if payload is None:
        return None
    return str(payload).strip() or None


def _body_and_lead(text: str) -> Tuple[List[str], str]:
    """Interactive bodies hold 1,024 characters: longer text is sent as text
    messages first and only its last part becomes the body."""
    text = (text or "").strip()
    if not text:
        return [], DEFAULT_CHOICE_BODY
    if len(text) <= INTERACTIVE_BODY_LIMIT:
        return [], text
    parts = split_text(text, INTERACTIVE_BODY_LIMIT)
    body = parts[-1]
    lead = "\n\n".join(parts[:-1])
    return split_text(lead), body


def button_payloads(to: str, text: str, buttons: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Reply buttons for up to 3 options, a list for up to 10, a list plus a
    text with the remaining options beyond 10. Link buttons become text lines."""
    links: List[str] = []
    options: List[Dict[str, str]] = []
    seen_ids = set()
    for button in buttons or []:
        if not isinstance(button, dict):
            continue
        title = str(button.get("title") or "").strip()
        url = button.get("url")
        if url:
            links.append(f"{title}: {url}" if title else str(url))
            continue
        payload = _button_payload(button)
        if not payload:
            continue
        title = title or payload
        option_id = payload
        if len(option_id) > BUTTON_ID_LIMIT:
            option_id = title  # an over-long payload cannot be an id; Rasa's NLU gets the title
        if option_id in seen_ids:
            continue
        seen_ids.add(option_id)
        options.append({"id": option_id, "title": title, "description": str(button.get("description") or "")})

    if links:
        text = "\n".join([t for t in [(text or "").strip()] if t] + links)
    if not options:
        return text_payloads(to, text) if (text or "").strip() else []

    lead, body = _body_and_lead(text)
    payloads = [p for part in lead for p in text_payloads(to, part)]
    interactive: Dict[str, Any]
    if len(options) <= MAX_REPLY_BUTTONS:
        interactive = {
            "type": "button",
            "body": {"text": body},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": o["id"], "title": truncate(o["title"], BUTTON_TITLE_LIMIT)}}
                    for o in options
                ]
            },
        }
    else:
        rows = []
        for o in options[:MAX_LIST_ROWS]:
            row: Dict[str, Any] = {
                "id": o["id"] if len(o["id"]) <= ROW_ID_LIMIT else truncate(o["title"], ROW_ID_LIMIT),
                "title": truncate(o["title"], ROW_TITLE_LIMIT),
            }
            description = o["description"] or (o["title"] if len(o["title"]) > ROW_TITLE_LIMIT else "")
            if description:
                row["description"] = truncate(description, ROW_DESCRIPTION_LIMIT)
            rows.append(row)
        interactive = {
            "type": "list",
            "body": {"text": body},
            "action": {"button": LIST_BUTTON_LABEL, "sections": [{"title": LIST_SECTION_TITLE, "rows": rows}]},
        }
    payload = _base(to)
    payload.update({"type": "interactive", "interactive": interactive})
    payloads.append(payload)

    rest = options[MAX_LIST_ROWS:]
    if rest:
        lines = [MORE_OPTIONS_INTRO] + [f"- {o['title']}" for o in rest]
        payloads.extend(text_payloads(to, "\n".join(lines)))
    return payloads


def _media_kind(url: str) -> str:
    ext = os.path.splitext(urlparse(url).path)[1].lower()
    if ext in IMAGE_EXT:
        return "image"
    if ext in VIDEO_EXT:
        return "video"
    if ext in AUDIO_EXT:
        return "audio"
    return "document"


def media_payload(to: str, url: str, kind: Optional[str] = None, caption: Optional[str] = None) -> Dict[str, Any]:
    kind = kind or _media_kind(url)
    media: Dict[str, Any] = {"link": url}
    if caption and kind in ("image", "video", "document"):
        media["caption"] = caption[:INTERACTIVE_BODY_LIMIT]
    if kind == "document":
        filename = os.path.basename(urlparse(url).path)
        if filename:
            media["filename"] = filename
    payload = _base(to)
    payload.update({"type": kind, kind: media})
    return payload


def attachment_payloads(to: str, attachment: Any) -> List[Dict[str, Any]]:
    """Rasa attachments: a URL string, or a dict such as
    ``{"type": "document", "url": "...", "caption": "..."}`` or Messenger-style
    ``{"type": "file", "payload": {"url": "..."}}``."""
    if isinstance(attachment, str):
        if attachment.startswith(("http://", "https://")):
            return [media_payload(to, attachment)]
        return text_payloads(to, attachment)
    if isinstance(attachment, dict):
        inner = attachment.get("payload") if isinstance(attachment.get("payload"), dict) else {}
        url = attachment.get("url") or attachment.get("link") or inner.get("url") or inner.get("src")
        if url:
            kind = attachment.get("type")
            kind = {"file": "document"}.get(kind, kind)
            if kind not in ("image", "video", "audio", "document"):
                kind = None
            return [media_payload(to, str(url), kind, attachment.get("caption"))]
    return []


def custom_payload(to: str, custom: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Pass-through of a Graph API message body; ``{"whatsapp": {...}}`` is unwrapped."""
    if not isinstance(custom, dict):
        return None
    body = custom.get("whatsapp") if isinstance(custom.get("whatsapp"), dict) else custom
    if "type" not in body:
        return None
    payload = _base(to)
    payload.update({k: v for k, v in body.items() if k not in ("to",)})
    payload["to"] = to
    return payload


def template_payload(to: str, name: str, language: str, components: Optional[list] = None) -> Dict[str, Any]:
    payload = _base(to)
    template: Dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        template["components"] = components
    payload.update({"type": "template", "template": template})
    return payload


@dataclass
class BotMessage:
    """One message as Rasa produced it (collected during a turn)."""

    kind: str  # text | buttons | image | attachment | custom
    text: str = ""
    buttons: List[Dict[str, Any]] = field(default_factory=list)
    url: Optional[str] = None
    attachment: Any = None
    custom: Optional[Dict[str, Any]] = None
    ref: Optional[str] = None


def message_payloads(to: str, message: BotMessage) -> List[Dict[str, Any]]:
    if message.kind == "text":
        return text_payloads(to, message.text)
    if message.kind == "buttons":
        return button_payloads(to, message.text, message.buttons)
    if message.kind == "image" and message.url:
        return [media_payload(to, message.url, "image")]
    if message.kind == "attachment":
        return attachment_payloads(to, message.attachment)
    if message.kind == "custom" and message.custom is not None:
        payload = custom_payload(to, message.custom)
        if payload:
            return [payload]
        return text_payloads(to, json.dumps(message.custom, ensure_ascii=False))
    return []


def plan_turn(to: str, messages: Iterable[BotMessage], join_buttons: bool = True) -> List[Dict[str, Any]]:
    """Graph API bodies for all bot messages of one turn: consecutive texts are
    joined with a blank line while the result stays within 4,096 characters;
    media stay in place; messages with buttons come last, and the texts right
    before them join the first one's body when that stays within 1,024 characters
    (``join_buttons=False``: the plan before that change, for tools/bubbles.py)."""
    payloads: List[Dict[str, Any]] = []
    buffer: List[str] = []

    def flush() -> None:
        if buffer:
            payloads.extend(text_payloads(to, "\n\n".join(buffer)))
            buffer.clear()

    messages = list(messages)
    with_buttons = [m for m in messages if m.kind == "buttons"]
    for message in messages:
        if message.kind == "buttons":
            continue
        if message.kind == "text":
            text = (message.text or "").strip()
            if not text:
                continue
            if buffer and len("\n\n".join(buffer + [text])) > TEXT_LIMIT:
                flush()
            buffer.append(text)
            continue
        flush()
        payloads.extend(message_payloads(to, message))
    if join_buttons and with_buttons and buffer:
        # Fewer bubbles (every message sent costs money since 1 October 2026): the texts
        # just before the buttons become part of the first button message's body when
        # they fit in an interactive body (1,024 characters); the buttons stay with
        # the question they belong to, at the end.
        first = with_buttons[0]
        body = "\n\n".join(buffer + [t for t in [(first.text or "").strip()] if t])
        if len(body) <= INTERACTIVE_BODY_LIMIT and not any(b.get("url") for b in first.buttons if isinstance(b, dict)):
            with_buttons[0] = BotMessage("buttons", text=body, buttons=first.buttons, ref=first.ref)
            buffer.clear()
    flush()
    for message in with_buttons:
        payloads.extend(message_payloads(to, message))
    return payloads


def describe(payload: Dict[str, Any]) -> str:
    """Short, content-free kind of a payload for logs and the outbox."""
    kind = str(payload.get("type") or "unknown")
    if kind == "interactive":
        return "interactive_" + str((payload.get("interactive") or {}).get("type") or "unknown")
    return kind
