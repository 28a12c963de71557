"""Persistent state of the WhatsApp channel (SQLAlchemy 1.4: declarative tables,
2.0-style Core statements).

Tables (in the appcare database, ``APPCARE_DB_URL``):

``whatsapp_inbox``   one row per received message, primary key ``wamid``
                     (de-duplication). ``status``: pending -> processing ->
                     replying -> done; ``ignored`` (status-only/unanswered kinds),
                     ``failed`` (bot crashed on it repeatedly). Text, metadata and
                     number are erased once the row is finished; the bare wamid is
                     kept ``retention_days`` (>= 7) for de-duplication.
``whatsapp_outbox``  one row per Graph API message we send. Bot replies carry
                     ``(inbound_wamid, seq)`` (unique) so a restart resumes a
                     half-sent reply instead of asking the bot again. ``status``:
                     pending -> sending -> sent | failed | deferred (outside the 24h
                     window, template sent instead, delivered when the citizen
                     writes again) | unknown (the request may have reached Meta,
                     result not known: resolved by a status webhook carrying the
                     row id in ``biz_opaque_callback_data``, else resent once). ``error_code`` is Meta's error code;
                     ``delivery_status`` follows the status webhooks; ``ref`` is an
                     optional reference given by the sender (e.g. a KCC ticket message).
``whatsapp_contacts`` per (business number, citizen): last inbound message time
                     (24h customer-service window) and last template sent.
``whatsapp_status_events`` raw delivery reports (sent/delivered/read/failed).
``whatsapp_sender_leases`` which instance processes a sender right now (key:
                     sender hash, ``owner``, ``expires_at``). With several Rasa
                     instances on one database only the lease holder works on a
                     sender, so one citizen's messages are never handled twice or
                     in parallel (Rasa OSS issue 9213); a lease of a crashed
                     instance expires after ``lease_seconds``.
``whatsapp_identities`` the citizen's identifiers (phone number, business-scoped user
                     id BSUID) -> one conversation key (the BSUID when first seen with
                     one, else the phone number; an existing conversation keeps its
                     key), and the username. Everything keyed on ``wa_id`` /
                     ``recipient`` above holds that conversation key.

Time: every time column is a ``DateTime`` holding naive UTC (``*_at``, like the other
stores' tables; revision 0003 converted the epoch floats of before). The channel
computes with epoch seconds (``time.time()``: leases, the 24-hour window, retries;
the ``*_ts`` attributes and arguments here), converted at this store's boundary
with :func:`appcare.db.from_epoch` / :func:`appcare.db.to_epoch` (to the microsecond,
so ``sort_at``, WhatsApp's message timestamp, orders exactly as before). Comparisons
in SQL compare a column with a converted value.

All methods are synchronous; :class:`AsyncInbox` runs them on a small pool of
threads (``WHATSAPP_DB_THREADS``, 4) plus one for the webhook path, so the event
loop never blocks on the database.

Round trips: a worker needs few transactions per answered message. :meth:`InboxStore.claim_next`
takes (or renews) the sender's lease, reads the next open message and marks it
processing in one transaction; :meth:`InboxStore.begin_reply_rows` stores the reply and
returns what to send (with the address); :meth:`InboxStore.finish_and_next` finishes a
message and claims the next one, or releases the lease when none is left.

Wake-up across instances (PostgreSQL): an instance that lets go of a sender while
that sender still has open messages (a worker that gave up, shutdown) sends
``NOTIFY appcare_inbox`` in the same transaction; :class:`InboxListener` in every
instance wakes that instance's maintenance loop, which takes the sender over at once
instead of after ``stale_after``. The same wake-up spreads the load: a message is
answered by the instance HAProxy delivered its webhook to (``received_by``) when the
sender's lease holder finishes and that instance is alive (``finish_and_next``).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import select as select_module
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    case,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import declarative_base

from appcare import db as appcare_db
from appcare.db import from_epoch, to_epoch
from appcare.pii import conversation_hash

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 24 * 3600
WINDOW_MARGIN_SECONDS = 60  # treat the window as closed a minute early

OPEN_INBOX = ("pending", "processing", "replying")
LISTENER_PREFIX = "appcare-inbox-"  # application_name of an instance's listener: + a hash of its id
NOTIFY_CHANNEL = "appcare_inbox"  # PostgreSQL LISTEN/NOTIFY channel: a sender was let go with open messages
IN_DOUBT = ("sending", "unknown")  # outbox rows that may or may not have reached Meta
CALLBACK_PREFIX = "appcare:"  # biz_opaque_callback_data = CALLBACK_PREFIX + outbox row id
FINISHED_INBOX = ("done", "ignored", "failed")
DELIVERY_RANK = {"sent": 1, "delivered": 2, "read": 3}

KEY_LENGTH = 191  # a conversation key: phone number or BSUID (up to 2 + 1 + 128 characters)
Base = declarative_base()
metadata = Base.metadata


class InboxRow(Base):
    __tablename__ = "whatsapp_inbox"
    __table_args__ = (
        Index("ix_whatsapp_inbox_open", "status", "wa_id"),
        Index("ix_whatsapp_inbox_received", "received_at"),
    )

    wamid = Column(String(191), primary_key=True)
    phone_number_id = Column(String(64), nullable=False)
    wa_id = Column(String(KEY_LENGTH), nullable=True)  # conversation key (phone number or BSUID)
    sender_hash = Column(String(16), nullable=False)
    message_type = Column(String(32), nullable=False)
    text = Column(Text, nullable=True)
    metadata_json = Column(Text, nullable=True)
    sort_at = Column(DateTime, nullable=False)  # the message's own timestamp (WhatsApp's): the order
    received_at = Column(DateTime, nullable=False)
    position = Column(Integer, nullable=False, default=0)
    status = Column(String(16), nullable=False)
    attempts = Column(Integer, nullable=False, default=0)
    error = Column(String(64), nullable=True)
    updated_at = Column(DateTime, nullable=False)
    received_by = Column(String(128), nullable=True)  # instance id of the webhook's receiver (revision 0002)


class OutboxRow(Base):
    __tablename__ = "whatsapp_outbox"
    __table_args__ = (UniqueConstraint("inbound_wamid", "seq", name="uq_whatsapp_outbox_reply"),)

    id = Column(Integer, primary_key=True, autoincrement=True)
    inbound_wamid = Column(String(191), nullable=True)
    seq = Column(Integer, nullable=False, default=0)
    ref = Column(String(128), nullable=True, index=True)
    phone_number_id = Column(String(64), nullable=False)
    recipient = Column(String(KEY_LENGTH), nullable=False)
    recipient_hash = Column(String(16), nullable=False, index=True)
    kind = Column(String(32), nullable=False)
    payload_json = Column(Text, nullable=True)
    status = Column(String(16), nullable=False, index=True)
    wamid = Column(String(191), nullable=True, index=True)
    error_code = Column(Integer, nullable=True)
    error = Column(String(64), nullable=True)
    delivery_status = Column(String(16), nullable=True)
    # Per-message pricing from the first status webhook that carried ``pricing``
    # (category: service, utility, marketing, authentication, ...): the report's
    # billable messages and estimated cost.
    pricing_category = Column(String(32), nullable=True)
    billable = Column(Boolean, nullable=True)
    attempts = Column(Integer, nullable=False, default=0)
    created_at = Column(DateTime, nullable=False, index=True)
    updated_at = Column(DateTime, nullable=False)


class ContactRow(Base):
    __tablename__ = "whatsapp_contacts"

    phone_number_id = Column(String(64), primary_key=True)
    wa_id = Column(String(KEY_LENGTH), primary_key=True)
    last_inbound_at = Column(DateTime, nullable=True)
    template_sent_at = Column(DateTime, nullable=True)
    updated_at = Column(DateTime, nullable=False)


class StatusEventRow(Base):
    __tablename__ = "whatsapp_status_events"

    id = Column(Integer, primary_key=True, autoincrement=True)
    wamid = Column(String(191), nullable=False, index=True)
    status = Column(String(16), nullable=False)
    error_code = Column(Integer, nullable=True)
    recipient_hash = Column(String(16), nullable=True)
    event_at = Column(DateTime, nullable=True)
    recorded_at = Column(DateTime, nullable=False, index=True)


class LeaseRow(Base):
    __tablename__ = "whatsapp_sender_leases"

    sender_hash = Column(String(16), primary_key=True)
    owner = Column(String(128), nullable=False)
    expires_at = Column(DateTime, nullable=False)
    acquired_at = Column(DateTime, nullable=False)


class IdentityRow(Base):
    __tablename__ = "whatsapp_identities"

    identifier = Column(String(KEY_LENGTH), primary_key=True)  # phone number or BSUID
    kind = Column(String(8), nullable=False)  # phone | bsuid
    conversation_key = Column(String(KEY_LENGTH), nullable=False, index=True)
    username = Column(String(128), nullable=True)
    created_at = Column(DateTime, nullable=False)
    updated_at = Column(DateTime, nullable=False, index=True)


# The tables, for the Core statements below (and jobs/retention.py, tests).
inbox: Table = InboxRow.__table__
outbox: Table = OutboxRow.__table__
contacts: Table = ContactRow.__table__
status_events: Table = StatusEventRow.__table__
leases: Table = LeaseRow.__table__
identities: Table = IdentityRow.__table__


def _is_bsuid(value: Optional[str]) -> bool:
    from channels.webhook_parser import is_bsuid

    return is_bsuid(value)


@dataclass(frozen=True)
class NewInbound:
    """What the webhook handler persists for one message."""

    wamid: str
    phone_number_id: str
    wa_id: str
    message_type: str
    text: Optional[str]
    metadata: Dict[str, Any]
    sort_ts: float
    answerable: bool
    opens_window: bool


@dataclass(frozen=True)
class InboxItem:
    wamid: str
    phone_number_id: str
    wa_id: str
    message_type: str
    text: Optional[str]
    metadata: Dict[str, Any]
    status: str
    attempts: int
    sort_ts: float = 0.0  # message timestamp (epoch seconds)


@dataclass(frozen=True)
class Claim:
    """Outcome of :meth:`InboxStore.claim_next` / :meth:`InboxStore.finish_and_next`.

    ``reason``: ``claimed`` (``item`` is this sender's next open message and the
    caller holds the lease), ``none`` (no open message left; the lease was released)
    or ``leased`` (another live instance holds the sender: it also takes every open
    message, so the caller lets go) or ``handed`` (the lease was released for the
    live instance that received the next message; it was woken). ``attempts`` is the message's processing count
    after it was marked ``processing``; None when it was not (``replying``: only the
    rest of a stored reply is sent; or ``start=False``). ``has_deferred``: messages
    deferred outside the 24h window wait for this citizen."""

    reason: str
    item: Optional[InboxItem] = None
    attempts: Optional[int] = None
    has_deferred: bool = False


@dataclass(frozen=True)
class OutboxItem:
    id: int
    inbound_wamid: Optional[str]
    seq: int
    ref: Optional[str]
    phone_number_id: str
    recipient: str
    kind: str
    payload: Optional[Dict[str, Any]]
    status: str
    wamid: Optional[str]
    error_code: Optional[int]
    error: Optional[str]
    delivery_status: Optional[str]
    created_ts: float
    attempts: int = 0
    updated_ts: float = 0.0
    pricing_category: Optional[str] = None
    billable: Optional[bool] = None


@dataclass(frozen=True)
class ReplyRows:
    """A stored reply's rows still to send (in order) and where they go: ("to", phone
    number) or ("recipient", BSUID), see :meth:`InboxStore.address_of`."""

    rows: List["OutboxItem"]
    address: Optional["tuple[str, str]"] = None


def callback_data(outbox_id: int) -> str:
    """What goes into ``biz_opaque_callback_data`` of an outbound message."""
    return f"{CALLBACK_PREFIX}{outbox_id}"


def outbox_id_of(data: Optional[str]) -> Optional[int]:
    """The outbox row id of an echoed ``biz_opaque_callback_data`` (None if not ours)."""
    if not data or not data.startswith(CALLBACK_PREFIX):
        return None
    rest = data[len(CALLBACK_PREFIX):]
    # ASCII digits only: str.isdigit() is also true for "²" or "١٢", which int() refuses or misreads
    return int(rest) if rest.isascii() and rest.isdigit() and len(rest) < 19 else None


def _recipient_of(status: Any) -> Optional[str]:
    return status.recipient_id or getattr(status, "recipient_user_id", None)


def _db_now() -> "dt.datetime":
    """``time.time()`` as stored (naive UTC, see :func:`appcare.db.from_epoch`)."""
    return from_epoch(time.time())


def _inbox_item(row: Any) -> InboxItem:
    m = row._mapping
    return InboxItem(
        wamid=m["wamid"],
        phone_number_id=m["phone_number_id"],
        wa_id=m["wa_id"],
        message_type=m["message_type"],
        text=m["text"],
        metadata=json.loads(m["metadata_json"]) if m["metadata_json"] else {},
        status=m["status"],
        attempts=m["attempts"],
        sort_ts=to_epoch(m["sort_at"]),
    )


def _outbox_item(row: Any) -> OutboxItem:
    m = row._mapping
    return OutboxItem(
        id=m["id"],
        inbound_wamid=m["inbound_wamid"],
        seq=m["seq"],
        ref=m["ref"],
        phone_number_id=m["phone_number_id"],
        recipient=m["recipient"],
        kind=m["kind"],
        payload=json.loads(m["payload_json"]) if m["payload_json"] else None,
        status=m["status"],
        wamid=m["wamid"],
        error_code=m["error_code"],
        error=m["error"],
        delivery_status=m["delivery_status"],
        created_ts=to_epoch(m["created_at"]),
        attempts=m["attempts"] or 0,
        updated_ts=to_epoch(m["updated_at"]) or 0.0,
        pricing_category=m.get("pricing_category"),
        billable=m.get("billable"),
    )


def _insert_ignore(conn: Connection, table: Table, values: Dict[str, Any]) -> bool:
    """INSERT unless the primary/unique key exists; True when a row was inserted."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        result = conn.execute(insert(table).values(**values).on_conflict_do_nothing())
        return result.rowcount == 1
    pk = [c for c in table.primary_key.columns]
    exists = conn.execute(select(func.count()).select_from(table).where(and_(*[c == values[c.name] for c in pk])))
    if exists.scalar():
        return False
    conn.execute(table.insert().values(**values))
    return True


def _dialect_insert(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


class InboxStore:
    def __init__(self, db_url: Optional[str] = None, engine: Optional[Engine] = None) -> None:
        self.engine = engine or appcare_db.get_engine(db_url)
        appcare_db.ensure_schema(self.engine)

    # ------------------------------------------------------------ identities
    def conversation_key(
        self, phone: Optional[str], user_id: Optional[str], username: Optional[str] = None,
        now: Optional[float] = None,
    ) -> str:
        """The one conversation key of a citizen: the key already stored for the BSUID
        or the phone number; else the phone number when a conversation exists under it
        (from before BSUIDs); else the BSUID when present, else the phone number. Both
        identifiers are stored with that key (and the username)."""
        now = now or time.time()
        with self.engine.begin() as conn:
            return self._resolve(conn, phone, user_id, username, now)

    def _resolve(self, conn: Connection, phone: Optional[str], user_id: Optional[str],
                 username: Optional[str], now: float) -> str:
        ids = [i for i in (user_id, phone) if i]
        if not ids:
            raise ValueError("a citizen without identifiers")
        known = {
            r[0]: r[1]
            for r in conn.execute(select(identities.c.identifier, identities.c.conversation_key)
                                  .where(identities.c.identifier.in_(ids)))
        }
        key = known.get(user_id or "") or known.get(phone or "")
        if key is None:
            key = phone if phone and user_id and self._has_history(conn, phone) else (user_id or phone)
        at = from_epoch(now)
        for identifier, kind in ((user_id, "bsuid"), (phone, "phone")):
            if not identifier:
                continue
            if identifier not in known:
                _insert_ignore(conn, identities, dict(
                    identifier=identifier, kind=kind, conversation_key=key,
                    username=username if kind == "bsuid" else None, created_at=at, updated_at=at,
                ))
            values: Dict[str, Any] = {"updated_at": at}
            if username and kind == "bsuid":
                values["username"] = username[:128]
            conn.execute(update(identities).where(identities.c.identifier == identifier).values(**values))
        # Another webhook may have stored the identifier first: its key wins.
        stored = conn.execute(
            select(identities.c.conversation_key).where(identities.c.identifier == ids[0])
        ).scalar()
        return stored or key

    @staticmethod
    def _has_history(conn: Connection, phone: str) -> bool:
        for query in (
            select(contacts.c.wa_id).where(contacts.c.wa_id == phone).limit(1),
            select(outbox.c.id).where(outbox.c.recipient == phone).limit(1),
            select(inbox.c.wamid).where(inbox.c.wa_id == phone).limit(1),
        ):
            if conn.execute(query).first() is not None:
                return True
        return False

    def link_identifiers(
        self, phone: Optional[str], user_id: Optional[str], new_phone: Optional[str],
        new_user_id: Optional[str], now: Optional[float] = None,
    ) -> str:
        """A change of number / user id (system message): the new identifiers join
        the conversation of the old ones. Returns the conversation key."""
        now = now or time.time()
        with self.engine.begin() as conn:
            key = self._resolve(conn, phone, user_id, None, now)
            at = from_epoch(now)
            for identifier, kind in ((new_user_id, "bsuid"), (new_phone, "phone")):
                if not identifier:
                    continue
                if not _insert_ignore(conn, identities, dict(
                    identifier=identifier, kind=kind, conversation_key=key, username=None,
                    created_at=at, updated_at=at,
                )):
                    conn.execute(update(identities).where(identities.c.identifier == identifier)
                                 .values(conversation_key=key, updated_at=at))
            return key

    def phone_of(self, key: str) -> Optional[str]:
        """The phone number to send to for a conversation key (the latest one known),
        None when only a BSUID is known (send with ``recipient``)."""
        latest = self._latest_identifier(key, "phone")
        return latest or (None if _is_bsuid(key) else key)

    def address_of(self, key: str) -> "tuple[str, str]":
        """Where a message for a conversation key goes: ("to", latest phone number) when
        one is known, else ("recipient", latest BSUID) - after a change of user id the
        new one."""
        with self.engine.connect() as conn:
            return self._address(conn, key)

    @staticmethod
    def _address(conn: Connection, key: str) -> "tuple[str, str]":
        """:meth:`address_of` in one query on ``conn``."""
        latest: Dict[str, str] = {}
        for identifier, kind in conn.execute(
            select(identities.c.identifier, identities.c.kind)
            .where(identities.c.conversation_key == key)
            .order_by(identities.c.updated_at.desc())
        ):
            latest.setdefault(kind, identifier)
        phone = latest.get("phone") or (None if _is_bsuid(key) else key)
        if phone:
            return "to", phone
        return "recipient", latest.get("bsuid") or key

    def _latest_identifier(self, key: str, kind: str) -> Optional[str]:
        """The most recently used identifier of ``kind`` ("phone" | "bsuid") of a conversation."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(identities.c.identifier)
                .where(identities.c.conversation_key == key, identities.c.kind == kind)
                .order_by(identities.c.updated_at.desc())
                .limit(1)
            ).scalar()

    def identity_of(self, key: str) -> Dict[str, Optional[str]]:
        """{"phone", "user_id", "username"} of a conversation key (None where unknown)."""
        out: Dict[str, Optional[str]] = {"phone": None, "user_id": None, "username": None}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(identities.c.identifier, identities.c.kind, identities.c.username)
                .where(or_(identities.c.conversation_key == key, identities.c.identifier == key))
                .order_by(identities.c.updated_at)
            ).all()
        for identifier, kind, username in rows:
            out["user_id" if kind == "bsuid" else "phone"] = identifier
            if username:
                out["username"] = username
        if out["phone"] is None and out["user_id"] is None:
            out["user_id" if _is_bsuid(key) else "phone"] = key
        return out

    def keys_of_identifier(self, identifier: str) -> List[str]:
        """Conversation keys an identifier (phone number or BSUID) belongs to."""
        with self.engine.connect() as conn:
            keys = {r[0] for r in conn.execute(
                select(identities.c.conversation_key).where(identities.c.identifier == identifier))}
        return sorted(keys | {identifier})

    # ---------------------------------------------------------------- inbound
    def record_inbound(self, messages: Sequence[NewInbound], received_ts: float,
                       received_by: Optional[str] = None) -> List[bool]:
        """Persists new messages; returns per message whether it was new (False = duplicate).
        ``received_by``: the receiving instance's id (see ``finish_and_next``)."""
        results: List[bool] = []
        received_at = from_epoch(received_ts)
        with self.engine.begin() as conn:
            for position, message in enumerate(messages):
                inserted = _insert_ignore(
                    conn,
                    inbox,
                    dict(
                        wamid=message.wamid,
                        phone_number_id=message.phone_number_id,
                        wa_id=message.wa_id if message.answerable else None,
                        sender_hash=conversation_hash(message.wa_id),
                        message_type=message.message_type[:32],
                        text=message.text if message.answerable else None,
                        metadata_json=json.dumps(message.metadata, ensure_ascii=False) if message.answerable else None,
                        sort_at=from_epoch(message.sort_ts),
                        received_at=received_at,
                        position=position,
                        status="pending" if message.answerable else "ignored",
                        attempts=0,
                        updated_at=received_at,
                        received_by=received_by[:128] if received_by else None,
                    ),
                )
                results.append(inserted)
                if inserted and message.opens_window:
                    self._touch_contact(conn, message.phone_number_id, message.wa_id, message.sort_ts, received_ts)
        return results

    def _touch_contact(self, conn: Connection, pnid: str, wa_id: str, ts: float, now: float) -> None:
        last, at = from_epoch(ts), from_epoch(now)
        _insert_ignore(
            conn, contacts, dict(phone_number_id=pnid, wa_id=wa_id, last_inbound_at=last, updated_at=at)
        )
        conn.execute(
            update(contacts)
            .where(contacts.c.phone_number_id == pnid, contacts.c.wa_id == wa_id)
            .where(or_(contacts.c.last_inbound_at.is_(None), contacts.c.last_inbound_at < last))
            .values(last_inbound_at=last, updated_at=at)
        )

    def senders_with_open_messages(self) -> List[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(inbox.c.wa_id).where(inbox.c.status.in_(OPEN_INBOX), inbox.c.wa_id.isnot(None)).distinct()
            )
            return [r[0] for r in rows]

    def next_open_message(self, wa_id: str) -> Optional[InboxItem]:
        """Oldest unfinished message of a sender (by message timestamp)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(inbox)
                .where(inbox.c.wa_id == wa_id, inbox.c.status.in_(OPEN_INBOX))
                .order_by(inbox.c.sort_at, inbox.c.received_at, inbox.c.position)
                .limit(1)
            ).first()
        return _inbox_item(row) if row is not None else None

    def start_processing(self, wamid: str, now: Optional[float] = None) -> int:
        """Marks a message as being processed; returns how often that happened."""
        now = now or time.time()
        with self.engine.begin() as conn:
            conn.execute(
                update(inbox)
                .where(inbox.c.wamid == wamid)
                .values(status="processing", attempts=inbox.c.attempts + 1, updated_at=from_epoch(now))
            )
            return int(conn.execute(select(inbox.c.attempts).where(inbox.c.wamid == wamid)).scalar() or 0)

    def begin_reply(
        self, wamid: str, phone_number_id: str, recipient: str, payloads: Sequence[Dict[str, Any]], kinds: Sequence[str]
    ) -> None:
        """Stores the complete reply to a message and marks it ``replying`` in one transaction."""
        with self.engine.begin() as conn:
            self._store_reply(conn, wamid, phone_number_id, recipient, payloads, kinds)

    def begin_reply_rows(
        self, wamid: str, phone_number_id: str, recipient: str, payloads: Sequence[Dict[str, Any]], kinds: Sequence[str]
    ) -> ReplyRows:
        """:meth:`begin_reply` and :meth:`reply_rows` in one transaction: stores the reply,
        marks the message ``replying`` and returns the rows still to send with their address."""
        with self.engine.begin() as conn:
            self._store_reply(conn, wamid, phone_number_id, recipient, payloads, kinds)
            return self._reply_rows(conn, wamid, recipient)

    def reply_rows(self, wamid: str, recipient: Optional[str] = None) -> ReplyRows:
        """The rows of a stored reply still to send (a resumed ``replying`` message) and,
        with ``recipient``, its address, in one transaction."""
        with self.engine.connect() as conn:
            return self._reply_rows(conn, wamid, recipient)

    def _reply_rows(self, conn: Connection, wamid: str, recipient: Optional[str]) -> ReplyRows:
        rows = [_outbox_item(r) for r in conn.execute(
            select(outbox)
            .where(outbox.c.inbound_wamid == wamid, outbox.c.status.in_(("pending",) + IN_DOUBT))
            .order_by(outbox.c.seq)
        )]
        address = self._address(conn, recipient) if rows and recipient else None
        return ReplyRows(rows, address)

    @staticmethod
    def _store_reply(
        conn: Connection, wamid: str, phone_number_id: str, recipient: str,
        payloads: Sequence[Dict[str, Any]], kinds: Sequence[str],
    ) -> None:
        now = _db_now()
        recipient_hash = conversation_hash(recipient)
        values = [
            dict(
                inbound_wamid=wamid,
                seq=seq,
                ref=None,
                phone_number_id=phone_number_id,
                recipient=recipient,
                recipient_hash=recipient_hash,
                kind=kind,
                payload_json=json.dumps(payload, ensure_ascii=False),
                status="pending",
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            for seq, (payload, kind) in enumerate(zip(payloads, kinds))
        ]
        if values:
            if conn.dialect.name in ("sqlite", "postgresql"):
                # one statement for all parts; a part stored by an earlier attempt stays as it is
                conn.execute(_dialect_insert(conn)(outbox).values(values).on_conflict_do_nothing())
            else:
                for value in values:
                    _insert_ignore(conn, outbox, value)
        conn.execute(update(inbox).where(inbox.c.wamid == wamid).values(status="replying", updated_at=now))

    def finish_inbound(self, wamid: str, status: str = "done", error: Optional[str] = None) -> None:
        """Finishes a message and erases its content (the wamid stays for de-duplication)."""
        with self.engine.begin() as conn:
            self._finish(conn, wamid, status, error)

    @staticmethod
    def _finish(conn: Connection, wamid: str, status: str, error: Optional[str]) -> None:
        conn.execute(
            update(inbox)
            .where(inbox.c.wamid == wamid)
            .values(status=status, error=error, text=None, metadata_json=None, wa_id=None, updated_at=_db_now())
        )

    # ------------------------------------------------- worker (combined steps)
    def claim_next(
        self, wa_id: str, owner: str, ttl: float, start: bool = True, deferred_since: float = 0.0,
        now: Optional[float] = None,
    ) -> Claim:
        """One transaction for what a sender's worker needs before a turn: take (or
        renew) the sender's lease, read its oldest open message and mark it
        ``processing`` (``start``; not a ``replying`` one, which only sends the rest of
        its stored reply). No open message left: the lease is released in the same
        transaction. Another live instance holds the lease: ``leased``, nothing changed."""
        now = now or time.time()
        with self.engine.begin() as conn:
            if not self._take_lease(conn, conversation_hash(wa_id), owner, ttl, now):
                return Claim("leased")
            return self._next_under_lease(conn, wa_id, owner, ttl, start, deferred_since, now, holds_lease=True)

    def finish_and_next(
        self, wamid: str, status: str, error: Optional[str], wa_id: str, owner: str, ttl: float,
        start: bool = True, deferred_since: float = 0.0, now: Optional[float] = None, hand_over: bool = False,
    ) -> Claim:
        """:meth:`finish_inbound` and :meth:`claim_next` in one transaction: finishes
        ``wamid``, then either claims the sender's next open message (the lease is
        renewed) or, when none is left, releases the lease.

        ``hand_over`` (PostgreSQL): when that next message was received by another
        instance that is alive (its inbox listener is connected), the lease is
        released instead and that instance is woken (``NOTIFY``) to answer it:
        ``handed``. A citizen who answers the moment a reply arrives sends the next
        message while this instance still holds the lease; without this the busiest
        instance would keep every such citizen and the others would idle (measured:
        1.3 cores against 0.1 under the load test's closed loop).

        Why no message can be stranded between a release and a new message (without
        polling): the lease row is deleted (so locked) *before* the open messages are
        read. A new message's worker elsewhere either tried the lease before that lock
        (then the message was committed before it, and the read below sees it), or its
        attempt waits for this transaction and then finds the lease free (released) or
        renewed (this worker takes the message next). On PostgreSQL each statement
        reads the data committed before it started (READ COMMITTED); on SQLite the
        transaction holds the database's write lock from its first statement."""
        now = now or time.time()
        sender_hash = conversation_hash(wa_id)
        with self.engine.begin() as conn:
            self._finish(conn, wamid, status, error)
            held = conn.execute(
                delete(leases).where(leases.c.sender_hash == sender_hash, leases.c.owner == owner)
            ).rowcount == 1
            if not held and not self._take_lease(conn, sender_hash, owner, ttl, now):
                return Claim("leased")  # lost it (expired, taken over): the new holder goes on
            return self._next_under_lease(conn, wa_id, owner, ttl, start, deferred_since, now, holds_lease=not held,
                                          hand_over=hand_over)

    def _next_under_lease(
        self, conn: Connection, wa_id: str, owner: str, ttl: float, start: bool, deferred_since: float,
        now: float, holds_lease: bool, hand_over: bool = False,
    ) -> Claim:
        """The sender's next open message while the lease row is locked by this
        transaction. ``holds_lease``: the row is ours (taken or renewed); else it was
        deleted by this transaction and is put back only when there is work."""
        sender_hash = conversation_hash(wa_id)
        deferred = exists().where(
            outbox.c.status == "deferred",
            outbox.c.phone_number_id == inbox.c.phone_number_id,
            outbox.c.recipient == inbox.c.wa_id,
            outbox.c.created_at >= from_epoch(deferred_since),
        )
        row = conn.execute(
            select(inbox, deferred.label("has_deferred"))
            .where(inbox.c.wa_id == wa_id, inbox.c.status.in_(OPEN_INBOX))
            .order_by(inbox.c.sort_at, inbox.c.received_at, inbox.c.position)
            .limit(1)
        ).first()
        if row is None:
            if holds_lease:
                conn.execute(delete(leases).where(leases.c.sender_hash == sender_hash, leases.c.owner == owner))
            return Claim("none")
        receiver = row._mapping["received_by"]
        if (hand_over and start and receiver and receiver != owner and row._mapping["status"] == "pending"
                and not row._mapping["attempts"] and self._listening(conn, receiver)):
            if holds_lease:
                conn.execute(delete(leases).where(leases.c.sender_hash == sender_hash, leases.c.owner == owner))
            self._notify(conn, listener_name(receiver))
            return Claim("handed")
        if not holds_lease:
            conn.execute(leases.insert().values(sender_hash=sender_hash, owner=owner, expires_at=from_epoch(now + ttl),
                                                acquired_at=from_epoch(now)))
        item = _inbox_item(row)
        has_deferred = bool(row._mapping["has_deferred"])
        if not start or item.status == "replying":
            return Claim("claimed", item, None, has_deferred)
        conn.execute(
            update(inbox)
            .where(inbox.c.wamid == item.wamid)
            .values(status="processing", attempts=inbox.c.attempts + 1, updated_at=from_epoch(now))
        )
        # the lease (and the row lock on it) keeps anybody else from changing this row meanwhile
        return Claim("claimed", item, item.attempts + 1, has_deferred)

    @staticmethod
    def _take_lease(conn: Connection, sender_hash: str, owner: str, ttl: float, now: float) -> bool:
        """Takes or renews a sender's lease in one statement (and locks its row): True
        unless another owner holds a lease that has not expired."""
        at, expires = from_epoch(now), from_epoch(now + ttl)
        values = dict(sender_hash=sender_hash, owner=owner, expires_at=expires, acquired_at=at)
        if conn.dialect.name not in ("sqlite", "postgresql"):
            if _insert_ignore(conn, leases, values):
                return True
            return conn.execute(
                update(leases)
                .where(leases.c.sender_hash == sender_hash)
                .where(or_(leases.c.owner == owner, leases.c.expires_at < at))
                .values(owner=owner, expires_at=expires, acquired_at=at)
            ).rowcount == 1
        statement = _dialect_insert(conn)(leases).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[leases.c.sender_hash],
            set_=dict(owner=owner, expires_at=expires, acquired_at=at),
            where=or_(leases.c.owner == owner, leases.c.expires_at < at),
        )
        return conn.execute(statement).rowcount == 1

    def inbound_status(self, wamid: str) -> Optional[str]:
        with self.engine.connect() as conn:
            return conn.execute(select(inbox.c.status).where(inbox.c.wamid == wamid)).scalar()

    def open_count(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(inbox).where(inbox.c.status.in_(OPEN_INBOX))).scalar()
                or 0
            )

    # --------------------------------------------------------------- outbound
    def add_outgoing(
        self,
        phone_number_id: str,
        recipient: str,
        payloads: Sequence[Dict[str, Any]],
        kinds: Sequence[str],
        ref: Optional[str] = None,
    ) -> List[int]:
        now = _db_now()
        ids = []
        with self.engine.begin() as conn:
            for payload, kind in zip(payloads, kinds):
                result = conn.execute(
                    outbox.insert().values(
                        inbound_wamid=None,
                        seq=0,
                        ref=ref,
                        phone_number_id=phone_number_id,
                        recipient=recipient,
                        recipient_hash=conversation_hash(recipient),
                        kind=kind,
                        payload_json=json.dumps(payload, ensure_ascii=False),
                        status="pending",
                        attempts=0,
                        created_at=now,
                        updated_at=now,
                    )
                )
                ids.append(int(result.inserted_primary_key[0]))
        return ids

    def unsent_reply_rows(self, inbound_wamid: str) -> List[OutboxItem]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox)
                .where(outbox.c.inbound_wamid == inbound_wamid, outbox.c.status.in_(("pending",) + IN_DOUBT))
                .order_by(outbox.c.seq)
            )
            return [_outbox_item(r) for r in rows]

    def get_outgoing(self, outbox_id: int) -> Optional[OutboxItem]:
        with self.engine.connect() as conn:
            row = conn.execute(select(outbox).where(outbox.c.id == outbox_id)).first()
            return _outbox_item(row) if row is not None else None

    def outgoing_by_ref(self, ref: str) -> List[OutboxItem]:
        """Outgoing records of one reference, e.g. ``kcc:1234`` (see docs/whatsapp.md)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbox).where(outbox.c.ref == ref).order_by(outbox.c.id))
            return [_outbox_item(r) for r in rows]

    def outgoing_for_recipient(self, recipient: str, since_ts: float = 0.0) -> List[OutboxItem]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox)
                .where(outbox.c.recipient == recipient, outbox.c.created_at >= from_epoch(since_ts))
                .order_by(outbox.c.id)
            )
            return [_outbox_item(r) for r in rows]

    def failed_since(self, since_ts: float) -> List[OutboxItem]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox).where(outbox.c.status == "failed", outbox.c.updated_at >= from_epoch(since_ts))
                .order_by(outbox.c.id)
            )
            return [_outbox_item(r) for r in rows]

    def mark_sending(self, outbox_id: int, from_status: Sequence[str] = ("pending", "deferred")) -> bool:
        """Claims a row for one POST to Meta: True when it was in ``from_status``.
        Conditional, so two instances can never both post the same row."""
        with self.engine.begin() as conn:
            return conn.execute(
                update(outbox)
                .where(outbox.c.id == outbox_id, outbox.c.status.in_(tuple(from_status)))
                .values(status="sending", attempts=outbox.c.attempts + 1, updated_at=_db_now())
            ).rowcount == 1

    def mark_sent(self, outbox_id: int, wamid: Optional[str]) -> None:
        """Meta accepted the row. A ``failed`` delivery report that overtook the
        HTTP answer keeps the row failed."""
        failed = outbox.c.status == "failed"
        with self.engine.begin() as conn:
            # one statement: a failed row keeps its state and only gets a missing wamid
            conn.execute(
                update(outbox)
                .where(outbox.c.id == outbox_id)
                .values(
                    status=case((failed, outbox.c.status), else_=literal("sent")),
                    wamid=case((failed, func.coalesce(outbox.c.wamid, wamid)), else_=literal(wamid)),
                    payload_json=case((failed, outbox.c.payload_json), else_=None),
                    error=case((failed, outbox.c.error), else_=None),
                    error_code=case((failed, outbox.c.error_code), else_=None),
                    updated_at=case((failed, outbox.c.updated_at), else_=literal(_db_now(), DateTime)),
                )
            )

    def mark_failed(self, outbox_id: int, error_code: Optional[int], error: str) -> None:
        self._update_outgoing(outbox_id, status="failed", error_code=error_code, error=error[:64], payload_json=None)

    def mark_unknown(self, outbox_id: int, error: str, keep_time: bool = False) -> bool:
        """The POST may have reached Meta but its result is not known (timeout after
        sending, 5xx, crash in flight). The payload stays for one resend; a status
        webhook resolves the row. ``keep_time``: keep ``updated_at`` (the moment of
        the send), so the bounded wait counts from the send."""
        values: Dict[str, Any] = {"status": "unknown", "error": error[:64]}
        if not keep_time:
            values["updated_at"] = _db_now()
        with self.engine.begin() as conn:
            return conn.execute(
                update(outbox).where(outbox.c.id == outbox_id, outbox.c.status == "sending").values(**values)
            ).rowcount == 1

    def fail_unconfirmed(self, outbox_id: int, error: str) -> bool:
        """An in-doubt row that was already resent once and is still not confirmed."""
        with self.engine.begin() as conn:
            return conn.execute(
                update(outbox)
                .where(outbox.c.id == outbox_id, outbox.c.status.in_(IN_DOUBT))
                .values(status="failed", error=error[:64], payload_json=None, updated_at=_db_now())
            ).rowcount == 1

    def mark_deferred(self, outbox_id: int, error_code: Optional[int], error: str) -> None:
        self._update_outgoing(outbox_id, status="deferred", error_code=error_code, error=error[:64])

    def _update_outgoing(self, outbox_id: int, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == outbox_id).values(updated_at=_db_now(), **values))

    def outgoing_status(self, outbox_id: int) -> Optional[str]:
        with self.engine.connect() as conn:
            return conn.execute(select(outbox.c.status).where(outbox.c.id == outbox_id)).scalar()

    def fail_interrupted_direct_sends(self, older_than: float = 120.0, now: Optional[float] = None) -> int:
        """Direct sends (no inbound message) still ``pending`` long after they were
        stored were cut off by a crash before their POST: nothing reached Meta. Their
        caller saw an error or a timeout and may retry, so they are marked failed
        rather than sent late (never twice). Rows in flight (``sending``) are not
        touched here: :meth:`in_doubt_direct_sends` resolves them."""
        now = now or time.time()
        with self.engine.begin() as conn:
            return conn.execute(
                update(outbox)
                .where(outbox.c.inbound_wamid.is_(None), outbox.c.status == "pending")
                .where(outbox.c.updated_at < from_epoch(now - older_than))
                .values(status="failed", error="interrupted_by_restart", payload_json=None, updated_at=from_epoch(now))
            ).rowcount

    def in_doubt_direct_sends(self, sending_before: float) -> List[OutboxItem]:
        """Direct sends whose result is unknown, and those left ``sending`` by a dead
        instance (in flight since before ``sending_before``: longer than any POST)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox)
                .where(outbox.c.inbound_wamid.is_(None))
                .where(or_(outbox.c.status == "unknown",
                           and_(outbox.c.status == "sending", outbox.c.updated_at < from_epoch(sending_before))))
                .order_by(outbox.c.id)
                .limit(200)
            )
            return [_outbox_item(r) for r in rows]

    def deferred_for(self, phone_number_id: str, recipient: str, since_ts: float) -> List[OutboxItem]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox)
                .where(
                    outbox.c.phone_number_id == phone_number_id,
                    outbox.c.recipient == recipient,
                    outbox.c.status == "deferred",
                    outbox.c.created_at >= from_epoch(since_ts),
                )
                .order_by(outbox.c.id)
            )
            return [_outbox_item(r) for r in rows]

    # ------------------------------------------------------------ 24h window
    def in_window(self, phone_number_id: str, wa_id: str, now: Optional[float] = None) -> bool:
        now = now or time.time()
        with self.engine.connect() as conn:
            last = to_epoch(conn.execute(
                select(contacts.c.last_inbound_at).where(
                    contacts.c.phone_number_id == phone_number_id, contacts.c.wa_id == wa_id
                )
            ).scalar())
        return last is not None and now - last < WINDOW_SECONDS - WINDOW_MARGIN_SECONDS

    def latest_phone_number_id(self, wa_id: str) -> Optional[str]:
        with self.engine.connect() as conn:
            return conn.execute(
                select(contacts.c.phone_number_id)
                .where(contacts.c.wa_id == wa_id)
                .order_by(contacts.c.last_inbound_at.desc())
                .limit(1)
            ).scalar()

    def template_pending(self, phone_number_id: str, wa_id: str, now: Optional[float] = None) -> bool:
        """A template went out after the citizen's last message and less than 24h ago."""
        now = now or time.time()
        with self.engine.connect() as conn:
            row = conn.execute(
                select(contacts.c.last_inbound_at, contacts.c.template_sent_at).where(
                    contacts.c.phone_number_id == phone_number_id, contacts.c.wa_id == wa_id
                )
            ).first()
        if row is None or row[1] is None:
            return False
        last_inbound, template_ts = to_epoch(row[0]), to_epoch(row[1])
        return (last_inbound is None or template_ts > last_inbound) and now - template_ts < WINDOW_SECONDS

    def mark_template_sent(self, phone_number_id: str, wa_id: str, now: Optional[float] = None) -> None:
        at = from_epoch(now or time.time())
        with self.engine.begin() as conn:
            _insert_ignore(
                conn, contacts, dict(phone_number_id=phone_number_id, wa_id=wa_id, last_inbound_at=None, updated_at=at)
            )
            conn.execute(
                update(contacts)
                .where(contacts.c.phone_number_id == phone_number_id, contacts.c.wa_id == wa_id)
                .values(template_sent_at=at, updated_at=at)
            )

    # --------------------------------------------------------------- statuses
    def record_statuses(self, statuses: Iterable[Any], now: Optional[float] = None) -> int:
        """Stores delivery reports; a ``failed`` report marks the outbox row failed."""
        at = from_epoch(now or time.time())
        count = 0
        with self.engine.begin() as conn:
            for status in statuses:
                count += 1
                conn.execute(
                    status_events.insert().values(
                        wamid=status.wamid,
                        status=status.status[:16],
                        error_code=status.error_code,
                        recipient_hash=conversation_hash(_recipient_of(status)) if _recipient_of(status) else None,
                        event_at=from_epoch(float(status.timestamp)) if status.timestamp else None,
                        recorded_at=at,
                    )
                )
                row = conn.execute(
                    select(outbox.c.id, outbox.c.delivery_status, outbox.c.status).where(outbox.c.wamid == status.wamid)
                ).first()
                if row is None:
                    row = self._row_of_callback(conn, status)
                if row is None:
                    continue
                self._record_pricing(conn, row[0], status)
                if status.status == "failed":
                    conn.execute(
                        update(outbox)
                        .where(outbox.c.id == row[0])
                        .values(
                            status="failed",
                            delivery_status="failed",
                            error_code=status.error_code,
                            error="delivery_failed",
                            payload_json=None,
                            updated_at=at,
                        )
                    )
                    continue
                if row[2] in IN_DOUBT:
                    # Meta reports on it, so it reached Meta: resolved, never resent.
                    conn.execute(
                        update(outbox)
                        .where(outbox.c.id == row[0], outbox.c.status.in_(IN_DOUBT))
                        .values(status="sent", payload_json=None, error=None, error_code=None, updated_at=at)
                    )
                if DELIVERY_RANK.get(status.status, 0) > DELIVERY_RANK.get(row[1] or "", 0):
                    conn.execute(
                        update(outbox).where(outbox.c.id == row[0]).values(delivery_status=status.status, updated_at=at)
                    )
        return count

    @staticmethod
    def _record_pricing(conn: Connection, outbox_id: int, status: Any) -> None:
        """Pricing category and billable flag of a sent message: the first status with
        ``pricing`` wins (Meta repeats it on sent/delivered/read), so a message is
        counted once."""
        category = getattr(status, "pricing_category", None)
        billable = getattr(status, "billable", None)
        if category is None and billable is None:
            return
        conn.execute(
            update(outbox)
            .where(outbox.c.id == outbox_id, outbox.c.pricing_category.is_(None), outbox.c.billable.is_(None))
            .values(pricing_category=category, billable=billable)
        )

    @staticmethod
    def _row_of_callback(conn: Connection, status: Any) -> Any:
        """The outbox row named by the status's ``biz_opaque_callback_data`` (our row
        id), when its recipient matches; its wamid is filled in (the HTTP answer that
        carried it may have been lost in a crash)."""
        outbox_id = outbox_id_of(getattr(status, "callback_data", None))
        if outbox_id is None:
            return None
        row = conn.execute(
            select(outbox.c.id, outbox.c.delivery_status, outbox.c.status, outbox.c.recipient_hash, outbox.c.wamid)
            .where(outbox.c.id == outbox_id)
        ).first()
        if row is None:
            return None
        named = [i for i in (status.recipient_id, getattr(status, "recipient_user_id", None)) if i]
        if named:
            keys = set(named) | {
                r[0] for r in conn.execute(
                    select(identities.c.conversation_key).where(identities.c.identifier.in_(named)))
            }
            if row[3] not in {conversation_hash(k) for k in keys}:
                return None
        if row[4] is None:
            conn.execute(update(outbox).where(outbox.c.id == outbox_id).values(wamid=status.wamid))
        return row

    def status_events_for(self, wamid: str) -> List[Dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(status_events).where(status_events.c.wamid == wamid).order_by(status_events.c.id))
            return [dict(r._mapping) for r in rows]

    # ----------------------------------------------------------------- leases
    def acquire_lease(self, sender_hash: str, owner: str, ttl: float, now: Optional[float] = None) -> bool:
        """Takes (or extends) the processing lease of a sender; False when another
        live instance holds it. Atomic on PostgreSQL and SQLite."""
        now = now or time.time()
        at, expires = from_epoch(now), from_epoch(now + ttl)
        with self.engine.begin() as conn:
            if _insert_ignore(
                conn, leases, dict(sender_hash=sender_hash, owner=owner, expires_at=expires, acquired_at=at)
            ):
                return True
            result = conn.execute(
                update(leases)
                .where(leases.c.sender_hash == sender_hash)
                .where(or_(leases.c.owner == owner, leases.c.expires_at < at))
                .values(owner=owner, expires_at=expires, acquired_at=at)
            )
            return result.rowcount == 1

    def release_lease(self, sender_hash: str, owner: str, wa_id: Optional[str] = None) -> bool:
        """Releases a sender's lease. With ``wa_id``: True when that sender still has
        open messages, and then (PostgreSQL) other instances are woken in the same
        transaction (``NOTIFY appcare_inbox``) to take them over at once."""
        with self.engine.begin() as conn:
            conn.execute(delete(leases).where(leases.c.sender_hash == sender_hash, leases.c.owner == owner))
            if wa_id is None:
                return False
            remaining = conn.execute(
                select(inbox.c.wamid).where(inbox.c.wa_id == wa_id, inbox.c.status.in_(OPEN_INBOX)).limit(1)
            ).first() is not None
            if remaining:
                self._notify(conn, sender_hash)
            return remaining

    def wake_others(self) -> bool:
        """Wakes the other instances (PostgreSQL) when open messages wait that nobody
        holds, e.g. messages this instance stored while it stops. True when it did."""
        if self.engine.dialect.name != "postgresql":
            return False
        now = _db_now()
        joined = inbox.outerjoin(leases, leases.c.sender_hash == inbox.c.sender_hash)
        with self.engine.begin() as conn:
            waiting = conn.execute(
                select(inbox.c.wamid).select_from(joined)
                .where(inbox.c.status.in_(OPEN_INBOX), inbox.c.wa_id.isnot(None))
                .where(or_(leases.c.sender_hash.is_(None), leases.c.expires_at < now))
                .limit(1)
            ).first() is not None
            if waiting:
                self._notify(conn, "")
            return waiting

    @staticmethod
    def _listening(conn: Connection, instance: str) -> bool:
        """PostgreSQL: ``instance``'s inbox listener is connected (it is alive and will
        hear a NOTIFY). Its connection carries :func:`listener_name` as
        ``application_name``; a killed process's connections are gone from
        ``pg_stat_activity`` at once."""
        if conn.dialect.name != "postgresql":
            return False
        return bool(conn.execute(
            text("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = :name)"),
            {"name": listener_name(instance)},
        ).scalar())

    def is_listening(self, instance: str) -> bool:
        """:meth:`_listening` on its own (monitoring, tests)."""
        with self.engine.connect() as conn:
            return self._listening(conn, instance)

    @staticmethod
    def _notify(conn: Connection, payload: str) -> None:
        """``NOTIFY appcare_inbox`` (sent when the transaction commits). The payload is
        at most a keyed sender hash or an instance's :func:`listener_name`: never a
        number, text or wamid."""
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": NOTIFY_CHANNEL, "payload": payload})

    def renew_leases(self, owner: str, ttl: float, now: Optional[float] = None) -> int:
        now = now or time.time()
        with self.engine.begin() as conn:
            return conn.execute(
                update(leases).where(leases.c.owner == owner).values(expires_at=from_epoch(now + ttl))
            ).rowcount

    def drop_leases_of(self, owner: str) -> int:
        """At start-up: leases left by an earlier run of this same instance are stale.
        Other instances are woken (PostgreSQL) to help with those senders."""
        with self.engine.begin() as conn:
            dropped = conn.execute(delete(leases).where(leases.c.owner == owner)).rowcount
            if dropped:
                self._notify(conn, "")
            return dropped

    def unleased_senders(self, owner: str, idle_for: float = 0.0, now: Optional[float] = None) -> List[str]:
        """Senders with open messages that nobody (else) is working on: no lease,
        an expired one or our own. ``idle_for``: only messages untouched that long
        (a crashed instance's messages, a delivery that was never picked up)."""
        now = now or time.time()
        joined = inbox.outerjoin(leases, leases.c.sender_hash == inbox.c.sender_hash)
        query = (
            select(inbox.c.wa_id)
            .select_from(joined)
            .where(inbox.c.status.in_(OPEN_INBOX), inbox.c.wa_id.isnot(None))
            .where(or_(leases.c.sender_hash.is_(None), leases.c.expires_at < from_epoch(now), leases.c.owner == owner))
            .distinct()
        )
        if idle_for > 0:
            query = query.where(inbox.c.updated_at < from_epoch(now - idle_for))
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(query)]

    # ------------------------------------------------------------------ purge
    def purge(self, retention_days: float, now: Optional[float] = None) -> Dict[str, int]:
        """Deletes finished rows older than the retention (never less than 7 days)."""
        now = now or time.time()
        horizon = from_epoch(now - max(7.0, float(retention_days)) * 86400)
        counts = {}
        with self.engine.begin() as conn:
            counts["inbox"] = conn.execute(
                delete(inbox).where(inbox.c.status.in_(FINISHED_INBOX), inbox.c.received_at < horizon)
            ).rowcount
            counts["outbox"] = conn.execute(
                delete(outbox).where(outbox.c.status.in_(("sent", "failed", "deferred")), outbox.c.updated_at < horizon)
            ).rowcount
            counts["status_events"] = conn.execute(delete(status_events).where(status_events.c.recorded_at < horizon)).rowcount
            counts["leases"] = conn.execute(delete(leases).where(leases.c.expires_at < from_epoch(now - 3600))).rowcount
            counts["identities"] = conn.execute(delete(identities).where(identities.c.updated_at < horizon)).rowcount
            counts["contacts"] = conn.execute(
                delete(contacts).where(
                    or_(contacts.c.last_inbound_at.is_(None), contacts.c.last_inbound_at < horizon),
                    or_(contacts.c.template_sent_at.is_(None), contacts.c.template_sent_at < horizon),
                )
            ).rowcount
        return counts


class AsyncInbox:
    """Runs :class:`InboxStore` methods off the event loop: the workers' bookkeeping
    on a pool of ``threads`` (``WHATSAPP_DB_THREADS``, 4), so one sender's slow
    transaction does not hold up the others; the webhook path (persisting what Meta
    sends, resolving the citizen's conversation key) on its own thread so
    acknowledgements never queue behind the workers."""

    INGRESS = frozenset({"record_inbound", "record_statuses", "conversation_key", "link_identifiers"})
    INGRESS_THREADS = 1

    def __init__(self, store: InboxStore, threads: Optional[int] = None) -> None:
        self.store = store
        self.threads = max(1, int(threads or appcare_db.db_threads()))
        self._ingress = ThreadPoolExecutor(max_workers=self.INGRESS_THREADS, thread_name_prefix="whatsapp-ingress")
        self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="whatsapp-inbox")
        pool = getattr(store.engine, "pool", None)
        size = pool.size() if pool is not None and hasattr(pool, "size") else None
        wanted = self.threads + self.INGRESS_THREADS + 1
        if store.engine.dialect.name == "postgresql" and isinstance(size, int) and size < wanted:
            logger.warning(
                "WhatsApp: the database pool keeps %d connections for %d database threads (+%d webhook); "
                "threads will wait for connections (lower %s)",
                size, self.threads, self.INGRESS_THREADS, appcare_db.DB_THREADS_VAR,
            )

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name)
        executor = self._ingress if name in self.INGRESS else self._executor

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(executor, partial(method, *args, **kwargs))

        return call

    def shutdown(self) -> None:
        self._ingress.shutdown(wait=False)
        self._executor.shutdown(wait=False)


def listener_name(instance: str) -> str:
    """The ``application_name`` of an instance's listener connection, and the payload
    of a NOTIFY meant for that instance alone (PostgreSQL allows 63 characters; an
    instance id may be longer)."""
    return LISTENER_PREFIX + hashlib.sha256(instance.encode("utf-8")).hexdigest()[:20]


class InboxListener:
    """``LISTEN appcare_inbox`` on a dedicated PostgreSQL connection in a thread:
    calls ``on_wake`` (from that thread) when another instance let go of a sender
    with open messages, and once after every (re)connect, since notifications sent
    while it was disconnected are lost. Reconnects with backoff when the database
    goes away. Logs carry no personal data (the payload is a keyed sender hash)."""

    def __init__(self, engine: Engine, on_wake: Callable[[str], None], poll_seconds: float = 5.0,
                 backoff_max: float = 30.0, check_every: float = 30.0, instance: str = "") -> None:
        self.engine = engine
        self.on_wake = on_wake
        # application_name of the connection: how other instances see that this one is alive
        self.name = listener_name(instance) if instance else ""
        self.poll_seconds = poll_seconds
        self.backoff_max = backoff_max
        self.check_every = check_every  # an idle connection is checked this often (a dead one shows no error)
        self.connected = threading.Event()
        self.wakeups = 0
        self._stop = threading.Event()
        self._waker_r, self._waker_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="whatsapp-listen", daemon=True)

    def start(self) -> "InboxListener":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        try:
            self._waker_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        for sock in (self._waker_r, self._waker_w):
            try:
                sock.close()
            except OSError:
                pass

    def _connect(self) -> Any:
        """A psycopg2 connection made like the engine's (URL, connect_args with the
        connect and statement timeouts), detached from its pool, in autocommit."""
        fairy = self.engine.raw_connection()
        fairy.detach()
        conn = fairy.dbapi_connection
        conn.rollback()  # the pool's checkout ping may have opened a transaction
        conn.autocommit = True
        with conn.cursor() as cur:
            if self.name:
                cur.execute("SELECT set_config('application_name', %s, false)", (self.name,))
            cur.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return conn

    def _run(self) -> None:
        backoff, failures = 0.5, 0
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                self.connected.set()
                if failures:
                    logger.warning("WhatsApp: inbox listener connected again after %d failed attempt(s)", failures)
                backoff, failures = 0.5, 0
                self._wake("")  # catch up on anything announced while not listening
                self._listen(conn)
            except Exception as exc:  # noqa: BLE001 - database gone: retry with backoff
                self.connected.clear()
                failures += 1
                if failures == 1:
                    logger.warning("WhatsApp: inbox listener lost the database (%s); reconnecting with backoff",
                                   type(exc).__name__)
                else:
                    logger.debug("WhatsApp: inbox listener still without database (%s), attempt %d",
                                 type(exc).__name__, failures)
                self._stop.wait(backoff)
                backoff = min(self.backoff_max, backoff * 2)
            finally:
                self.connected.clear()
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass

    def _listen(self, conn: Any) -> None:
        last_activity = time.monotonic()
        while not self._stop.is_set():
            readable, _, _ = select_module.select([conn, self._waker_r], [], [], self.poll_seconds)
            if self._stop.is_set():
                return
            if conn in readable:
                conn.poll()  # raises when the server closed the connection
                last_activity = time.monotonic()
                payloads = [n.payload for n in conn.notifies]
                conn.notifies.clear()
                if payloads:
                    self._wake(payloads[-1] if len(payloads) == 1 else "")
            elif time.monotonic() - last_activity >= self.check_every:
                with conn.cursor() as cur:  # a connection that died silently raises here
                    cur.execute("SELECT 1")
                last_activity = time.monotonic()

    def _wake(self, payload: str) -> None:
        self.wakeups += 1
        try:
            self.on_wake(payload)
        except Exception as exc:  # noqa: BLE001 - e.g. the event loop closed at shutdown
            logger.debug("WhatsApp: inbox listener could not wake the channel (%s)", type(exc).__name__)
