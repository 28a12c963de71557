"""Retention (AVG): anonymise conversations older than N days, keep the counts.

    python -m jobs.retention --days 90 [--dry-run] [--endpoints endpoints.prod.yml]

Schedule it daily (deploy/appcare-retention.timer, or cron:
``15 3 * * * cd /opt/appcare && .venv/bin/python -m jobs.retention --days 90``).

What happens to data older than ``--days``:

* **Conversations in the tracker store** (the ``events`` table of Rasa's SQL
  tracker store configured in ``--endpoints``) are *anonymised, not deleted*, so
  the performance report keeps its figures. A conversation (a Rasa session: the
  events between two ``session_started`` events) is anonymised when its last
  event is older than the cut-off; events more than a day older than the cut-off
  are anonymised in any case. In those events:
  - ``sender_id`` becomes ``anon-<hmac>``, one new id *per conversation* (keyed
    with ``APPCARE_ANON_KEY``, or a random key per run when unset: then two
    conversations of one citizen cannot be linked any more);
  - user and bot texts, message ids, entity values, end-to-end action texts and
    bot attachments/buttons are removed; metadata keeps only ``channel``,
    ``municipality``, ``phone_number_id`` (the municipality's business number),
    ``message_type``, ``interactive_type``, ``sent_at``, ``received_at``,
    ``delay_seconds``, ``utter_action`` and model ids (also in the slot
    ``session_started_metadata``, which holds the metadata of a session's first
    message: profile name and wamid go); slot values are kept only for the
    categorical slots the report and dashboards use;
  - kept: event types, intent names and confidences, action names, policies,
    timestamps, the order of events.
* **Handoff tickets** (``handoff_tickets``/``handoff_messages``) that are closed and
  belong to such a conversation (or are older than the cut-off): the conversation
  id becomes the conversation's anonymous id (the report still links ticket and
  conversation), summary and transcript are emptied, the callback number is
  removed, message texts are emptied; times, reason, outcome, municipality, staff
  user, urgent, language code and whether a callback was asked (yes/no) stay.
  An open (or claimed) ticket without any activity (created, claimed, message) in the
  retention period is first closed as expired: outcome ``bewaartermijn verstreken``
  and a system note "Automatisch gesloten: bewaartermijn verstreken" in its history
  (kept; no ``closed_at``: nobody handled it, so the report's handling figures do not
  change), then anonymised like a closed one. Open tickets with recent activity are
  left alone (a colleague is still working on them) and reported.
* **WhatsApp state** (``whatsapp_inbox``, ``whatsapp_outbox``,
  ``whatsapp_status_events``, ``whatsapp_contacts``, ``whatsapp_identities`` - the
  citizen's phone number/BSUID/username, by last use): finished rows older than the
  cut-off are deleted. Note: with fewer than 7 days, very late redeliveries by
  Meta are no longer recognised as duplicates.
* **Desk webhook outbox** (``desk_webhook_outbox``, when present): delivered or
  failed rows older than the cut-off are deleted.
* **Editors' not-understood inbox** (``desk_editor_inbox``): older items lose text,
  sender pseudonym and the example they became.

Repairs of what earlier versions left behind (each run, idempotent): the slot
``session_started_metadata`` in conversations anonymised before; example texts in
the desk's audit log (``desk_audit_log``, actions ``example_*``: they become count
and keyed ids); old editor inbox items that kept their example.

Alternative kept in mind and not chosen: writing ``report_daily_aggregates`` and
deleting events. Anonymised events keep every figure of the report (including new
ones added later) without a second data model.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import sqlalchemy as sa

from appcare import tracker_store

logger = logging.getLogger("appcare.retention")

ROOT = Path(__file__).resolve().parent.parent
ANON_PREFIX = "anon-"
KEEP_METADATA = {
    "channel", "municipality", "phone_number_id", "message_type", "interactive_type", "sent_at",
    "received_at", "delay_seconds", "utter_action", "model_id", "assistant_id", "error_code",
    "has_caption", "forwarded",
}
# Categorical slots whose values are no personal data (street, area, age are dropped).
KEEP_SLOTS = {
    "municipality", "topic", "pending_question", "failed_attempts", "privacy_notice_shown",
    "feedback_asked", "handoff_active", "document_type", "relation", "desk", "ceremony_type",
    "requested_slot", "language", "reply_language",
    "other_language_notice", "handoff_reason",
}
# Rasa's slot with the metadata of the first message of a session: a dict, filtered
# with KEEP_METADATA (before, it was kept whole: see repair_anonymised_tracker).
SESSION_METADATA_SLOT = "session_started_metadata"
FINISHED_INBOX = ("done", "ignored", "failed")
FINAL_OUTBOX = ("sent", "failed", "deferred")
EXPIRED_TEXT = "[verwijderd: bewaartermijn verstreken]"


# --------------------------------------------------------------------- tracker store
def tracker_store_url(endpoints: str) -> sa.engine.URL:
    """SQLAlchemy URL of the SQL tracker store in an endpoints file (``${VAR}`` is
    replaced from the environment like Rasa does); a relative SQLite path is relative to
    the project, where `make run` starts Rasa."""
    path = Path(endpoints)
    if not path.is_absolute() and not path.exists():
        path = ROOT / endpoints
    try:
        return tracker_store.tracker_store_url(path, base_dir=ROOT)
    except tracker_store.TrackerStoreConfigError as exc:
        raise SystemExit(f"{endpoints}: {exc}") from exc


def tracker_engine(endpoints: str) -> sa.engine.Engine:
    return tracker_store.engine(tracker_store_url(endpoints))


events_table = tracker_store.events_table


def appcare_engine(url: Optional[str] = None) -> sa.engine.Engine:
    from appcare import db

    return db.get_engine(url or db.db_url())


# ------------------------------------------------------------------- anonymisation
def _metadata(value: Any) -> Dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if k in KEEP_METADATA}


def _entities(value: Any) -> List[Dict[str, Any]]:
    result = []
    for entity in value or []:
        if isinstance(entity, dict):
            kept = {k: v for k, v in entity.items() if k in ("entity", "start", "end", "extractor", "confidence_entity", "role", "group")}
            kept["value"] = None
            result.append(kept)
    return result


def anonymise_event(event: Dict[str, Any]) -> Dict[str, Any]:
    """The event without personal data, keeping what the report reads."""
    kind = event.get("event")
    out = dict(event)
    if "metadata" in out:
        out["metadata"] = _metadata(out.get("metadata"))
    if kind == "user":
        out["text"] = None
        out["message_id"] = None
        parse = dict(out.get("parse_data") or {})
        parse["text"] = None
        parse["entities"] = _entities(parse.get("entities"))
        parse.pop("response_selector", None)
        if "metadata" in parse:
            parse["metadata"] = _metadata(parse.get("metadata"))
        parse.pop("message_id", None)
        out["parse_data"] = parse
    elif kind in ("bot", "agent"):
        out["text"] = None
        out["data"] = {}
    elif kind == "slot":
        value = out.get("value")
        if out.get("name") == SESSION_METADATA_SLOT:
            # the metadata of the message that started the session (profile name, wamid):
            # filtered like the metadata of a user event
            out["value"] = _metadata(value) if isinstance(value, dict) else None
        elif out.get("name") not in KEEP_SLOTS and not (value is None or isinstance(value, (bool, int, float))):
            out["value"] = None
    elif kind == "action":
        out["action_text"] = None
    elif kind == "entities":
        out["entities"] = _entities(out.get("entities"))
    elif kind in ("reminder", "cancel_reminder"):
        out["entities"] = _entities(out.get("entities")) if isinstance(out.get("entities"), list) else None
    elif kind == "user_featurization":
        pass
    for key in ("input_channel",):
        if key in out and out[key] not in (None, "rest", "whatsapp", "socketio", "cmdline"):
            out[key] = str(out[key])[:32]
    return out


class Anonymiser:
    def __init__(self, key: Optional[bytes] = None) -> None:
        env = os.environ.get("APPCARE_ANON_KEY")
        self.key = key or (env.encode("utf-8") if env else secrets.token_bytes(32))

    def session_id(self, sender: str, first_event_id: int) -> str:
        digest = hmac.new(self.key, f"{sender}\x00{first_event_id}".encode("utf-8"), hashlib.sha256).hexdigest()
        return ANON_PREFIX + digest[:24]

    def ticket_id(self, conversation_id: str, ticket_id: int) -> str:
        digest = hmac.new(self.key, f"ticket\x00{conversation_id}\x00{ticket_id}".encode("utf-8"), hashlib.sha256).hexdigest()
        return ANON_PREFIX + digest[:24]


def sessions_of(rows: Sequence[Tuple[int, str, float, Optional[str]]]) -> List[List[Tuple[int, str, float, Optional[str]]]]:
    """Splits (id, type_name, timestamp, action_name) rows ordered by id into Rasa
    sessions: a session begins with ``action_session_start`` (followed by
    ``session_started``), or with a ``session_started`` on its own."""
    sessions: List[List[Tuple[int, str, float, Optional[str]]]] = []
    current: List[Tuple[int, str, float, Optional[str]]] = []
    previous_was_start_action = False
    for row in rows:
        starts = row[1] == "action" and row[3] == "action_session_start"
        starts = starts or (row[1] == "session_started" and not previous_was_start_action)
        if starts and current:
            sessions.append(current)
            current = []
        current.append(row)
        previous_was_start_action = row[1] == "action" and row[3] == "action_session_start"
    if current:
        sessions.append(current)
    return sessions


def _chunks(items: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def anonymise_tracker(
    engine: sa.engine.Engine, cutoff: float, anonymiser: Anonymiser, dry_run: bool
) -> Tuple[Dict[str, int], Dict[str, List[Tuple[float, str]]]]:
    """Returns counts and, per sender, the (session start, anonymous id) of every
    anonymised conversation (to give tickets the same id)."""
    counts = {"senders": 0, "conversations": 0, "events": 0}
    sessions_by_sender: Dict[str, List[Tuple[float, str]]] = {}
    if not sa.inspect(engine).has_table("events"):
        logger.warning("tracker store has no events table")
        return counts, sessions_by_sender
    events = events_table()
    hard_cutoff = cutoff - 86400
    with engine.connect() as conn:
        senders = [
            r[0] for r in conn.execute(
                sa.select(events.c.sender_id).where(
                    events.c.timestamp < cutoff, ~events.c.sender_id.like(ANON_PREFIX + "%")
                ).distinct()
            )
        ]
    for sender in senders:
        with engine.begin() as conn:
            rows = [
                (r.id, r.type_name, float(r.timestamp or 0.0), r.action_name)
                for r in conn.execute(
                    sa.select(events.c.id, events.c.type_name, events.c.timestamp, events.c.action_name)
                    .where(events.c.sender_id == sender)
                    .order_by(events.c.id)
                )
            ]
            chosen: List[Tuple[int, str]] = []  # (event id, anonymous id)
            known = sessions_by_sender.setdefault(sender, [])
            for session in sessions_of(rows):
                start = min(row[2] for row in session)
                last_ts = max(row[2] for row in session)
                if last_ts < cutoff:
                    part = session
                else:
                    part = [row for row in session if row[2] < hard_cutoff]
                if not part:
                    known.append((start, None))
                    continue
                anon = anonymiser.session_id(sender, part[0][0])
                known.append((start, anon))
                chosen.extend((row[0], anon) for row in part)
                counts["conversations"] += 1
            if not chosen:
                continue
            counts["senders"] += 1
            counts["events"] += len(chosen)
            if dry_run:
                continue
            anon_of = dict(chosen)
            for chunk in _chunks([event_id for event_id, _ in chosen]):
                data_rows = conn.execute(sa.select(events.c.id, events.c.data).where(events.c.id.in_(chunk))).all()
                updates = []
                for event_id, raw in data_rows:
                    try:
                        event = json.loads(raw) if raw else {}
                    except ValueError:
                        event = {}
                    updates.append({
                        "b_id": event_id,
                        "b_sender": anon_of[event_id],
                        "b_data": json.dumps(anonymise_event(event), ensure_ascii=False),
                    })
                if updates:
                    conn.execute(
                        events.update()
                        .where(events.c.id == sa.bindparam("b_id"))
                        .values(sender_id=sa.bindparam("b_sender"), data=sa.bindparam("b_data")),
                        updates,
                    )
    return counts, sessions_by_sender


def repair_anonymised_tracker(engine: sa.engine.Engine, dry_run: bool, batch: int = 1000) -> Dict[str, int]:
    """Conversations anonymised by an earlier version kept the slot
    ``session_started_metadata`` whole (the citizen's WhatsApp profile name, the
    wamid): anonymises those events again. Only events that still hold more than
    :func:`anonymise_event` keeps are rewritten, so a second run changes nothing."""
    counts = {"repaired_events": 0}
    if not sa.inspect(engine).has_table("events"):
        return counts
    events = events_table()
    condition = sa.and_(
        events.c.sender_id.startswith(ANON_PREFIX, autoescape=True),
        events.c.type_name == "slot",
        events.c.data.contains(SESSION_METADATA_SLOT, autoescape=True),
    )
    last_id = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                sa.select(events.c.id, events.c.data).where(condition, events.c.id > last_id)
                .order_by(events.c.id).limit(batch)
            ).all()
            if not rows:
                break
            last_id = rows[-1][0]
            updates = []
            for event_id, raw in rows:
                try:
                    event = json.loads(raw) if raw else {}
                except ValueError:
                    event = {}
                cleaned = anonymise_event(event)
                if cleaned != event:
                    updates.append({"b_id": event_id, "b_data": json.dumps(cleaned, ensure_ascii=False)})
            counts["repaired_events"] += len(updates)
            if updates and not dry_run:
                conn.execute(
                    events.update().where(events.c.id == sa.bindparam("b_id")).values(data=sa.bindparam("b_data")),
                    updates,
                )
        if len(rows) < batch:
            break
    return counts


def anonymise_tickets(
    engine: sa.engine.Engine,
    cutoff: float,
    sessions_by_sender: Dict[str, List[Tuple[float, str]]],
    anonymiser: Anonymiser,
    dry_run: bool,
) -> Dict[str, int]:
    from appcare.handoff_store import (
        EXPIRED_NOTE, TicketMessageRow, TicketRow, expire_stale_tickets, stale_open_tickets,
    )

    counts = {"tickets": 0, "ticket_messages": 0, "tickets_still_open": 0, "tickets_expired": 0}
    if not sa.inspect(engine).has_table(TicketRow.__tablename__):
        return counts
    tickets = TicketRow.__table__
    messages = TicketMessageRow.__table__
    cutoff_dt = dt.datetime.fromtimestamp(cutoff, tz=dt.timezone.utc).replace(tzinfo=None)
    cleared: Dict[str, Any] = {"summary": "", "transcript": "[]"}
    present = {c["name"] for c in sa.inspect(engine).get_columns(TicketRow.__tablename__)}
    if "callback_number" in present:  # absent until the bot or desk upgraded the table
        cleared["callback_number"] = None
    with engine.begin() as conn:
        # Open tickets without activity for the retention period: closed as expired
        # (a note in the ticket's history says why), then anonymised below like closed ones.
        if dry_run:
            expired = set(stale_open_tickets(conn, cutoff_dt))
        else:
            expired = set(expire_stale_tickets(conn, cutoff_dt))
        counts["tickets_expired"] = len(expired)
        rows = conn.execute(
            sa.select(tickets.c.id, tickets.c.conversation_id, tickets.c.status, tickets.c.created_at)
            .where(~tickets.c.conversation_id.like(ANON_PREFIX + "%"))
        ).all()
        for ticket_id, conversation_id, status, created_at in rows:
            if ticket_id in expired:
                status = "closed"
            created_ts = created_at.replace(tzinfo=dt.timezone.utc).timestamp() if created_at else 0.0
            # The conversation the ticket came from: the sender's last session that
            # started before the ticket (None: still a live conversation).
            earlier = [s for s in sessions_by_sender.get(conversation_id, []) if s[0] <= created_ts + 1.0]
            if earlier:
                anon = max(earlier, key=lambda s: s[0])[1]
                if anon is None:
                    continue
            elif created_at is not None and created_at < cutoff_dt:
                anon = anonymiser.ticket_id(conversation_id, ticket_id)
            else:
                continue
            if status != "closed":
                counts["tickets_still_open"] += 1
                continue
            counts["tickets"] += 1
            n_messages = conn.execute(
                sa.select(sa.func.count()).select_from(messages).where(messages.c.ticket_id == ticket_id)
            ).scalar() or 0
            counts["ticket_messages"] += n_messages
            if dry_run:
                continue
            conn.execute(
                tickets.update().where(tickets.c.id == ticket_id).values(conversation_id=anon, **cleared)
            )
            conn.execute(messages.update().where(
                messages.c.ticket_id == ticket_id,
                ~sa.and_(messages.c.author == "system", messages.c.text == EXPIRED_NOTE),  # keep why it was closed
            ).values(text=""))
    return counts


def purge_whatsapp(engine: sa.engine.Engine, cutoff: float, dry_run: bool) -> Dict[str, int]:
    from appcare.db import from_epoch
    from channels.inbox import contacts, identities, inbox, leases, outbox, status_events

    counts: Dict[str, int] = {}
    inspector = sa.inspect(engine)
    before = from_epoch(cutoff)  # the channel's time columns hold naive UTC datetimes
    plans = [
        ("whatsapp_inbox", inbox, sa.and_(inbox.c.status.in_(FINISHED_INBOX), inbox.c.received_at < before)),
        ("whatsapp_outbox", outbox, sa.and_(outbox.c.status.in_(FINAL_OUTBOX), outbox.c.updated_at < before)),
        ("whatsapp_status_events", status_events, status_events.c.recorded_at < before),
        ("whatsapp_contacts", contacts, sa.and_(
            sa.or_(contacts.c.last_inbound_at.is_(None), contacts.c.last_inbound_at < before),
            sa.or_(contacts.c.template_sent_at.is_(None), contacts.c.template_sent_at < before),
        )),
        ("whatsapp_sender_leases", leases, leases.c.expires_at < from_epoch(min(cutoff, time.time() - 3600))),
        # phone number / BSUID / username -> conversation key: personal data, kept
        # while the citizen writes (each message renews it)
        ("whatsapp_identities", identities, identities.c.updated_at < before),
    ]
    with engine.begin() as conn:
        for name, table, condition in plans:
            if not inspector.has_table(name):
                continue
            if dry_run:
                counts[name] = conn.execute(sa.select(sa.func.count()).select_from(table).where(condition)).scalar() or 0
            else:
                counts[name] = conn.execute(table.delete().where(condition)).rowcount
        if inspector.has_table("whatsapp_inbox"):
            counts["whatsapp_inbox_still_open"] = conn.execute(
                sa.select(sa.func.count()).select_from(inbox).where(
                    inbox.c.status.notin_(FINISHED_INBOX), inbox.c.received_at < before
                )
            ).scalar() or 0
    return counts


def purge_desk_outbox(engine: sa.engine.Engine, cutoff: float, dry_run: bool) -> Dict[str, int]:
    if not sa.inspect(engine).has_table("desk_webhook_outbox"):
        return {}
    table = sa.Table("desk_webhook_outbox", sa.MetaData(), autoload_with=engine)
    if "created_at" not in table.c or "status" not in table.c:
        return {}
    cutoff_dt = dt.datetime.fromtimestamp(cutoff, tz=dt.timezone.utc).replace(tzinfo=None)
    condition = sa.and_(table.c.status.in_(("sent", "failed")), table.c.created_at < cutoff_dt)
    with engine.begin() as conn:
        if dry_run:
            n = conn.execute(sa.select(sa.func.count()).select_from(table).where(condition)).scalar() or 0
        else:
            n = conn.execute(table.delete().where(condition)).rowcount
    return {"desk_webhook_outbox": n}


def anonymise_editor_inbox(engine: sa.engine.Engine, cutoff: float, dry_run: bool) -> Dict[str, int]:
    """The editors' not-understood inbox keeps its masked citizen texts only for the
    retention period: older items lose text, sender pseudonym and the example they
    became (also items anonymised before that kept it); week, reason, intent
    and status stay, so the editors' counts per week are unchanged. Items nobody handled
    are closed as dismissed."""
    if not sa.inspect(engine).has_table("desk_editor_inbox"):
        return {}
    table = sa.Table("desk_editor_inbox", sa.MetaData(), autoload_with=engine)
    # also rows anonymised by an earlier version, which kept the example they became
    leftover = [table.c.sender_hash != "", table.c.text != EXPIRED_TEXT]
    if "example" in table.c:
        leftover.append(table.c.example.isnot(None))
    condition = sa.and_(table.c.ts < cutoff, sa.or_(*leftover))
    cleared: Dict[str, Any] = {"text": EXPIRED_TEXT, "sender_hash": ""}
    if "example" in table.c:
        cleared["example"] = None
    with engine.begin() as conn:
        if dry_run:
            n = conn.execute(sa.select(sa.func.count()).select_from(table).where(condition)).scalar() or 0
            return {"editor_inbox": n}
        conn.execute(table.update().where(condition, table.c.status == "new").values(
            status="dismissed", handled_by="bewaartermijn"))
        n = conn.execute(table.update().where(condition).values(**cleared)).rowcount
    return {"editor_inbox": n}


def repair_editor_audit(engine: sa.engine.Engine, dry_run: bool) -> Dict[str, int]:
    """The desk's audit log kept the texts of example questions (which may have been a
    citizen's message from the not-understood inbox) until the desk stopped writing
    them: those rows keep intent, files, count and keyed example ids, not the texts.
    Any age: the text was never meant to be there."""
    from desk.editor.store import EXAMPLE_AUDIT_ACTIONS, EXAMPLE_TEXT_KEYS, example_audit_detail

    if not sa.inspect(engine).has_table("desk_audit_log"):
        return {}
    table = sa.Table("desk_audit_log", sa.MetaData(), autoload_with=engine)
    condition = sa.and_(table.c.action.in_(EXAMPLE_AUDIT_ACTIONS), table.c.detail.isnot(None))
    n = 0
    with engine.begin() as conn:
        updates = []
        for audit_id, raw in conn.execute(sa.select(table.c.id, table.c.detail).where(condition).order_by(table.c.id)):
            try:
                detail = json.loads(raw)
            except ValueError:
                detail = None
            if not isinstance(detail, dict):
                updates.append({"b_id": audit_id, "b_detail": None})
            elif any(key in detail for key in EXAMPLE_TEXT_KEYS):
                updates.append({"b_id": audit_id, "b_detail": json.dumps(example_audit_detail(detail), ensure_ascii=False)})
        n = len(updates)
        if updates and not dry_run:
            conn.execute(table.update().where(table.c.id == sa.bindparam("b_id")).values(detail=sa.bindparam("b_detail")),
                         updates)
    return {"editor_audit_repaired": n}


def run(days: float, endpoints: str, db_url: Optional[str] = None, dry_run: bool = False,
        now: Optional[float] = None, key: Optional[bytes] = None) -> Dict[str, int]:
    if days < 1:
        raise SystemExit("--days must be at least 1")
    cutoff = (now or time.time()) - days * 86400
    anonymiser = Anonymiser(key)
    tracker = tracker_engine(endpoints)
    try:
        counts, sessions = anonymise_tracker(tracker, cutoff, anonymiser, dry_run)
        counts.update(repair_anonymised_tracker(tracker, dry_run))
    finally:
        tracker.dispose()
    app_engine = appcare_engine(db_url)
    counts.update(anonymise_tickets(app_engine, cutoff, sessions, anonymiser, dry_run))
    counts.update(purge_whatsapp(app_engine, cutoff, dry_run))
    counts.update(purge_desk_outbox(app_engine, cutoff, dry_run))
    counts.update(anonymise_editor_inbox(app_engine, cutoff, dry_run))
    counts.update(repair_editor_audit(app_engine, dry_run))
    return counts


def main(argv: Optional[List[str]] = None) -> int:
    from appcare.ops import logging_setup

    parser = argparse.ArgumentParser(prog="python -m jobs.retention", description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, required=True, help="keep personal data this many days")
    parser.add_argument("--dry-run", action="store_true", help="only count what would change")
    parser.add_argument("--endpoints", default=os.environ.get("APPCARE_ENDPOINTS", "endpoints.yml"),
                        help="endpoints file with the SQL tracker store (default endpoints.yml)")
    parser.add_argument("--db-url", default=None, help="appcare database (default $APPCARE_DB_URL)")
    args = parser.parse_args(argv)
    logging_setup.configure("retention")
    started = time.monotonic()
    counts = run(args.days, args.endpoints, args.db_url, args.dry_run)
    verb = "would change" if args.dry_run else "changed"
    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=args.days)
    print(f"retention: data older than {cutoff.isoformat(timespec='seconds')} ({args.days:g} days); {verb}:")
    for name, value in counts.items():
        print(f"  {name}: {value}")
    logger.info("retention %s in %.1fs: %s", "dry run" if args.dry_run else "done", time.monotonic() - started,
                json.dumps(counts, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
