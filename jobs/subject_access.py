"""Subject access and erasure (AVG art. 15 and 17) for one phone number.

    python -m jobs.subject_access export --phone +31612345678 [--out export.json]
    python -m jobs.subject_access erase  --phone +31612345678 [--dry-run] [--yes]
    python -m jobs.subject_access export --bsuid NL.13491208655302741918

A WhatsApp citizen is found by phone number OR business-scoped user id (BSUID,
``--bsuid``; citizens with a username may have no number): both lead to the one
conversation key in ``whatsapp_identities`` (the BSUID or the number), whose data is
exported/erased together with all identifiers linked to it.

Options: ``--endpoints`` (file with the SQL tracker store, default endpoints.yml,
``${VAR}`` from the environment), ``--db-url`` (appcare database, default
``$APPCARE_DB_URL``), ``--sender-id`` instead of ``--phone`` for other channels.

The phone number is normalised to WhatsApp's ``wa_id`` (digits with country code,
no +): ``+31 6 12345678``, ``0031612345678`` and ``0612345678`` (Dutch) all become
``31612345678``. Covered:

* Rasa tracker store: every event of sender id = wa_id, or ``<wa_id>@<number id>``
  for conversations with another municipality's number (``events`` table);
* handoff tickets of those conversation ids (with urgency, language and the
  callback wish and number) and their messages; and, of other conversations'
  tickets that give this number as the number to call back, that number only
  (``handoff_callback_numbers``; erasure clears it, the ticket stays);
* WhatsApp inbox (by number, and finished rows by the number's hash), outbox
  (recipient), contacts, delivery status events (recipient hash), sender leases;
* the desk's webhook outbox rows that mention the number or its tickets;
* the content editors' not-understood inbox (masked texts, by conversation pseudonym).

Matching is exact: a sender id is the conversation key itself or
``<key>@<digits>``; ``_`` and ``%`` in an id are no wildcards, and one number is
never found inside a longer one. Pseudonym columns (``sender_hash``,
``recipient_hash``) are matched with the keyed pseudonym (``APPCARE_PSEUDONYM_KEY``,
the same as the bot's) and, for rows written before pseudonyms were keyed, the old
unkeyed one (such rows disappear with the retention period).

Not covered, by design: conversations already anonymised by jobs/retention.py
(no longer linkable to the number), logs (never contain the number: they carry
a hash), and events already published to RabbitMQ (the consumer, e.g. the data
warehouse, handles its own copy; the export lists how many events were published
by Rasa in the tracker). Redis holds only short-lived locks (seconds).
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import sys
from typing import Any, Dict, List, Optional

import sqlalchemy as sa

from appcare.pii import conversation_hash
from jobs.retention import appcare_engine, events_table, tracker_engine


def _legacy_hash(sender_id: str) -> str:
    """The unkeyed pseudonym of earlier versions (only to find their old rows)."""
    return hashlib.sha256((sender_id or "").encode("utf-8")).hexdigest()[:12]


def pseudonyms(sender_ids: Any) -> List[str]:
    """Every pseudonym a row of these senders may carry: keyed, and the old unkeyed one."""
    return sorted({h for s in sender_ids for h in (conversation_hash(s), _legacy_hash(s))})


def same_conversation(sender_id: Optional[str], key: str) -> bool:
    """True when ``sender_id`` is a conversation of the citizen with conversation key
    ``key``: exactly ``key``, or ``<key>@<phone_number_id>`` (a conversation with
    another municipality's number, channels.whatsapp.conversation_id)."""
    from channels.whatsapp import TENANT_SEPARATOR

    if not sender_id or not key:
        return False
    if sender_id == key:
        return True
    prefix = key + TENANT_SEPARATOR
    return sender_id.startswith(prefix) and sender_id[len(prefix):].isdigit()


def _conversation_filter(column: Any, key: str) -> Any:
    """SQL pre-selection for :func:`same_conversation` (``_``/``%`` escaped);
    rows are checked with :func:`same_conversation` afterwards."""
    from channels.whatsapp import TENANT_SEPARATOR

    return sa.or_(column == key, column.startswith(key + TENANT_SEPARATOR, autoescape=True))


def normalise_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone or "")
    if phone.strip().startswith("+"):
        return digits
    if digits.startswith("00"):
        return digits[2:]
    if digits.startswith("0") and len(digits) == 10:  # Dutch national notation
        return "31" + digits[1:]
    return digits


def _json(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _rows(result: Any) -> List[Dict[str, Any]]:
    return [{k: _json(v) for k, v in row._mapping.items()} for row in result]


def _payload_conversation(row: Dict[str, Any]) -> Optional[str]:
    """The ticket's conversation id in a desk webhook payload (None when absent)."""
    try:
        payload = json.loads(row.get("payload") or "{}")
    except ValueError:
        return None
    ticket = payload.get("ticket") if isinstance(payload, dict) else None
    value = ticket.get("conversation_id") if isinstance(ticket, dict) else None
    return value if isinstance(value, str) else None


class Subject:
    def __init__(self, wa_id: str, endpoints: str, db_url: Optional[str] = None) -> None:
        if not wa_id:
            raise SystemExit("no phone number / sender id given")
        self.given = wa_id
        self.endpoints = endpoints
        self.app = appcare_engine(db_url)
        # WhatsApp identifiers (phone number, BSUID) of this citizen and the conversation key
        self.identifiers, wa_id = self._identities(wa_id)
        self.wa_id = wa_id
        self.hash = conversation_hash(wa_id)
        self.sender_ids = {wa_id}  # plus "<wa_id>@<number id>" conversations found in the tracker
        self.phones = {i for i in self.identifiers if i.isdigit()} | {wa_id}

    def _identities(self, given: str) -> "tuple[set, str]":
        """(all identifiers linked to ``given``, its conversation key) from
        ``whatsapp_identities``; (``{given}``, ``given``) when it is not there."""
        from channels.inbox import identities

        if not sa.inspect(self.app).has_table(identities.name):
            return {given}, given
        with self.app.connect() as conn:
            keys = [r[0] for r in conn.execute(
                sa.select(identities.c.conversation_key).where(identities.c.identifier == given))]
            key = keys[0] if keys else given
            found = {r[0] for r in conn.execute(
                sa.select(identities.c.identifier).where(identities.c.conversation_key == key))}
        return found | {given, key}, key

    # -------------------------------------------------------------- queries
    def _tracker(self, erase: bool, dry_run: bool) -> Dict[str, Any]:
        engine = tracker_engine(self.endpoints)
        try:
            if not sa.inspect(engine).has_table("events"):
                return {"events": []}
            events = events_table()
            # the conversation with the default number is the wa_id itself, those
            # with other municipalities' numbers are "<wa_id>@<phone_number_id>"
            where = _conversation_filter(events.c.sender_id, self.wa_id)
            with engine.begin() as conn:
                rows = [row for row in conn.execute(sa.select(events).where(where).order_by(events.c.id))
                        if same_conversation(row.sender_id, self.wa_id)]
                self.sender_ids.update(row.sender_id for row in rows)
                found = []
                for row in rows:
                    try:
                        data = json.loads(row.data) if row.data else {}
                    except ValueError:
                        data = {"raw": row.data}
                    found.append({"id": row.id, "type": row.type_name, "timestamp": row.timestamp, "event": data})
                if erase and not dry_run:
                    ids = [row.id for row in rows]
                    for start in range(0, len(ids), 500):
                        conn.execute(events.delete().where(events.c.id.in_(ids[start:start + 500])))
            return {"events": found}
        finally:
            engine.dispose()

    def _appcare(self, erase: bool, dry_run: bool) -> Dict[str, List[Dict[str, Any]]]:
        from appcare.handoff_store import TicketMessageRow, TicketRow
        from channels.inbox import contacts, identities, inbox, leases, outbox, status_events

        inspector = sa.inspect(self.app)
        result: Dict[str, List[Dict[str, Any]]] = {}
        with self.app.begin() as conn:
            ticket_ids: List[int] = []
            message_ids: List[int] = []
            if inspector.has_table(TicketRow.__tablename__):
                # reflected: every column the database has (also one not upgraded yet)
                tickets = sa.Table(TicketRow.__tablename__, sa.MetaData(), autoload_with=conn)
                messages = sa.Table(TicketMessageRow.__tablename__, sa.MetaData(), autoload_with=conn)
                ticket_rows = [
                    t for t in _rows(conn.execute(sa.select(tickets).where(
                        _conversation_filter(tickets.c.conversation_id, self.wa_id)).order_by(tickets.c.id)))
                    if same_conversation(t["conversation_id"], self.wa_id)
                ]
                ticket_ids = [t["id"] for t in ticket_rows]
                self.sender_ids.update(t["conversation_id"] for t in ticket_rows)
                mine = tickets.c.id.in_(ticket_ids)
                result["handoff_tickets"] = ticket_rows
                result["handoff_messages"] = _rows(
                    conn.execute(sa.select(messages).where(messages.c.ticket_id.in_(ticket_ids)).order_by(messages.c.id))
                ) if ticket_ids else []
                message_ids = [m["id"] for m in result["handoff_messages"]]
                if erase and not dry_run and ticket_ids:
                    conn.execute(messages.delete().where(messages.c.ticket_id.in_(ticket_ids)))
                    conn.execute(tickets.delete().where(tickets.c.id.in_(ticket_ids)))
                if "callback_number" in tickets.c:
                    # Someone else's conversation that asks to be called back on this number:
                    # only the number is this subject's (the rest is the other person's).
                    others = conn.execute(
                        sa.select(tickets.c.id, tickets.c.created_at, tickets.c.municipality, tickets.c.callback_number)
                        .where(tickets.c.callback_number.isnot(None), ~mine)
                        .order_by(tickets.c.id)
                    ).all()
                    named = [r for r in others if normalise_phone(r.callback_number) in self.phones]
                    result["handoff_callback_numbers"] = _rows(named)
                    if erase and not dry_run and named:
                        conn.execute(
                            tickets.update().where(tickets.c.id.in_([r.id for r in named])).values(callback_number=None)
                        )
            hashes = pseudonyms([self.wa_id])
            plans = [
                ("whatsapp_inbox", inbox, sa.or_(inbox.c.wa_id == self.wa_id, inbox.c.sender_hash.in_(hashes))),
                ("whatsapp_outbox", outbox, sa.or_(outbox.c.recipient == self.wa_id, outbox.c.recipient_hash.in_(hashes))),
                ("whatsapp_contacts", contacts, contacts.c.wa_id == self.wa_id),
                ("whatsapp_status_events", status_events, status_events.c.recipient_hash.in_(hashes)),
                ("whatsapp_sender_leases", leases, leases.c.sender_hash.in_(hashes)),
                ("whatsapp_identities", identities, sa.or_(identities.c.conversation_key == self.wa_id,
                                                           identities.c.identifier.in_(sorted(self.identifiers)))),
            ]
            for name, table, condition in plans:
                if not inspector.has_table(name):
                    continue
                rows = _rows(conn.execute(sa.select(table).where(condition)))
                for row in rows:
                    for key in ("payload_json", "metadata_json"):
                        if row.get(key):
                            try:
                                row[key] = json.loads(row[key])
                            except ValueError:
                                pass
                result[name] = rows
                if erase and not dry_run and rows:
                    conn.execute(table.delete().where(condition))
            if inspector.has_table("desk_editor_inbox"):
                # the editors' not-understood inbox: masked texts under the conversation's pseudonym
                table = sa.Table("desk_editor_inbox", sa.MetaData(), autoload_with=conn)
                condition = table.c.sender_hash.in_(pseudonyms(self.sender_ids))
                result["desk_editor_inbox"] = _rows(conn.execute(sa.select(table).where(condition)))
                if erase and not dry_run and result["desk_editor_inbox"]:
                    conn.execute(table.delete().where(condition))
            if inspector.has_table("desk_webhook_outbox"):
                table = sa.Table("desk_webhook_outbox", sa.MetaData(), autoload_with=conn)
                if "payload" in table.c:
                    # events of this citizen's tickets: by event key, or by the exact
                    # conversation id in the payload (never a number inside another)
                    keys = {f"ticket:{i}" for i in ticket_ids} | {f"message:{i}" for i in message_ids}
                    conditions = [table.c.payload.contains(self.wa_id, autoescape=True)]
                    if "event_key" in table.c and keys:
                        conditions.append(table.c.event_key.in_(sorted(keys)))
                    found = [
                        row for row in _rows(conn.execute(sa.select(table).where(sa.or_(*conditions))))
                        if row.get("event_key") in keys or same_conversation(_payload_conversation(row), self.wa_id)
                    ]
                    result["desk_webhook_outbox"] = found
                    if erase and not dry_run and found and "id" in table.c:
                        conn.execute(table.delete().where(table.c.id.in_([row["id"] for row in found])))
        return result

    def collect(self, erase: bool = False, dry_run: bool = False) -> Dict[str, Any]:
        tracker = self._tracker(erase, dry_run)
        data = {
            "subject": {"wa_id": self.wa_id, "conversation_hash": self.hash,
                        "identifiers": sorted(self.identifiers)},
            "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "tracker_events": tracker["events"],
        }
        data.update(self._appcare(erase, dry_run))
        data["notes"] = [
            "Anonymised conversations (older than the retention period) cannot be linked to this number any more.",
            "Logs never contain the number; they carry the conversation hash above.",
            "Events published to RabbitMQ are held by their consumer (e.g. the data warehouse).",
        ]
        return data


def counts_of(data: Dict[str, Any]) -> Dict[str, int]:
    return {k: len(v) for k, v in data.items() if isinstance(v, list) and k != "notes"}


def main(argv: Optional[List[str]] = None) -> int:
    from appcare.ops import logging_setup

    parser = argparse.ArgumentParser(prog="python -m jobs.subject_access", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["export", "erase"])
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--phone", help="phone number, e.g. +31612345678")
    who.add_argument("--bsuid", help="WhatsApp business-scoped user id, e.g. NL.13491208655302741918")
    who.add_argument("--sender-id", help="Rasa sender id (other channels)")
    parser.add_argument("--endpoints", default=os.environ.get("APPCARE_ENDPOINTS", "endpoints.yml"))
    parser.add_argument("--db-url", default=None)
    parser.add_argument("--out", help="export: write JSON to this file (default: standard output)")
    parser.add_argument("--dry-run", action="store_true", help="erase: only show what would be deleted")
    parser.add_argument("--yes", action="store_true", help="erase: do not ask for confirmation")
    args = parser.parse_args(argv)
    logging_setup.configure("subject-access")
    wa_id = normalise_phone(args.phone) if args.phone else (args.bsuid or "").strip() or args.sender_id
    subject = Subject(wa_id, args.endpoints, args.db_url)
    if args.command == "export":
        data = subject.collect()
        text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
        if args.out:
            fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            print(f"export written to {args.out}: {json.dumps(counts_of(data))}", file=sys.stderr)
        else:
            print(text)
        return 0
    if not args.dry_run and not args.yes:
        preview = counts_of(subject.collect(erase=True, dry_run=True))
        answer = input(f"Delete {json.dumps(preview)} for sender {subject.hash}? Type 'ja' to confirm: ")
        if answer.strip().lower() != "ja":
            print("nothing deleted")
            return 1
    data = subject.collect(erase=True, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} for sender {subject.hash}: {json.dumps(counts_of(data))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
