"""Bridge to an existing webcare inbox (OBI4wan/Spotler Engage, Chatwoot, Zendesk, ...).

Outbound: with ``DESK_WEBHOOK_URL`` and ``DESK_WEBHOOK_SECRET`` set, the desk posts
every new ticket (``ticket.created``) and every new citizen message in a ticket
(``ticket.message``) as JSON to that URL, signed with

    X-Appcare-Signature: sha256=<hex HMAC-SHA256 of the raw request body with the secret>

The desk's background worker finds new rows in the ticket store (the bot never
waits for it), queues them in ``desk_webhook_outbox`` (at most once per event) and
delivers them in order with retries (``DESK_WEBHOOK_ATTEMPTS``, default 5, backoff 2, 4,
8 s...; an event that keeps failing is given up, audited, and the next one goes).
A 2xx answer counts as delivered.

Inbound: ``POST /api/integrations/reply`` and ``POST /api/integrations/close``,
signed the same way with the same secret (see desk/app.py and docs/desk.md).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import math
import threading
import time
from typing import Any, Dict, Optional, Tuple

import requests

from appcare.handoff_store import HandoffStore, Ticket, utcnow

from desk.settings import Settings
from desk.store import DeskStore

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Appcare-Signature"
REQUEST_ID_KEPT = dt.timedelta(days=7)  # an inbound request_id is recognised this long
REQUEST_MAX_AGE = 300.0  # seconds: an inbound request with an older "timestamp" is refused
REQUIRED_FIELDS = ("timestamp", "request_id")  # of every signed inbound request (replay protection)
MAX_REQUEST_ID = 128
CURSOR_TICKET = "webhook.cursor.ticket"
CURSOR_MESSAGE = "webhook.cursor.message"
RESCAN_WINDOW = 20


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: Optional[str], body: bytes, header: Optional[str]) -> bool:
    if not secret or not header:
        return False
    return hmac.compare_digest(sign(secret, body or b"").encode(), header.strip().encode())


def inbound_problem(data: Dict[str, Any], now: Optional[float] = None) -> Optional[Tuple[int, Dict[str, Any]]]:
    """Why a signed inbound request is refused before it is acted on, as (HTTP status,
    JSON answer); None when it may go ahead.

    Both ``timestamp`` (Unix seconds, at most REQUEST_MAX_AGE off) and ``request_id``
    (unique per reply, at most 128 characters) are required: without them a captured
    signed request could be sent again at any time.
    """
    for name in REQUIRED_FIELDS:
        value = data.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return 400, {"error": f"verplicht veld ontbreekt: {name}", "code": "missing_field", "field": name}
    request_id = data["request_id"]
    if not isinstance(request_id, (str, int)) or isinstance(request_id, bool) or len(str(request_id).strip()) > MAX_REQUEST_ID:
        return 400, {"error": f"ongeldig veld: request_id (tekst, maximaal {MAX_REQUEST_ID} tekens)",
                     "code": "invalid_field", "field": "request_id"}
    stamp = data["timestamp"]
    try:
        seconds = float(stamp) if not isinstance(stamp, bool) else float("nan")
    except (TypeError, ValueError):
        seconds = float("nan")
    now = time.time() if now is None else now
    if not math.isfinite(seconds) or abs(now - seconds) > REQUEST_MAX_AGE:
        return 401, {"error": "verzoek verlopen of ongeldige timestamp (Unix-seconden, max. 5 minuten oud)",
                     "code": "expired", "field": "timestamp"}
    return None


def claim_stale_after(settings: Settings) -> dt.timedelta:
    """How old an uncompleted claim of a request_id must be before a retry may take it
    over: longer than a request can run (the reply waits for Rasa up to rasa_timeout)."""
    return dt.timedelta(seconds=max(REQUEST_MAX_AGE, 2 * settings.rasa_timeout + 60))


def _iso(moment: Optional[dt.datetime]) -> Optional[str]:
    if moment is None:
        return None
    return moment.replace(tzinfo=dt.timezone.utc).isoformat(timespec="seconds")


def ticket_payload(ticket: Ticket) -> Dict[str, Any]:
    return {
        "event": "ticket.created",
        "delivery_id": f"ticket:{ticket.id}",
        "ticket": {
            "id": ticket.id,
            "conversation_id": ticket.conversation_id,
            "channel": ticket.channel,
            "municipality": ticket.municipality,
            "reason": ticket.reason,
            "summary": ticket.summary,
            "transcript": ticket.transcript,
            "status": ticket.status,
            "created_at": _iso(ticket.created_at),
            "in_kcc_hours": bool(ticket.in_kcc_hours),
            "expected_reply_at": _iso(ticket.expected_reply_at),
            "urgent": bool(ticket.urgent),
            "language": ticket.language,
            # the number itself stays in the desk (not copied into the outbox and other tools)
            "callback_requested": bool(ticket.callback_requested),
        },
    }


def message_payload(message: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "event": "ticket.message",
        "delivery_id": f"message:{message['id']}",
        "ticket": {
            "id": message["ticket_id"],
            "conversation_id": message["conversation_id"],
            "channel": message["channel"],
            "municipality": message["municipality"],
        },
        "message": {
            "id": message["id"],
            "author": message["author"],
            "text": message["text"],
            "created_at": _iso(message["created_at"]),
        },
    }


class WebhookDispatcher:
    def __init__(self, settings: Settings, handoff: HandoffStore, store: DeskStore):
        self.settings = settings
        self.handoff = handoff
        self.store = store

    @property
    def enabled(self) -> bool:
        return bool(self.settings.webhook_url and self.settings.webhook_secret)

    def init_cursors(self) -> None:
        """First start: begin after what exists (history is not replayed)."""
        ids = None
        for kind, key in (("ticket", CURSOR_TICKET), ("message", CURSOR_MESSAGE)):
            if self.store.get_value(key) is None:
                ids = ids or self.handoff.max_ids()
                self.store.set_value(key + ".floor", str(ids[kind]))
                self.store.set_value(key, str(ids[kind]))

    def _start(self, key: str) -> int:
        # Re-read a window below the cursor: with PostgreSQL a lower id can commit
        # after a higher one. Events are queued once per key, so re-reading is harmless.
        cursor = int(self.store.get_value(key) or 0)
        floor = int(self.store.get_value(key + ".floor") or 0)
        return max(floor, cursor - RESCAN_WINDOW)

    def scan(self) -> int:
        """Queues events for tickets and citizen messages added since the last scan."""
        self.init_cursors()
        queued = 0
        ticket_cursor = int(self.store.get_value(CURSOR_TICKET) or 0)
        for ticket in self.handoff.tickets_after(self._start(CURSOR_TICKET), limit=200):
            queued += self.store.enqueue_event(f"ticket:{ticket.id}", "ticket.created", ticket_payload(ticket))
            ticket_cursor = max(ticket_cursor, ticket.id)
        self.store.set_value(CURSOR_TICKET, str(ticket_cursor))
        message_cursor = int(self.store.get_value(CURSOR_MESSAGE) or 0)
        for message in self.handoff.citizen_messages_after(self._start(CURSOR_MESSAGE), limit=400):
            if message["ticket_id"] > ticket_cursor:
                # Its ticket was committed after the ticket scan above: next round, after the
                # ticket.created event (a webcare tool never sees a message before its ticket).
                break
            queued += self.store.enqueue_event(f"message:{message['id']}", "ticket.message", message_payload(message))
            message_cursor = max(message_cursor, message["id"])
        self.store.set_value(CURSOR_MESSAGE, str(message_cursor))
        return queued

    def deliver_due(self) -> int:
        delivered = 0
        for event in self.store.due_events():
            attempts = event["attempts"] + 1
            error = self._post(event["event"], event["event_key"], event["payload"].encode("utf-8"))
            if error is None:
                self.store.mark_event(event["id"], "sent", attempts)
                delivered += 1
            elif attempts >= self.settings.webhook_attempts:
                self.store.mark_event(event["id"], "failed", attempts, error)
                self.store.audit("system", "webhook_failed", _ticket_of(event), {"event": event["event_key"], "error": error})
                logger.warning("webhook %s given up after %d attempts: %s", event["event_key"], attempts, error)
            else:
                delay = min(300.0, 2.0 ** attempts)
                self.store.mark_event(
                    event["id"], "pending", attempts, error, utcnow() + dt.timedelta(seconds=delay)
                )
                break  # keep the order: later events wait for this one
        return delivered

    def _post(self, event: str, key: str, body: bytes) -> Optional[str]:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(self.settings.webhook_secret or "", body),
            "X-Appcare-Event": event,
            "X-Appcare-Delivery": key,
            "User-Agent": "appcare-desk",
        }
        try:
            response = requests.post(
                self.settings.webhook_url, data=body, headers=headers, timeout=self.settings.webhook_timeout
            )
        except requests.RequestException as exc:
            return f"{type(exc).__name__}"
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    def run_once(self) -> None:
        if not self.enabled:
            return
        self.scan()
        self.deliver_due()


def _ticket_of(event: Dict[str, Any]) -> Optional[int]:
    try:
        payload = json.loads(event["payload"])
        return int(payload["ticket"]["id"])
    except (ValueError, KeyError, TypeError):
        return None


class BackgroundWorker(threading.Thread):
    """Flags overdue tickets, delivers webhooks and purges old sessions, every few seconds."""

    def __init__(self, service, dispatcher: WebhookDispatcher, auth, interval: float):
        super().__init__(name="desk-background", daemon=True)
        self.service = service
        self.dispatcher = dispatcher
        self.auth = auth
        self.interval = interval
        self._stop_event = threading.Event()
        self._rounds = 0

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.run_once()
            self._stop_event.wait(self.interval)

    def run_once(self) -> None:
        for task in (self.service.flag_overdue, self.dispatcher.run_once):
            try:
                task()
            except Exception:  # noqa: BLE001 - keep the worker alive (DB restart etc.)
                logger.exception("desk background task %s failed", getattr(task, "__name__", task))
        self._rounds += 1
        if self._rounds % 150 == 1:
            try:
                self.auth.purge_expired()
                self.service.store.purge_requests(utcnow() - REQUEST_ID_KEPT)
            except Exception:  # noqa: BLE001
                logger.exception("purging sessions failed")
