"""Persistent queue of handoffs to the KCC (klantcontactcentrum).

``action_handoff_to_kcc`` opens a ticket here; while a ticket is open the bot
stays silent for that conversation and every new citizen message is appended to
the ticket. The staff desk, the webcare webhook bridge and the report use the
same store. SQLAlchemy: SQLite by default, PostgreSQL through ``APPCARE_DB_URL``.
Texts are stored masked (BSN, phone numbers, e-mail, ...).

Besides its reason a ticket says whether it is ``urgent`` (the citizen may be in
danger or acute need: first in the desk's queue), the citizen's ``language`` (ISO
639-1; None or "nl" is Dutch) and whether the citizen asked to be phoned back
(``callback_requested``, with ``callback_number`` when they wrote a number: stored
unmasked for staff, never logged; None means the conversation's own number).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    delete,
    false,
    select,
    update,
)
from sqlalchemy.orm import declarative_base, relationship, sessionmaker

from appcare import db, pii
from appcare.db import utcnow  # noqa: F401  (also used by the desk)

Base = declarative_base()
logger = logging.getLogger(__name__)

OPEN_STATES = ("open", "claimed")
CALLBACK_NUMBER_MAX = 64
# Retention (jobs/retention.py): an open ticket without any activity for the retention
# period is closed with this outcome and a system note in its history, then anonymised
# like every closed ticket.
EXPIRED_OUTCOME = "bewaartermijn verstreken"
EXPIRED_NOTE = "Automatisch gesloten: bewaartermijn verstreken (geen activiteit binnen de bewaartermijn)."


class TicketRow(Base):
    __tablename__ = "handoff_tickets"

    id = Column(Integer, primary_key=True)
    conversation_id = Column(String(128), index=True, nullable=False)
    channel = Column(String(32), nullable=False, default="rest")
    municipality = Column(String(64), nullable=False)
    reason = Column(String(64), nullable=False)
    summary = Column(Text, nullable=False, default="")
    transcript = Column(Text, nullable=False, default="[]")  # JSON list, masked
    status = Column(String(16), nullable=False, default="open", index=True)
    created_at = Column(DateTime, nullable=False, default=utcnow, index=True)
    in_kcc_hours = Column(Boolean, nullable=False, default=True)
    expected_reply_at = Column(DateTime, nullable=True)
    claimed_by = Column(String(128), nullable=True)
    claimed_at = Column(DateTime, nullable=True)
    first_staff_reply_at = Column(DateTime, nullable=True)
    closed_at = Column(DateTime, nullable=True)
    outcome = Column(String(64), nullable=True)
    flagged = Column(Boolean, nullable=False, default=False)
    version = Column(Integer, nullable=False, default=0)
    # Added later: nullable or with a server default, so that an installation from
    # before migrations gets them (appcare.migrations.legacy; existing rows: not
    # urgent, no callback wish). A new column now needs a migration (docs/production.md).
    urgent = Column(Boolean, nullable=False, default=False, server_default=false())
    language = Column(String(16), nullable=True)  # ISO 639-1; None / "nl": Dutch
    callback_requested = Column(Boolean, nullable=False, default=False, server_default=false())
    callback_number = Column(String(CALLBACK_NUMBER_MAX), nullable=True)  # unmasked, staff only

    messages = relationship("TicketMessageRow", order_by="TicketMessageRow.id", back_populates="ticket")


class TicketMessageRow(Base):
    __tablename__ = "handoff_messages"

    id = Column(Integer, primary_key=True)
    ticket_id = Column(Integer, ForeignKey("handoff_tickets.id"), index=True, nullable=False)
    author = Column(String(16), nullable=False)  # citizen | staff | note | system
    staff_user = Column(String(128), nullable=True)
    text = Column(Text, nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    delivery = Column(String(16), nullable=True)  # pending | sent | failed (staff replies)
    error = Column(String(255), nullable=True)

    ticket = relationship("TicketRow", back_populates="messages")


class RelayedMessageRow(Base):
    """Inbound messages already added to a ticket, by a hash of their channel
    message id: a turn that is repeated after a crash never relays the same
    citizen message twice. Kept ``RELAYED_KEEP_DAYS``."""

    __tablename__ = "handoff_relayed"

    key = Column(String(64), primary_key=True)
    created_at = Column(DateTime, nullable=False, default=utcnow, index=True)


RELAYED_KEEP_DAYS = 14


def relay_key(message_id: str) -> str:
    """Pseudonymous key of a channel message id (a WhatsApp wamid encodes the number)."""
    import hashlib

    return hashlib.sha256(("relay:" + message_id).encode("utf-8")).hexdigest()


@dataclass
class Ticket:
    id: int
    conversation_id: str
    channel: str
    municipality: str
    reason: str
    summary: str
    transcript: List[Dict[str, Any]]
    status: str
    created_at: dt.datetime
    in_kcc_hours: bool
    expected_reply_at: Optional[dt.datetime]
    claimed_by: Optional[str] = None
    closed_at: Optional[dt.datetime] = None
    outcome: Optional[str] = None
    messages: List[Dict[str, Any]] = field(default_factory=list)
    # Added for the KCC desk (defaults keep older callers working).
    claimed_at: Optional[dt.datetime] = None
    first_staff_reply_at: Optional[dt.datetime] = None
    flagged: bool = False
    version: int = 0
    urgent: bool = False
    language: Optional[str] = None
    callback_requested: bool = False
    callback_number: Optional[str] = field(default=None, repr=False)  # never in logs


def _language(code: Optional[str]) -> Optional[str]:
    """ISO 639-1 code as stored: lower case, '_' as '-'; None when empty."""
    value = str(code or "").strip().lower().replace("_", "-")
    return value[:16] or None


def _callback_number(number: Optional[str]) -> Optional[str]:
    value = " ".join(str(number or "").split())
    return value[:CALLBACK_NUMBER_MAX] or None


def _to_ticket(row: TicketRow, with_messages: bool = False) -> Ticket:
    ticket = Ticket(
        id=row.id,
        conversation_id=row.conversation_id,
        channel=row.channel,
        municipality=row.municipality,
        reason=row.reason,
        summary=row.summary,
        transcript=json.loads(row.transcript or "[]"),
        status=row.status,
        created_at=row.created_at,
        in_kcc_hours=row.in_kcc_hours,
        expected_reply_at=row.expected_reply_at,
        claimed_by=row.claimed_by,
        closed_at=row.closed_at,
        outcome=row.outcome,
        claimed_at=row.claimed_at,
        first_staff_reply_at=row.first_staff_reply_at,
        flagged=bool(row.flagged),
        version=row.version or 0,
        urgent=bool(row.urgent),
        language=row.language,
        callback_requested=bool(row.callback_requested),
        callback_number=row.callback_number,
    )
    if with_messages:
        ticket.messages = [
            {
                "id": m.id,
                "author": m.author,
                "staff_user": m.staff_user,
                "text": m.text,
                "created_at": m.created_at,
                "delivery": m.delivery,
                "error": m.error,
            }
            for m in row.messages
        ]
    return ticket


class HandoffStore:
    """Small interface over the ticket tables; safe to share between threads."""

    def __init__(self, url: Optional[str] = None):
        self.engine = db.get_engine(url)
        db.ensure_schema(self.engine)
        self._session = sessionmaker(bind=self.engine, expire_on_commit=False, future=True)

    # ------------------------------------------------------------------ bot side
    def open_ticket(
        self,
        conversation_id: str,
        reason: str,
        summary: str,
        transcript: List[Dict[str, Any]],
        municipality: str,
        channel: str = "rest",
        in_kcc_hours: bool = True,
        expected_reply_at: Optional[dt.datetime] = None,
        urgent: bool = False,
        language: Optional[str] = None,
        callback_requested: bool = False,
        callback_number: Optional[str] = None,
    ) -> Ticket:
        """Opens a ticket, or returns the open one of this conversation.

        An open ticket is upgraded by a later handoff of the same conversation: it
        becomes urgent when this one is, gets the callback wish (and the number, when
        one is given now) and the language when it had none. Reason, summary and
        transcript stay those of the first handoff. A callback number implies the wish.
        """
        # Staff replies from an earlier handoff stay as written (as in add_staff_reply):
        # masking would turn the colleague's own signature into "[naam]".
        masked = [
            dict(item, text=str(item.get("text", "")) if item.get("sender") == "staff" else pii.mask(str(item.get("text", ""))))
            for item in transcript
        ]
        language = _language(language)
        callback_number = _callback_number(callback_number)
        callback_requested = bool(callback_requested or callback_number)
        changes: Dict[str, Any] = {}
        with self._session.begin() as session:
            existing = session.execute(
                select(TicketRow).where(
                    TicketRow.conversation_id == conversation_id, TicketRow.status.in_(OPEN_STATES)
                )
            ).scalar_one_or_none()
            if existing:
                if urgent and not existing.urgent:
                    changes["urgent"] = True
                if callback_requested and not existing.callback_requested:
                    changes["callback_requested"] = True
                if callback_number and callback_number != existing.callback_number:
                    changes["callback_number"] = callback_number
                if language and not existing.language:
                    changes["language"] = language
                if changes:
                    session.execute(
                        update(TicketRow)
                        .where(TicketRow.id == existing.id)
                        .values(version=TicketRow.version + 1, **changes)
                        .execution_options(synchronize_session=False)
                    )
                    session.refresh(existing)
                ticket = _to_ticket(existing)
            else:
                row = TicketRow(
                    conversation_id=conversation_id,
                    channel=channel or "rest",
                    municipality=municipality,
                    reason=reason,
                    summary=pii.mask(summary)[:1000],
                    transcript=json.dumps(masked, ensure_ascii=False, default=str),
                    in_kcc_hours=in_kcc_hours,
                    expected_reply_at=expected_reply_at,
                    urgent=bool(urgent),
                    language=language,
                    callback_requested=callback_requested,
                    callback_number=callback_number,
                )
                session.add(row)
                session.flush()
                ticket = _to_ticket(row)
        if changes:  # field names only: the callback number never goes to a log
            logger.info("handoff ticket %s updated by a new handoff: %s", ticket.id, ", ".join(sorted(changes)))
        return ticket

    def open_ticket_for(self, conversation_id: str) -> Optional[Ticket]:
        with self._session() as session:
            row = session.execute(
                select(TicketRow).where(
                    TicketRow.conversation_id == conversation_id, TicketRow.status.in_(OPEN_STATES)
                )
            ).scalar_one_or_none()
            return _to_ticket(row) if row else None

    def append_message(
        self,
        ticket_id: int,
        author: str,
        text: str,
        staff_user: Optional[str] = None,
        delivery: Optional[str] = None,
    ) -> int:
        with self._session.begin() as session:
            row = TicketMessageRow(
                ticket_id=ticket_id,
                author=author,
                staff_user=staff_user,
                # a note keeps its writer's own name (e.g. a signature) but not the citizen's data
                text=pii.mask(text or "", keep_names=[staff_user] if staff_user else [])[:8000],
                delivery=delivery,
            )
            session.add(row)
            session.execute(
                update(TicketRow).where(TicketRow.id == ticket_id).values(version=TicketRow.version + 1)
            )
            session.flush()
            return row.id

    def append_citizen_message(self, conversation_id: str, text: str, message_id: Optional[str] = None) -> Optional[int]:
        """Adds a citizen message to the open ticket; returns the ticket id or None.
        ``message_id`` (the message's id, or another key unique to the message) makes it
        idempotent: the same message is added once, however often the turn runs, also
        when two runs of it append at the same moment (the key is the primary key of
        RelayedMessageRow: the second insert fails and its transaction adds nothing)."""
        ticket = self.open_ticket_for(conversation_id)
        if not ticket:
            return None
        if not message_id:
            self.append_message(ticket.id, "citizen", text)
            return ticket.id
        from sqlalchemy.exc import IntegrityError

        try:
            self._append_once(ticket.id, relay_key(message_id), text)
        except IntegrityError:  # the same message relayed at the same moment elsewhere
            pass
        return ticket.id

    def _append_once(self, ticket_id: int, key: str, text: str) -> None:
        with self._session.begin() as session:
            if session.get(RelayedMessageRow, key) is not None:
                return
            session.add(RelayedMessageRow(key=key))
            session.add(TicketMessageRow(ticket_id=ticket_id, author="citizen", text=pii.mask(text or "")[:8000]))
            session.execute(
                update(TicketRow).where(TicketRow.id == ticket_id).values(version=TicketRow.version + 1)
            )
            horizon = utcnow() - dt.timedelta(days=RELAYED_KEEP_DAYS)
            session.execute(delete(RelayedMessageRow).where(RelayedMessageRow.created_at < horizon))

    def close(self, ticket_id: int, outcome: str, by: Optional[str] = None) -> bool:
        """Closes a ticket; returns False when it was not open."""
        with self._session.begin() as session:
            result = session.execute(
                update(TicketRow)
                .where(TicketRow.id == ticket_id, TicketRow.status.in_(OPEN_STATES))
                .values(status="closed", closed_at=utcnow(), outcome=outcome, version=TicketRow.version + 1)
            )
            return result.rowcount == 1

    def close_for_conversation(self, conversation_id: str, outcome: str) -> Optional[int]:
        ticket = self.open_ticket_for(conversation_id)
        if ticket and self.close(ticket.id, outcome):
            return ticket.id
        return None

    # ------------------------------------------------------------------ reading
    def get(self, ticket_id: int, with_messages: bool = True) -> Optional[Ticket]:
        with self._session() as session:
            row = session.get(TicketRow, ticket_id)
            return _to_ticket(row, with_messages) if row else None

    def list(self, status: Optional[List[str]] = None, limit: int = 500, urgent_first: bool = False) -> List[Ticket]:
        """Tickets oldest first; ``urgent_first``: urgent ones before the others (so
        ``limit`` never cuts off an urgent ticket while older normal ones are listed)."""
        with self._session() as session:
            order = (TicketRow.urgent.desc(), TicketRow.created_at) if urgent_first else (TicketRow.created_at,)
            query = select(TicketRow).order_by(*order)
            if status:
                query = query.where(TicketRow.status.in_(status))
            return [_to_ticket(r) for r in session.execute(query.limit(limit)).scalars()]

    # ------------------------------------------------------------------ KCC desk
    def claim(self, ticket_id: int, user: str) -> bool:
        """Claims an open ticket for ``user``. Atomic: of two concurrent claims one wins."""
        with self._session.begin() as session:
            result = session.execute(
                update(TicketRow)
                .where(TicketRow.id == ticket_id, TicketRow.status == "open")
                .values(
                    status="claimed",
                    claimed_by=user,
                    claimed_at=utcnow(),
                    version=TicketRow.version + 1,
                )
                .execution_options(synchronize_session=False)
            )
            return result.rowcount == 1

    def assign(self, ticket_id: int, user: str) -> Optional[str]:
        """Gives an open or claimed ticket to ``user`` (a coordinator assigns or
        reassigns). Returns the previous claimer ("" when it was unclaimed); None when
        the ticket is closed or does not exist."""
        with self._session.begin() as session:
            row = session.execute(
                select(TicketRow).where(TicketRow.id == ticket_id, TicketRow.status.in_(list(OPEN_STATES)))
            ).scalar_one_or_none()
            if row is None:
                return None
            previous = row.claimed_by or ""
            if row.status == "claimed" and previous == user:
                return previous
            row.status = "claimed"
            row.claimed_by = user
            row.claimed_at = utcnow()
            row.version = (row.version or 0) + 1
            return previous

    def release(self, ticket_id: int, user: Optional[str] = None) -> bool:
        """Puts a claimed ticket back in the queue (only the claimer's, unless ``user`` is None)."""
        conditions = [TicketRow.id == ticket_id, TicketRow.status == "claimed"]
        if user is not None:
            conditions.append(TicketRow.claimed_by == user)
        with self._session.begin() as session:
            result = session.execute(
                update(TicketRow)
                .where(*conditions)
                .values(status="open", claimed_by=None, claimed_at=None, version=TicketRow.version + 1)
                .execution_options(synchronize_session=False)
            )
            return result.rowcount == 1

    def add_staff_reply(self, ticket_id: int, staff_user: str, text: str) -> int:
        """Records a staff reply as ``pending`` before it is handed to Rasa.

        Stored verbatim (not masked): it is written by staff, was sent to the
        citizen as is, and a failed delivery must be retried with the same text.
        """
        with self._session.begin() as session:
            row = TicketMessageRow(
                ticket_id=ticket_id,
                author="staff",
                staff_user=staff_user,
                text=(text or "")[:8000],
                delivery="pending",
            )
            session.add(row)
            session.execute(
                update(TicketRow).where(TicketRow.id == ticket_id).values(version=TicketRow.version + 1)
            )
            session.flush()
            return row.id

    def set_delivery(self, message_id: int, delivery: str, error: Optional[str] = None) -> bool:
        """Marks a staff reply ``sent`` or ``failed``; the first ``sent`` sets first_staff_reply_at."""
        with self._session.begin() as session:
            row = session.get(TicketMessageRow, message_id)
            if row is None:
                return False
            row.delivery = delivery
            row.error = error[:255] if error else None
            if delivery == "sent":
                session.execute(
                    update(TicketRow)
                    .where(TicketRow.id == row.ticket_id, TicketRow.first_staff_reply_at.is_(None))
                    .values(first_staff_reply_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
            session.execute(
                update(TicketRow)
                .where(TicketRow.id == row.ticket_id)
                .values(version=TicketRow.version + 1)
                .execution_options(synchronize_session=False)
            )
            return True

    def get_message(self, message_id: int) -> Optional[Dict[str, Any]]:
        with self._session() as session:
            m = session.get(TicketMessageRow, message_id)
            if m is None:
                return None
            return {
                "id": m.id,
                "ticket_id": m.ticket_id,
                "author": m.author,
                "staff_user": m.staff_user,
                "text": m.text,
                "created_at": m.created_at,
                "delivery": m.delivery,
                "error": m.error,
            }

    def flag_overdue(self, pickup_minutes: int, now: Optional[dt.datetime] = None) -> List[int]:
        """Flags unclaimed tickets that waited too long; returns the ids flagged now.

        Inside KCC hours: not claimed within ``pickup_minutes`` of its creation.
        Outside KCC hours: not claimed by the ``expected_reply_at`` the citizen was told.
        """
        now = now or utcnow()
        limit = now - dt.timedelta(minutes=pickup_minutes)
        with self._session.begin() as session:
            ids = [
                r.id
                for r in session.execute(
                    select(TicketRow).where(TicketRow.status == "open", TicketRow.flagged.is_(False))
                ).scalars()
                if (r.in_kcc_hours and r.created_at <= limit)
                or (not r.in_kcc_hours and r.expected_reply_at is not None and r.expected_reply_at <= now)
            ]
            if ids:
                session.execute(
                    update(TicketRow)
                    .where(TicketRow.id.in_(ids), TicketRow.flagged.is_(False))
                    .values(flagged=True, version=TicketRow.version + 1)
                    .execution_options(synchronize_session=False)
                )
            return ids

    def created_since(self, since: dt.datetime) -> List[Ticket]:
        with self._session() as session:
            rows = session.execute(
                select(TicketRow).where(TicketRow.created_at >= since).order_by(TicketRow.id)
            ).scalars()
            return [_to_ticket(r) for r in rows]

    def closed_since(self, since: dt.datetime) -> List[Ticket]:
        with self._session() as session:
            rows = session.execute(
                select(TicketRow)
                .where(TicketRow.status == "closed", TicketRow.closed_at >= since)
                .order_by(TicketRow.id)
            ).scalars()
            return [_to_ticket(r) for r in rows]

    def max_ids(self) -> Dict[str, int]:
        """Highest ticket and message id (cursors for the webcare webhook)."""
        from sqlalchemy import func

        with self._session() as session:
            return {
                "ticket": session.execute(select(func.max(TicketRow.id))).scalar() or 0,
                "message": session.execute(select(func.max(TicketMessageRow.id))).scalar() or 0,
            }

    def tickets_after(self, ticket_id: int, limit: int = 100) -> List[Ticket]:
        with self._session() as session:
            rows = session.execute(
                select(TicketRow).where(TicketRow.id > ticket_id).order_by(TicketRow.id).limit(limit)
            ).scalars()
            return [_to_ticket(r) for r in rows]

    def citizen_messages_after(self, message_id: int, limit: int = 200) -> List[Dict[str, Any]]:
        """Citizen messages with an id above ``message_id`` (with their ticket's conversation)."""
        with self._session() as session:
            rows = session.execute(
                select(TicketMessageRow, TicketRow.conversation_id, TicketRow.municipality, TicketRow.channel)
                .join(TicketRow, TicketRow.id == TicketMessageRow.ticket_id)
                .where(TicketMessageRow.id > message_id, TicketMessageRow.author == "citizen")
                .order_by(TicketMessageRow.id)
                .limit(limit)
            ).all()
            return [
                {
                    "id": m.id,
                    "ticket_id": m.ticket_id,
                    "conversation_id": conversation_id,
                    "municipality": municipality,
                    "channel": channel,
                    "author": m.author,
                    "text": m.text,
                    "created_at": m.created_at,
                }
                for m, conversation_id, municipality, channel in rows
            ]


def stale_open_tickets(conn: Any, before: dt.datetime) -> List[int]:
    """Ids of open or claimed tickets without any activity since ``before`` (naive
    UTC): created, claimed and last message all earlier."""
    from sqlalchemy import and_, exists, or_

    tickets = TicketRow.__table__
    messages = TicketMessageRow.__table__
    recent = exists().where(and_(messages.c.ticket_id == tickets.c.id, messages.c.created_at >= before))
    return [
        r[0] for r in conn.execute(
            select(tickets.c.id).where(
                tickets.c.status.in_(OPEN_STATES),
                tickets.c.created_at < before,
                or_(tickets.c.claimed_at.is_(None), tickets.c.claimed_at < before),
                ~recent,
            ).order_by(tickets.c.id)
        )
    ]


def expire_stale_tickets(conn: Any, before: dt.datetime, now: Optional[dt.datetime] = None) -> List[int]:
    """Closes open tickets without activity since ``before`` (see
    :func:`stale_open_tickets`) with outcome :data:`EXPIRED_OUTCOME` and a system
    message :data:`EXPIRED_NOTE` that the desk shows in the ticket's history (its time
    is when). ``closed_at`` stays empty: nobody handled the ticket, so the report does
    not count it as closed nor in the handling time. Runs on ``conn`` (a connection in
    a transaction); returns the ids closed. The bot notices at the citizen's next
    message (the relay finds no open ticket) and takes over."""
    now = now or utcnow()
    closed = []
    for ticket_id in stale_open_tickets(conn, before):
        result = conn.execute(
            update(TicketRow.__table__)
            .where(TicketRow.__table__.c.id == ticket_id, TicketRow.__table__.c.status.in_(OPEN_STATES))
            .values(status="closed", outcome=EXPIRED_OUTCOME, version=TicketRow.__table__.c.version + 1)
        )
        if result.rowcount == 1:
            conn.execute(TicketMessageRow.__table__.insert().values(
                ticket_id=ticket_id, author="system", text=EXPIRED_NOTE, created_at=now))
            closed.append(ticket_id)
    return closed


_stores: Dict[str, HandoffStore] = {}
_stores_lock = threading.Lock()


def default_store() -> HandoffStore:
    """The store for the current ``APPCARE_DB_URL``, created on first use (never at import).
    Actions run in several threads: the lock keeps two first calls from making two stores."""
    url = db.db_url()
    with _stores_lock:
        if url not in _stores:
            _stores[url] = HandoffStore(url)
        return _stores[url]
