"""Desk-side tables: staff accounts, sessions, audit log, standard answers, the
webcare webhook outbox and the send attempts of retried staff replies. They live in
the same database as the ticket queue (``APPCARE_DB_URL``), each table prefixed
``desk_``.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Dict, Iterable, List, Optional

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    case,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import declarative_base, sessionmaker

from appcare import db
from appcare.db import utcnow  # noqa: F401  (also used by the desk's other modules)
from appcare.handoff_store import TicketMessageRow, TicketRow

Base = declarative_base()

ROLES = ("staff", "coordinator", "editor")


class UserRow(Base):
    __tablename__ = "desk_users"

    id = Column(Integer, primary_key=True)
    username = Column(String(128), unique=True, nullable=False)
    password_hash = Column(String(128), nullable=False)
    role = Column(String(16), nullable=False, default="staff")
    active = Column(Boolean, nullable=False, default=True)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    last_login_at = Column(DateTime, nullable=True)


class SessionRow(Base):
    __tablename__ = "desk_sessions"

    # sha256 of the cookie value: a copy of the table gives no usable sessions.
    id = Column(String(64), primary_key=True)
    user_id = Column(Integer, ForeignKey("desk_users.id"), index=True, nullable=False)
    csrf_token = Column(String(64), nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    last_seen_at = Column(DateTime, nullable=False, default=utcnow)
    expires_at = Column(DateTime, nullable=False, index=True)


class AuditRow(Base):
    __tablename__ = "desk_audit_log"

    id = Column(Integer, primary_key=True)
    at = Column(DateTime, nullable=False, default=utcnow, index=True)
    actor = Column(String(128), nullable=False)  # username, "system" or "integration"
    action = Column(String(64), nullable=False, index=True)
    ticket_id = Column(Integer, nullable=True, index=True)
    detail = Column(Text, nullable=True)  # short JSON, never message text


class AnswerRow(Base):
    __tablename__ = "desk_standard_answers"

    id = Column(Integer, primary_key=True)
    title = Column(String(120), nullable=False)
    text = Column(Text, nullable=False)
    municipality = Column(String(64), nullable=True)  # None: all municipalities
    active = Column(Boolean, nullable=False, default=True)
    created_by = Column(String(128), nullable=False)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    updated_at = Column(DateTime, nullable=False, default=utcnow)


class OutboxRow(Base):
    __tablename__ = "desk_webhook_outbox"

    id = Column(Integer, primary_key=True)
    event_key = Column(String(64), unique=True, nullable=False)  # "ticket:12", "message:34"
    event = Column(String(32), nullable=False)
    payload = Column(Text, nullable=False)
    status = Column(String(16), nullable=False, default="pending", index=True)  # pending|sent|failed
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(DateTime, nullable=False, default=utcnow)
    last_error = Column(String(255), nullable=True)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    sent_at = Column(DateTime, nullable=True)


class IntegrationRequestRow(Base):
    """Inbound integration requests by their ``request_id``: a retried or replayed
    request gets the first answer again instead of sending a second reply."""

    __tablename__ = "desk_integration_requests"

    request_id = Column(String(128), primary_key=True)
    action = Column(String(16), nullable=False)
    status = Column(Integer, nullable=True)  # HTTP status of the first answer; None while it runs
    response = Column(Text, nullable=True)
    created_at = Column(DateTime, nullable=False, default=utcnow, index=True)


class LoginThrottleRow(Base):
    """Failed logins per client address, per account name and per (account, address)
    pair, for the back-off of desk.auth and the rate-limited audit of rejected logins.
    ``key`` is a sha256 (no addresses or typed names in the table)."""

    __tablename__ = "desk_login_throttle"

    key = Column(String(64), primary_key=True)
    failures = Column(Integer, nullable=False, default=0)
    last_failure_at = Column(DateTime, nullable=True, index=True)
    blocked_until = Column(DateTime, nullable=True)
    audited_at = Column(DateTime, nullable=True)  # pair rows: last audit row written
    unaudited = Column(Integer, nullable=False, default=0)  # pair rows: failures since then


class KeyValueRow(Base):
    __tablename__ = "desk_kv"

    key = Column(String(64), primary_key=True)
    value = Column(String(255), nullable=False)


class ReplyAttemptRow(Base):
    """The latest send attempt of a retried staff reply: when it started and the
    WhatsApp outbox rows of the attempts before it, so that an attempt is judged by its
    own outbox rows only (the ref ``kcc:<message id>`` is the same for every attempt).
    No row: the reply was sent once, starting when it was written."""

    __tablename__ = "desk_reply_attempts"

    message_id = Column(Integer, primary_key=True)  # handoff_messages.id
    attempt = Column(Integer, nullable=False, default=2)
    started_at = Column(DateTime, nullable=False, default=utcnow)
    earlier_outbox = Column(Text, nullable=False, default="[]")  # JSON list of whatsapp_outbox ids


def _user_dict(row: UserRow) -> Dict[str, Any]:
    return {
        "id": row.id,
        "username": row.username,
        "role": row.role,
        "active": row.active,
        "created_at": row.created_at,
        "last_login_at": row.last_login_at,
    }


def _answer_dict(row: AnswerRow) -> Dict[str, Any]:
    return {
        "id": row.id,
        "title": row.title,
        "text": row.text,
        "municipality": row.municipality,
        "active": row.active,
        "created_by": row.created_by,
        "updated_at": row.updated_at,
    }


class DeskStore:
    """Accounts, sessions, audit log, standard answers, webhook outbox."""

    def __init__(self, url: Optional[str] = None):
        self.engine = db.get_engine(url)
        db.ensure_schema(self.engine)
        self._session = sessionmaker(bind=self.engine, expire_on_commit=False, future=True)

    # ------------------------------------------------------------------ users
    def create_user(self, username: str, password_hash: str, role: str) -> Dict[str, Any]:
        if role not in ROLES:
            raise ValueError(f"onbekende rol {role!r} (kies uit {', '.join(ROLES)})")
        try:
            with self._session.begin() as session:
                row = UserRow(username=username, password_hash=password_hash, role=role)
                session.add(row)
                session.flush()
                return _user_dict(row)
        except IntegrityError as exc:
            raise ValueError(f"gebruiker {username!r} bestaat al") from exc

    def set_password(self, username: str, password_hash: str) -> bool:
        """New password; the user's open sessions end."""
        with self._session.begin() as session:
            row = session.execute(select(UserRow).where(UserRow.username == username)).scalar_one_or_none()
            if row is None:
                return False
            row.password_hash = password_hash
            session.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
            return True

    def set_active(self, username: str, active: bool) -> bool:
        """Switches an account on or off; switching off ends its open sessions."""
        with self._session.begin() as session:
            row = session.execute(select(UserRow).where(UserRow.username == username)).scalar_one_or_none()
            if row is None:
                return False
            row.active = active
            if not active:
                session.execute(delete(SessionRow).where(SessionRow.user_id == row.id))
            return True

    def user_with_hash(self, username: str) -> Optional[Dict[str, Any]]:
        with self._session() as session:
            row = session.execute(select(UserRow).where(UserRow.username == username)).scalar_one_or_none()
            if row is None:
                return None
            return dict(_user_dict(row), password_hash=row.password_hash)

    def get_user(self, user_id: int) -> Optional[Dict[str, Any]]:
        with self._session() as session:
            row = session.get(UserRow, user_id)
            return _user_dict(row) if row else None

    def list_users(self) -> List[Dict[str, Any]]:
        with self._session() as session:
            return [_user_dict(r) for r in session.execute(select(UserRow).order_by(UserRow.username)).scalars()]

    def count_users(self) -> int:
        with self._session() as session:
            return session.execute(select(func.count(UserRow.id))).scalar() or 0

    def touch_login(self, user_id: int) -> None:
        with self._session.begin() as session:
            session.execute(update(UserRow).where(UserRow.id == user_id).values(last_login_at=utcnow()))

    # ------------------------------------------------------------------ sessions
    def create_session(self, session_id: str, user_id: int, csrf_token: str, expires_at: dt.datetime) -> None:
        with self._session.begin() as session:
            session.add(
                SessionRow(id=session_id, user_id=user_id, csrf_token=csrf_token, expires_at=expires_at)
            )

    def get_session(self, session_id: str) -> Optional[Dict[str, Any]]:
        """The session with its user, or None (also for a disabled user)."""
        with self._session() as session:
            found = session.execute(
                select(SessionRow, UserRow)
                .join(UserRow, UserRow.id == SessionRow.user_id)
                .where(SessionRow.id == session_id, UserRow.active.is_(True))
            ).first()
            if not found:
                return None
            srow, urow = found
            return {
                "id": srow.id,
                "csrf_token": srow.csrf_token,
                "created_at": srow.created_at,
                "last_seen_at": srow.last_seen_at,
                "expires_at": srow.expires_at,
                "user": _user_dict(urow),
            }

    def touch_session(self, session_id: str, when: Optional[dt.datetime] = None) -> None:
        with self._session.begin() as session:
            session.execute(
                update(SessionRow).where(SessionRow.id == session_id).values(last_seen_at=when or utcnow())
            )

    def delete_session(self, session_id: str) -> None:
        with self._session.begin() as session:
            session.execute(delete(SessionRow).where(SessionRow.id == session_id))

    def purge_sessions(self, idle_before: dt.datetime, now: Optional[dt.datetime] = None) -> int:
        now = now or utcnow()
        with self._session.begin() as session:
            result = session.execute(
                delete(SessionRow).where((SessionRow.expires_at <= now) | (SessionRow.last_seen_at <= idle_before))
            )
            return result.rowcount or 0

    # ------------------------------------------------------------------ audit
    def audit(
        self,
        actor: str,
        action: str,
        ticket_id: Optional[int] = None,
        detail: Optional[Dict[str, Any]] = None,
    ) -> None:
        with self._session.begin() as session:
            session.add(
                AuditRow(
                    actor=actor,
                    action=action,
                    ticket_id=ticket_id,
                    detail=json.dumps(detail, ensure_ascii=False, default=str) if detail else None,
                )
            )

    def audit_log(
        self,
        ticket_id: Optional[int] = None,
        action: Optional[str] = None,
        actor: Optional[str] = None,
        since: Optional[dt.datetime] = None,
        limit: int = 200,
    ) -> List[Dict[str, Any]]:
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if ticket_id is not None:
            query = query.where(AuditRow.ticket_id == ticket_id)
        if action is not None:
            query = query.where(AuditRow.action == action)
        if actor is not None:
            query = query.where(AuditRow.actor == actor)
        if since is not None:
            query = query.where(AuditRow.at >= since)
        with self._session() as session:
            return [
                {
                    "id": r.id,
                    "at": r.at,
                    "actor": r.actor,
                    "action": r.action,
                    "ticket_id": r.ticket_id,
                    "detail": json.loads(r.detail) if r.detail else None,
                }
                for r in session.execute(query).scalars()
            ]

    # ------------------------------------------------------------------ login throttling
    def login_blocked_until(self, keys: Iterable[str]) -> Optional[dt.datetime]:
        """The latest ``blocked_until`` of ``keys`` (None: none is blocked)."""
        with self._session() as session:
            return session.execute(
                select(func.max(LoginThrottleRow.blocked_until)).where(LoginThrottleRow.key.in_(list(keys)))
            ).scalar()

    def count_login_failure(
        self, key: str, now: dt.datetime, reset_after: dt.timedelta, backoff
    ) -> Optional[int]:
        """Counts a failure for ``key`` unless it is blocked (then None: the attempt must
        be refused, and is not counted). The count starts again after ``reset_after``
        without failures; ``backoff(failures)`` (a timedelta or None) blocks the key from
        ``now``. Check and count are one write, so parallel attempts cannot all pass."""
        row_key = LoginThrottleRow.key == key
        for attempt in range(3):
            try:
                with self._session.begin() as session:
                    counted = session.execute(  # a write first: the row (SQLite: the database) is locked
                        update(LoginThrottleRow)
                        .where(row_key, LoginThrottleRow.blocked_until.is_(None) | (LoginThrottleRow.blocked_until <= now))
                        .values(
                            failures=case(
                                (LoginThrottleRow.last_failure_at.is_(None)
                                 | (LoginThrottleRow.last_failure_at < now - reset_after), 1),
                                else_=LoginThrottleRow.failures + 1,
                            ),
                            last_failure_at=now,
                        )
                        .execution_options(synchronize_session=False)
                    ).rowcount
                    if counted:
                        failures = session.execute(select(LoginThrottleRow.failures).where(row_key)).scalar() or 1
                    elif session.execute(select(LoginThrottleRow.key).where(row_key)).first() is not None:
                        return None  # blocked
                    else:
                        session.add(LoginThrottleRow(key=key, failures=1, unaudited=0, last_failure_at=now))
                        session.flush()
                        failures = 1
                    delay = backoff(failures)
                    if delay is not None:
                        session.execute(
                            update(LoginThrottleRow).where(row_key).values(blocked_until=now + delay)
                            .execution_options(synchronize_session=False)
                        )
                    return failures
            except (IntegrityError, OperationalError):  # a concurrent first failure (or SQLite writer): again
                if attempt == 2:
                    raise
        return None

    def reset_login_failures(self, key: str) -> None:
        with self._session.begin() as session:
            session.execute(delete(LoginThrottleRow).where(LoginThrottleRow.key == key))

    def forgive_login_failure(self, key: str, free: int) -> None:
        """Takes one failure back (a correct login counted ahead of the check), and the
        block it caused when fewer than ``free`` failures remain."""
        with self._session.begin() as session:
            session.execute(
                update(LoginThrottleRow)
                .where(LoginThrottleRow.key == key, LoginThrottleRow.failures > 0)
                .values(
                    failures=LoginThrottleRow.failures - 1,
                    blocked_until=case(
                        (LoginThrottleRow.failures - 1 < free, None), else_=LoginThrottleRow.blocked_until
                    ),
                )
                .execution_options(synchronize_session=False)
            )

    def login_audit_due(self, key: str, now: dt.datetime, every: dt.timedelta) -> Optional[int]:
        """Rate limit of the audit rows of rejected logins: the number of rejections to
        write in one row now (this one and those held back since the last row), or None
        while the last row for ``key`` is younger than ``every`` (this one is counted)."""
        row_key = LoginThrottleRow.key == key
        for attempt in range(3):
            try:
                with self._session.begin() as session:
                    held = session.execute(
                        update(LoginThrottleRow)
                        .where(row_key, LoginThrottleRow.audited_at > now - every)
                        .values(unaudited=LoginThrottleRow.unaudited + 1)
                        .execution_options(synchronize_session=False)
                    ).rowcount
                    if held:
                        return None
                    row = session.execute(select(LoginThrottleRow).where(row_key).with_for_update()).scalar_one_or_none()
                    if row is None:
                        session.add(LoginThrottleRow(key=key, failures=0, unaudited=0, audited_at=now))
                        session.flush()
                        return 1
                    if row.audited_at is not None and row.audited_at > now - every:  # a concurrent row
                        row.unaudited = (row.unaudited or 0) + 1
                        return None
                    count = (row.unaudited or 0) + 1
                    row.audited_at = now
                    row.unaudited = 0
                    return count
            except (IntegrityError, OperationalError):
                if attempt == 2:
                    raise
        return None

    def purge_login_throttle(self, before: dt.datetime) -> int:
        """Drops rows with no failure, block or audit since ``before``."""
        with self._session.begin() as session:
            result = session.execute(
                delete(LoginThrottleRow).where(
                    (LoginThrottleRow.last_failure_at.is_(None) | (LoginThrottleRow.last_failure_at < before)),
                    (LoginThrottleRow.blocked_until.is_(None) | (LoginThrottleRow.blocked_until < before)),
                    (LoginThrottleRow.audited_at.is_(None) | (LoginThrottleRow.audited_at < before)),
                )
            )
            return result.rowcount or 0

    # ------------------------------------------------------------------ standard answers
    def list_answers(self, municipality: Optional[str] = None, include_inactive: bool = False) -> List[Dict[str, Any]]:
        query = select(AnswerRow).order_by(AnswerRow.title)
        if not include_inactive:
            query = query.where(AnswerRow.active.is_(True))
        if municipality:
            query = query.where((AnswerRow.municipality.is_(None)) | (AnswerRow.municipality == municipality))
        with self._session() as session:
            return [_answer_dict(r) for r in session.execute(query).scalars()]

    def get_answer(self, answer_id: int) -> Optional[Dict[str, Any]]:
        with self._session() as session:
            row = session.get(AnswerRow, answer_id)
            return _answer_dict(row) if row else None

    def save_answer(
        self,
        title: str,
        text: str,
        created_by: str,
        municipality: Optional[str] = None,
        answer_id: Optional[int] = None,
    ) -> Dict[str, Any]:
        with self._session.begin() as session:
            row = session.get(AnswerRow, answer_id) if answer_id else None
            if row is None:
                row = AnswerRow(created_by=created_by)
                session.add(row)
            row.title = title[:120]
            row.text = text
            row.municipality = municipality or None
            row.active = True
            row.updated_at = utcnow()
            session.flush()
            return _answer_dict(row)

    def delete_answer(self, answer_id: int) -> bool:
        with self._session.begin() as session:
            result = session.execute(
                update(AnswerRow).where(AnswerRow.id == answer_id, AnswerRow.active.is_(True)).values(
                    active=False, updated_at=utcnow()
                )
            )
            return result.rowcount == 1

    # ------------------------------------------------------------------ key/value (cursors)
    def get_value(self, key: str) -> Optional[str]:
        with self._session() as session:
            row = session.get(KeyValueRow, key)
            return row.value if row else None

    def value_or_add(self, key: str, value: str) -> str:
        """The stored value of ``key``; ``value`` is stored first when there is none
        (the first of two concurrent callers wins, both get its value)."""
        existing = self.get_value(key)
        if existing is not None:
            return existing
        try:
            with self._session.begin() as session:
                session.add(KeyValueRow(key=key, value=value))
        except IntegrityError:
            pass
        return self.get_value(key) or value

    def set_value(self, key: str, value: str) -> None:
        with self._session.begin() as session:
            row = session.get(KeyValueRow, key)
            if row is None:
                session.add(KeyValueRow(key=key, value=value))
            else:
                row.value = value

    # ------------------------------------------------------------------ staff reply delivery
    # Conditional updates of handoff_messages.delivery (appcare.handoff_store only has
    # the unconditional set_delivery): a retry and a refresh from the WhatsApp outbox
    # must never act on a state that changed under them, or a reply could go out twice.
    def start_retry(self, message_id: int, earlier_outbox: Iterable[int]) -> bool:
        """A ``failed`` staff reply becomes ``pending`` and its new attempt is recorded,
        in one transaction. False when it was not ``failed`` any more (a colleague or a
        second click started the retry already)."""
        with self._session.begin() as session:
            result = session.execute(
                update(TicketMessageRow)
                .where(
                    TicketMessageRow.id == message_id,
                    TicketMessageRow.author == "staff",
                    TicketMessageRow.delivery == "failed",
                )
                .values(delivery="pending", error=None)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                return False
            earlier = json.dumps(sorted(int(i) for i in earlier_outbox))
            row = session.get(ReplyAttemptRow, message_id)
            if row is None:
                session.add(ReplyAttemptRow(message_id=message_id, attempt=2, started_at=utcnow(), earlier_outbox=earlier))
            else:
                row.attempt = (row.attempt or 1) + 1
                row.started_at = utcnow()
                row.earlier_outbox = earlier
            self._bump_ticket(session, message_id)
            return True

    def reply_attempt(self, message_id: int) -> Optional[Dict[str, Any]]:
        with self._session() as session:
            row = session.get(ReplyAttemptRow, message_id)
            if row is None:
                return None
            return {
                "attempt": row.attempt,
                "started_at": row.started_at,
                "earlier_outbox": set(json.loads(row.earlier_outbox or "[]")),
            }

    def set_delivery_if(self, message_id: int, expected: str, delivery: str, error: Optional[str] = None) -> bool:
        """Like HandoffStore.set_delivery, but only while the delivery is still ``expected``."""
        with self._session.begin() as session:
            result = session.execute(
                update(TicketMessageRow)
                .where(TicketMessageRow.id == message_id, TicketMessageRow.delivery == expected)
                .values(delivery=delivery, error=error[:255] if error else None)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                return False
            self._bump_ticket(session, message_id, first_reply=delivery == "sent")
            return True

    @staticmethod
    def _bump_ticket(session, message_id: int, first_reply: bool = False) -> None:
        ticket_id = session.execute(
            select(TicketMessageRow.ticket_id).where(TicketMessageRow.id == message_id)
        ).scalar()
        if first_reply:
            session.execute(
                update(TicketRow)
                .where(TicketRow.id == ticket_id, TicketRow.first_staff_reply_at.is_(None))
                .values(first_staff_reply_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        session.execute(
            update(TicketRow)
            .where(TicketRow.id == ticket_id)
            .values(version=TicketRow.version + 1)
            .execution_options(synchronize_session=False)
        )

    # ------------------------------------------------------------------ inbound integration requests
    def claim_request(
        self, request_id: str, action: str, stale_before: Optional[dt.datetime] = None
    ) -> Optional[Dict[str, Any]]:
        """Claims ``request_id`` for this request: None when it is new (go ahead), else
        the earlier request (``status`` None while that one is still running).

        A claim that never completed and was made before ``stale_before`` (the process
        died mid-request) is taken over once: None, and a concurrent retry still sees
        it as running. A completed request stays a duplicate."""
        taken_over = False
        try:
            with self._session.begin() as session:
                row = session.get(IntegrationRequestRow, request_id)
                if row is None:
                    session.add(IntegrationRequestRow(request_id=request_id, action=action))
                    return None
                earlier = {"action": row.action, "status": row.status,
                           "response": json.loads(row.response) if row.response else None}
                if row.status is None and stale_before is not None and row.created_at < stale_before:
                    result = session.execute(
                        update(IntegrationRequestRow)
                        .where(IntegrationRequestRow.request_id == request_id,
                               IntegrationRequestRow.status.is_(None),
                               IntegrationRequestRow.created_at == row.created_at)
                        .values(created_at=utcnow(), action=action)
                        .execution_options(synchronize_session=False)
                    )
                    taken_over = result.rowcount == 1
                if not taken_over:
                    return earlier
        except IntegrityError:  # claimed by a concurrent request a moment ago
            return {"action": action, "status": None, "response": None}
        self.audit("integration", "integration_claim_expired", None, {"request_id": request_id})
        return None

    def finish_request(self, request_id: str, status: int, response: Dict[str, Any]) -> None:
        """Stores a successful answer; after a failure the claim is dropped so that the
        caller may try again with the same ``request_id``."""
        with self._session.begin() as session:
            row = session.get(IntegrationRequestRow, request_id)
            if row is None:
                return
            if 200 <= status < 300:
                row.status = status
                row.response = json.dumps(response, default=str)
            else:
                session.delete(row)

    def purge_requests(self, before: dt.datetime) -> int:
        with self._session.begin() as session:
            result = session.execute(delete(IntegrationRequestRow).where(IntegrationRequestRow.created_at < before))
            return result.rowcount or 0

    # ------------------------------------------------------------------ webhook outbox
    def enqueue_event(self, event_key: str, event: str, payload: Dict[str, Any]) -> bool:
        """Adds an outgoing webhook event once (False when the key was queued before)."""
        try:
            with self._session.begin() as session:
                if session.execute(select(OutboxRow.id).where(OutboxRow.event_key == event_key)).first():
                    return False
                session.add(
                    OutboxRow(
                        event_key=event_key,
                        event=event,
                        payload=json.dumps(payload, ensure_ascii=False, default=str),
                    )
                )
            return True
        except IntegrityError:
            return False

    def due_events(self, now: Optional[dt.datetime] = None, limit: int = 20) -> List[Dict[str, Any]]:
        """Pending events in order, up to the first one that waits for its retry time
        (delivery is strictly in order: a webcare tool never sees a message before its ticket)."""
        now = now or utcnow()
        with self._session() as session:
            rows = session.execute(
                select(OutboxRow).where(OutboxRow.status == "pending").order_by(OutboxRow.id).limit(limit)
            ).scalars()
            due = []
            for r in rows:
                if r.next_attempt_at > now:
                    break
                due.append(
                    {
                        "id": r.id,
                        "event_key": r.event_key,
                        "event": r.event,
                        "payload": r.payload,
                        "attempts": r.attempts,
                    }
                )
            return due

    def mark_event(
        self,
        event_id: int,
        status: str,
        attempts: int,
        error: Optional[str] = None,
        next_attempt_at: Optional[dt.datetime] = None,
    ) -> None:
        values: Dict[str, Any] = {"status": status, "attempts": attempts, "last_error": error[:255] if error else None}
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        if status == "sent":
            values["sent_at"] = utcnow()
        with self._session.begin() as session:
            session.execute(update(OutboxRow).where(OutboxRow.id == event_id).values(**values))

    def outbox(self, limit: int = 100) -> List[Dict[str, Any]]:
        with self._session() as session:
            return [
                {
                    "id": r.id,
                    "event_key": r.event_key,
                    "event": r.event,
                    "status": r.status,
                    "attempts": r.attempts,
                    "last_error": r.last_error,
                }
                for r in session.execute(select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit)).scalars()
            ]

    # ------------------------------------------------------------------ queue (issue 18)
    def queue_index(
        self,
        statuses: List[str],
        q: str = "",
        reason: str = "",
        municipality: str = "",
        channel: str = "",
        language: str = "",
        claimed_by: Optional[str] = None,
        unclaimed: bool = False,
        created_before: Optional[dt.datetime] = None,
        limit: int = 20000,
    ) -> List[Dict[str, Any]]:
        """The few columns the queue sorts and splits by, for every ticket matching the
        filters (no texts: cheap for thousands of tickets). The page's rows are read by
        id afterwards (:meth:`tickets_by_id`)."""
        query = select(
            TicketRow.id, TicketRow.status, TicketRow.created_at, TicketRow.closed_at,
            TicketRow.expected_reply_at, TicketRow.in_kcc_hours, TicketRow.urgent,
            TicketRow.reason, TicketRow.flagged,
        ).where(TicketRow.status.in_(statuses))
        text = (q or "").strip()
        if text:
            digits = text.lstrip("#").replace(" ", "").replace("-", "").lstrip("+")
            if digits.isdigit():
                cond = TicketRow.id == int(digits[:12])
                if len(digits) >= 6:  # part of a phone number (the conversation id)
                    cond = cond | TicketRow.conversation_id.like(f"%{digits}%")
                query = query.where(cond)
            else:
                pattern = "%" + text.lower().replace("\\", "").replace("%", "").replace("_", "") + "%"
                written_later = select(TicketMessageRow.ticket_id).where(
                    TicketMessageRow.author == "citizen", func.lower(TicketMessageRow.text).like(pattern)
                )
                query = query.where(
                    func.lower(TicketRow.summary).like(pattern) | func.lower(TicketRow.transcript).like(pattern)
                    | TicketRow.id.in_(written_later)
                )
        if reason:
            query = query.where(TicketRow.reason == reason)
        if municipality:
            query = query.where(TicketRow.municipality == municipality)
        if channel:
            query = query.where(TicketRow.channel == channel)
        if language:
            if language == "nl":
                query = query.where(TicketRow.language.is_(None) | (TicketRow.language == "") | TicketRow.language.like("nl%"))
            else:
                query = query.where(TicketRow.language.like(f"{language}%"))
        if unclaimed:
            query = query.where(TicketRow.claimed_by.is_(None))
        elif claimed_by:
            query = query.where(TicketRow.claimed_by == claimed_by)
        if created_before is not None:
            query = query.where(TicketRow.created_at <= created_before)
        with self._session() as session:
            return [dict(r._mapping) for r in session.execute(query.limit(limit))]

    def tickets_by_id(self, ids: List[int]) -> Dict[int, Any]:
        """Tickets (appcare.handoff_store.Ticket, without messages) by id."""
        from appcare.handoff_store import _to_ticket

        if not ids:
            return {}
        with self._session() as session:
            rows = session.execute(select(TicketRow).where(TicketRow.id.in_(list(ids)))).scalars()
            return {r.id: _to_ticket(r) for r in rows}

    def queue_choices(self) -> Dict[str, List[str]]:
        """Municipalities, channels and languages that occur, for the filter form."""
        with self._session() as session:
            def distinct(col):
                return sorted(v for v in session.execute(select(col).distinct()).scalars() if v)

            return {
                "municipalities": distinct(TicketRow.municipality),
                "channels": distinct(TicketRow.channel),
                "languages": distinct(TicketRow.language),
                "staff": distinct(TicketRow.claimed_by),
            }

    def earlier_tickets(self, conversation_id: str, ticket_id: int, limit: int = 20) -> List[Any]:
        """The citizen's other tickets (same conversation id), newest first."""
        from appcare.handoff_store import _to_ticket

        with self._session() as session:
            rows = session.execute(
                select(TicketRow)
                .where(TicketRow.conversation_id == conversation_id, TicketRow.id != ticket_id)
                .order_by(TicketRow.created_at.desc())
                .limit(limit)
            ).scalars()
            return [_to_ticket(r) for r in rows]
