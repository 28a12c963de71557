"""What staff (and the webcare integration) can do with tickets; shared by the
HTML pages, the JSON API and the integration endpoints. Every state change is
written to the audit log. Blocking (database, HTTP to Rasa): call from a thread.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any, Collection, Dict, List, Optional, Tuple
from zoneinfo import ZoneInfo

from appcare.handoff_store import OPEN_STATES, HandoffStore, Ticket, utcnow
from appcare.staff_labels import DESK_REASON_LABELS

from desk.auth import can
from desk.rasa_client import RasaClient
from desk.settings import Settings
from desk.store import DeskStore

try:
    TZ = ZoneInfo("Europe/Amsterdam")
except Exception:  # noqa: BLE001 - no tz database: show UTC
    TZ = dt.timezone.utc

REASON_LABELS = DESK_REASON_LABELS  # also used by desk.app (the queue filter)
# The citizen's language (ISO 639-1), shown when it is not Dutch.
LANGUAGE_LABELS = {
    "en": "Engels", "pl": "Pools", "tr": "Turks", "ar": "Arabisch", "de": "Duits", "fr": "Frans",
    "es": "Spaans", "uk": "Oekraïens", "ru": "Russisch", "so": "Somalisch", "ti": "Tigrinya",
    "fa": "Perzisch", "ro": "Roemeens", "bg": "Bulgaars", "pt": "Portugees", "it": "Italiaans",
    "hu": "Hongaars", "zh": "Chinees", "am": "Amhaars",
}
URGENT_LABEL = "Dringend"
URGENT_TEXT = "Mogelijk gevaar of acute nood: pak dit gesprek meteen op."
CALLBACK_TEXT = "Wil teruggebeld worden"
CHANNEL_LABELS = {"whatsapp": "WhatsApp", "rest": "Web (REST)", "cmdline": "Test", "socketio": "Webchat"}
STATUS_LABELS = {"open": "Wacht", "claimed": "Opgepakt", "closed": "Gesloten"}
OUTCOME_LABELS = {
    "beantwoord": "Beantwoord",
    "doorverwezen": "Doorverwezen",
    "geen reactie": "Geen reactie van inwoner",
    "dubbel": "Dubbel",
    "citizen_returned": "Inwoner ging terug naar de assistent",
    "closed": "Gesloten",
}
ACTION_LABELS = {
    "login": "ingelogd",
    "logout": "uitgelogd",
    "login_failed": "inloggen mislukt",
    "claim": "opgepakt",
    "claim_refused": "oppakken geweigerd",
    "release": "teruggezet",
    "assign": "toegewezen",
    "reply_override": "gereageerd op gesprek van collega",
    "reply": "antwoord geschreven",
    "reply_delivered": "antwoord verstuurd",
    "reply_deferred": "antwoord uitgesteld",
    "reply_failed": "antwoord niet afgeleverd",
    "reply_unknown": "antwoord: aflevering nog onbekend",
    "reply_retry": "opnieuw versturen",
    "note": "notitie",
    "close": "gesloten",
    "close_failed": "sluiten mislukt",
    "force_close": "gesloten zonder assistent",
    "flagged": "te laat gemarkeerd",
    "answer_saved": "snel antwoord opgeslagen",
    "answer_deleted": "snel antwoord verwijderd",
    "csrf_rejected": "verzoek geweigerd (CSRF)",
    "integration_rejected": "koppeling geweigerd",
    "webhook_failed": "webhook mislukt",
    "user_created": "account aangemaakt",
    "password_set": "wachtwoord gewijzigd",
    "report_downloaded": "rapport gedownload",
    "report_failed": "rapport mislukt",
}
MAX_TEXT = 4000
logger = logging.getLogger(__name__)

# Delivery of a staff reply (handoff_messages.delivery): pending (being sent) | sent |
# deferred (WhatsApp 24-hour window) | failed (surely not delivered: may be sent again)
# | unknown (may have reached the citizen, result not known yet: never sent again until
# it is known; refreshed from the WhatsApp outbox whenever the ticket is read).
UNKNOWN_TEXT = "Nog niet bekend of WhatsApp het bericht heeft afgeleverd; dit wordt vanzelf bijgewerkt."
UNANSWERED_TEXT = "De assistent gaf geen antwoord; niet bekend of het bericht is aangekomen."
NEVER_TRIED_TEXT = "WhatsApp heeft nooit geprobeerd dit bericht te versturen: het is niet afgeleverd."
RETRY_UNKNOWN_TEXT = (
    "We weten nog niet of dit bericht is aangekomen. "
    "Opnieuw versturen kan pas als zeker is dat het niet is afgeleverd."
)
FINAL_OUTBOX = ("sent", "failed", "deferred")  # any other outbox status: not known yet
CALL_MARGIN = 10.0  # seconds beyond rasa_timeout after which a pending reply's call has ended


DELIVERY_ACTIONS = {"sent": "reply_delivered", "deferred": "reply_deferred", "unknown": "reply_unknown"}


class DeskError(Exception):
    """A refused action: HTTP status, short code and a Dutch message for staff."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def local(moment: Optional[dt.datetime]) -> Optional[dt.datetime]:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(TZ)


def iso(moment: Optional[dt.datetime]) -> Optional[str]:
    value = local(moment)
    return value.isoformat(timespec="seconds") if value else None


def duration_label(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return "< 1 min"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} u {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} u"


def language_label(code: Optional[str]) -> Optional[str]:
    """Dutch name of the citizen's language; None for Dutch (or unknown: no code).
    An unlisted code is shown as the code itself."""
    value = (code or "").strip().lower()
    if not value:
        return None
    primary = value.replace("_", "-").split("-", 1)[0]
    if primary == "nl":
        return None
    return LANGUAGE_LABELS.get(primary, value)


def callback_label(ticket: Ticket) -> Optional[str]:
    """What staff read about a callback wish (with the number: ticket page only)."""
    if not ticket.callback_requested and not ticket.callback_number:
        return None
    if ticket.callback_number:
        return f"{CALLBACK_TEXT} op {ticket.callback_number}"
    digits = (ticket.conversation_id or "").lstrip("+")
    if ticket.channel == "whatsapp" and digits.isdigit() and 8 <= len(digits) <= 15:
        # The citizen asked to be called on the number they write from: staff need it.
        return f"{CALLBACK_TEXT} op +{digits} (het WhatsApp-nummer van dit gesprek)"
    return f"{CALLBACK_TEXT} (nummer van dit gesprek)"


def short_conversation(conversation_id: str) -> str:
    """Enough to tell conversations apart without showing a phone number."""
    cid = conversation_id or ""
    return cid if len(cid) <= 6 else "…" + cid[-4:]


class ChannelDelivery:
    """What the WhatsApp channel did with a staff reply, from its outbox records with
    ``ref`` = ``kcc:<message id>`` (channels.inbox). None when there are none (REST
    channel, an action that does not pass the ref on, or no WhatsApp channel)."""

    def __init__(self, db_url: Optional[str]):
        self.db_url = db_url
        self._store = None
        self.available = True  # False: no WhatsApp channel code here (never any records)

    def records(self, ref: str, earlier: Collection[int] = frozenset()) -> Optional[list]:
        """The outbox records of ``ref`` not in ``earlier``; None when the outbox cannot be read."""
        if not self.available:
            return None
        try:
            if self._store is None:
                from channels.inbox import InboxStore

                self._store = InboxStore(self.db_url)
            return [i for i in self._store.outgoing_by_ref(ref) if i.id not in earlier]
        except ImportError:
            self.available = False
        except Exception:  # noqa: BLE001 - the channel's tables are not ours: never fail a reply on them
            logger.exception("could not read the WhatsApp outbox")
        return None

    def conversation_label(self, conversation_id: str) -> str:
        """How the desk names a conversation: :func:`short_conversation`, except for a
        WhatsApp citizen known only by a business-scoped user id (a username, no phone
        number): the username (``profile.username``)."""
        label = short_conversation(conversation_id)
        key = (conversation_id or "").partition("@")[0]
        if not self.available or not re.match(r"^[A-Z]{2}\.[A-Za-z0-9]{1,128}$", key):
            return label
        try:
            if self._store is None:
                from channels.inbox import InboxStore

                self._store = InboxStore(self.db_url)
            identity = self._store.identity_of(key)
        except ImportError:
            self.available = False
            return label
        except Exception:  # noqa: BLE001 - never fail a page on the channel's tables
            logger.exception("could not read the WhatsApp identities")
            return label
        if identity.get("username") and not identity.get("phone"):
            return "@" + identity["username"].lstrip("@")
        return label

    def known(self, ref: str) -> Optional[set]:
        """Outbox ids of earlier attempts with this ref (a retry looks only at its own);
        None when the outbox cannot be read."""
        items = self.records(ref)
        if items is None:
            return None if self.available else set()
        return {i.id for i in items}

    def outcome(self, ref: str, earlier: Collection[int] = frozenset()) -> Optional[Tuple[str, Optional[str]]]:
        return self.judge(self.records(ref, earlier))

    @staticmethod
    def judge(items: Optional[list]) -> Optional[Tuple[str, Optional[str]]]:
        """failed > unknown > deferred > sent; None without records."""
        if not items:
            return None
        failed = [i for i in items if i.status == "failed"]
        if failed:
            code = f" {failed[0].error_code}" if failed[0].error_code else ""
            return "failed", f"WhatsApp{code}: {failed[0].error or 'niet verstuurd'}"[:255]
        if any(i.status not in FINAL_OUTBOX for i in items):  # unknown, pending, sending
            return "unknown", UNKNOWN_TEXT
        if any(i.status == "deferred" for i in items):
            return "deferred", "Buiten het 24-uursvenster van WhatsApp: de inwoner kreeg een sjabloonbericht; dit antwoord volgt zodra die reageert."
        return "sent", None


QUEUE_PAGE_SIZE = 50
QUEUE_SECTION_MAX = 50  # rows per "Dringend" / "Klachten" section
QUEUE_SORTS = {
    "default": "Te laat eerst, dan langst wachtend",
    "oldest": "Oudste eerst",
    "newest": "Nieuwste eerst",
    "sla": "Minste tijd over (belofte)",
}
QUEUE_FILTER_KEYS = ("q", "reason", "municipality", "channel", "language", "claimed", "wait", "sla")


def queue_filters(params: Dict[str, Any]) -> Dict[str, Any]:
    """The queue's GET parameters, checked: unknown values fall back to no filter."""
    def text(key: str, size: int = 64) -> str:
        value = params.get(key)
        if isinstance(value, list):
            value = value[0] if value else ""
        return str(value or "").strip()[:size]

    def number(key: str, default: int = 0) -> int:
        value = text(key, 6)
        return int(value) if value.isdigit() else default

    f: Dict[str, Any] = {
        "tab": "closed" if text("tab") == "closed" else "open",
        "q": text("q", 100),
        "reason": text("reason"),
        "municipality": text("municipality"),
        "channel": text("channel"),
        "language": text("language", 16).lower(),
        "claimed": text("claimed", 128),
        "wait": number("wait"),
        "sla": "late" if text("sla") == "late" else "",
        "sort": text("sort") if text("sort") in QUEUE_SORTS else "default",
        "page": max(1, number("page", 1)),
    }
    f["active"] = any(f[k] for k in QUEUE_FILTER_KEYS)
    return f


def queue_query(f: Dict[str, Any], page: Optional[int] = None) -> str:
    """The query string of a queue view (for page links and live updates)."""
    from urllib.parse import urlencode

    pairs = [(k, f[k]) for k in ("tab",) + QUEUE_FILTER_KEYS + ("sort",)
             if f.get(k) and not (k == "tab" and f[k] == "open") and not (k == "sort" and f[k] == "default")]
    if page and page > 1:
        pairs.append(("page", page))
    return urlencode(pairs)


class DeskService:
    def __init__(self, settings: Settings, handoff: HandoffStore, store: DeskStore, rasa: RasaClient):
        self.settings = settings
        self.handoff = handoff
        self.store = store
        self.rasa = rasa
        self.channel = ChannelDelivery(settings.db_url)

    # ------------------------------------------------------------------ reading
    def is_overdue(self, ticket: Ticket, now: Optional[dt.datetime] = None) -> bool:
        if ticket.flagged and ticket.status == "open":
            return True
        if ticket.status != "open":
            return False
        now = now or utcnow()
        if ticket.in_kcc_hours:
            return now - ticket.created_at >= dt.timedelta(minutes=self.settings.pickup_minutes)
        return ticket.expected_reply_at is not None and now >= ticket.expected_reply_at

    def ticket_summary(self, ticket: Ticket, now: Optional[dt.datetime] = None) -> Dict[str, Any]:
        now = now or utcnow()
        waiting = ((ticket.closed_at or now) - ticket.created_at).total_seconds()
        return {
            "id": ticket.id,
            "conversation": self.channel.conversation_label(ticket.conversation_id),
            "channel": ticket.channel,
            "channel_label": CHANNEL_LABELS.get(ticket.channel, ticket.channel),
            "municipality": ticket.municipality,
            "reason": ticket.reason,
            "reason_label": REASON_LABELS.get(ticket.reason, ticket.reason),
            "summary": ticket.summary,
            "status": ticket.status,
            "status_label": STATUS_LABELS.get(ticket.status, ticket.status),
            "claimed_by": ticket.claimed_by,
            "created_at": iso(ticket.created_at),
            "created_label": local(ticket.created_at).strftime("%d-%m %H:%M"),
            "waiting_seconds": int(waiting),
            "waiting_label": duration_label(waiting),
            "in_kcc_hours": bool(ticket.in_kcc_hours),
            "expected_reply_at": iso(ticket.expected_reply_at),
            "expected_reply_label": local(ticket.expected_reply_at).strftime("%d-%m %H:%M")
            if ticket.expected_reply_at
            else None,
            "overdue": self.is_overdue(ticket, now),
            "flagged": bool(ticket.flagged),
            "outcome": ticket.outcome,
            "outcome_label": OUTCOME_LABELS.get(ticket.outcome or "", ticket.outcome),
            "closed_at": iso(ticket.closed_at),
            "version": ticket.version,
            "urgent": bool(ticket.urgent),
            "language": ticket.language,
            "language_label": language_label(ticket.language),
            # the number itself only on the ticket page (ticket_detail), not in the queue
            "callback_requested": bool(ticket.callback_requested or ticket.callback_number),
        }

    def queue(self, params: Optional[Dict[str, Any]] = None, username: Optional[str] = None) -> Dict[str, Any]:
        """The queue page (and /api/queue): GET parameters as in :data:`QUEUE_SORTS` and
        :meth:`queue_filters`. Urgent tickets and complaints come first in their own
        sections (first page only); the rest is paged, ``QUEUE_PAGE_SIZE`` per page."""
        now = utcnow()
        f = queue_filters(params or {})
        pickup = dt.timedelta(minutes=self.settings.pickup_minutes)
        closed_tab = f["tab"] == "closed"
        claimed = f["claimed"]
        index = self.store.queue_index(
            ["closed"] if closed_tab else list(OPEN_STATES),
            q=f["q"], reason=f["reason"], municipality=f["municipality"], channel=f["channel"],
            language=f["language"],
            unclaimed=claimed == "none",
            claimed_by=(username if claimed == "me" else claimed) if claimed and claimed != "none" else None,
            created_before=now - dt.timedelta(minutes=f["wait"]) if f["wait"] else None,
        )

        def deadline(r: Dict[str, Any]) -> Optional[dt.datetime]:
            if r["status"] == "closed":
                return None
            # as is_overdue: picked up within pickup_minutes in KCC hours, else the promise
            return r["created_at"] + pickup if r["in_kcc_hours"] else r["expected_reply_at"]

        def late(r: Dict[str, Any]) -> bool:
            due = deadline(r)
            return r["status"] == "open" and (bool(r["flagged"]) or (due is not None and now >= due))

        if f["sla"] == "late":
            index = [r for r in index if late(r)]
        far = dt.datetime.max
        sorts = {
            "default": lambda r: (not late(r), r["status"] != "open", r["created_at"]),
            "oldest": lambda r: r["created_at"],
            "newest": lambda r: -(r["closed_at"] or r["created_at"]).timestamp(),
            "sla": lambda r: (deadline(r) or far, r["created_at"]),
        }
        index.sort(key=sorts[f["sort"]])

        sections: List[Dict[str, Any]] = []
        rest = index
        if not closed_tab:
            urgent = [r for r in index if r["urgent"] or r["reason"] == "urgent"]
            urgent_ids = {r["id"] for r in urgent}
            complaints = [r for r in index if r["reason"] == "complaint" and r["id"] not in urgent_ids]
            taken = urgent_ids | {r["id"] for r in complaints}
            rest = [r for r in index if r["id"] not in taken]
            if f["page"] == 1:
                for key, title, rows in (("urgent", "Dringend", urgent), ("complaints", "Klachten", complaints)):
                    if rows:
                        sections.append({"key": key, "title": title, "rows": rows[:QUEUE_SECTION_MAX],
                                         "more": max(0, len(rows) - QUEUE_SECTION_MAX)})
        pages = max(1, -(-len(rest) // QUEUE_PAGE_SIZE))
        page = min(f["page"], pages)
        page_rows = rest[(page - 1) * QUEUE_PAGE_SIZE: page * QUEUE_PAGE_SIZE]
        sections.append({"key": "main", "title": "Gesloten" if closed_tab else ("Overige gesprekken" if sections else ""),
                         "rows": page_rows, "more": 0})

        wanted = [r["id"] for s in sections for r in s["rows"]]
        loaded = self.store.tickets_by_id(wanted)
        for s in sections:
            s["tickets"] = []
            for r in s["rows"]:
                if r["id"] not in loaded:
                    continue
                t = self.ticket_summary(loaded[r["id"]], now)
                due = deadline(r)
                if due is not None:
                    left = (due - now).total_seconds()
                    t["sla_seconds"] = int(left)
                    t["sla_late"] = left <= 0
                    t["sla_label"] = f"{duration_label(-left)} te laat" if left <= 0 else f"nog {duration_label(left)}"
                else:
                    t.update(sla_seconds=None, sla_late=False, sla_label=None)
                t["section"] = s["key"]
                closed_at = loaded[r["id"]].closed_at
                t["closed_label"] = local(closed_at).strftime("%d-%m %H:%M") if closed_at else None
                s["tickets"].append(t)
            del s["rows"]
        tickets = [t for s in sections for t in s["tickets"]]
        version = ";".join(f"{t['id']}:{t['version']}:{int(t['overdue'])}:{t['section']}" for t in tickets)

        if f["active"] or closed_tab:  # the counts at the top are the whole queue's
            everything = self.store.queue_index(list(OPEN_STATES))
        else:
            everything = index
        return {
            "tickets": tickets,
            "sections": [s for s in sections if s["tickets"] or s["key"] == "main"],
            "counts": {
                "open": sum(1 for r in everything if r["status"] == "open"),
                "claimed": sum(1 for r in everything if r["status"] == "claimed"),
                "overdue": sum(1 for r in everything if late(r)),
            },
            "matched": len(index),
            "page": page,
            "pages": pages,
            "page_size": QUEUE_PAGE_SIZE,
            "page_links": [{"page": n, "query": queue_query(f, page=n), "current": n == page}
                           for n in range(1, pages + 1)],
            "filters": f,
            "query": queue_query(f, page=page),  # the live update asks for the same view
            "version": version,
            "server_time": iso(now),
        }

    def queue_choices(self) -> Dict[str, Any]:
        """The values the queue's filter form offers (those that occur in the tickets)."""
        choices = self.store.queue_choices()
        names: Dict[str, str] = {}
        for code in choices["languages"]:
            primary = code.split("-", 1)[0]
            if primary != "nl":
                names.setdefault(primary, language_label(primary) or primary)
        choices["language_options"] = sorted(names, key=lambda c: names[c])
        choices["language_names"] = names
        return choices

    def earlier_tickets(self, ticket_id: int) -> List[Dict[str, Any]]:
        """The citizen's other tickets (same conversation), newest first, for the
        ticket page's "Eerdere gesprekken"."""
        ticket = self.handoff.get(ticket_id, with_messages=False)
        if ticket is None:
            return []
        return [
            {
                "id": t.id,
                "created_label": local(t.created_at).strftime("%d-%m-%Y %H:%M"),
                "reason_label": REASON_LABELS.get(t.reason, t.reason),
                "status": t.status,
                "status_label": STATUS_LABELS.get(t.status, t.status),
                "outcome_label": OUTCOME_LABELS.get(t.outcome or "", t.outcome),
                "summary": t.summary,
            }
            for t in self.store.earlier_tickets(ticket.conversation_id, ticket.id)
        ]

    def require_ticket(self, ticket_id: int) -> Ticket:
        ticket = self.handoff.get(ticket_id, with_messages=True)
        if ticket is None:
            raise DeskError(404, "not_found", "Dit gesprek bestaat niet.")
        return ticket

    def ticket_detail(self, ticket_id: int) -> Dict[str, Any]:
        ticket = self.require_ticket(ticket_id)
        # Replies whose result was not known are looked up again, so they turn into
        # "verzonden" / "niet afgeleverd" by themselves while staff look at the ticket.
        if [m for m in ticket.messages if self._refresh(ticket, m) is not None]:
            ticket = self.require_ticket(ticket_id)
        data = self.ticket_summary(ticket)
        data["callback_number"] = ticket.callback_number
        data["callback_label"] = callback_label(ticket)
        data["transcript"] = [
            {
                "sender": _transcript_sender(item),
                "text": str(item.get("text") or ""),
                "time": _transcript_time(item.get("time") or item.get("timestamp")),
            }
            for item in ticket.transcript
        ]
        data["messages"] = [
            {
                "id": m["id"],
                "author": m["author"],
                "staff_user": m["staff_user"],
                "text": m["text"],
                "created_at": iso(m["created_at"]),
                "time": local(m["created_at"]).strftime("%H:%M") if m["created_at"] else "",
                "delivery": m["delivery"],
                "error": m["error"],
            }
            for m in ticket.messages
        ]
        data["version"] = ticket.version
        return data

    def answers_for(self, municipality: Optional[str]) -> List[Dict[str, Any]]:
        return self.store.list_answers(municipality)

    def save_answer(self, data: Dict[str, Any], user: Dict[str, Any]) -> Dict[str, Any]:
        """Add or change a standard answer (``id`` in ``data``: change that one)."""
        title = str(data.get("title") or "").strip()
        text = str(data.get("text") or "").strip()
        if not title or not text:
            raise DeskError(400, "empty", "Vul een titel en een tekst in.")
        if len(text) > 4000 or len(title) > 120:
            raise DeskError(400, "too_long", "De titel (120) of tekst (4000 tekens) is te lang.")
        answer_id = data.get("id")
        answer_id = int(answer_id) if str(answer_id or "").isdigit() else None
        municipality = str(data.get("municipality") or "").strip() or None
        saved = self.store.save_answer(title, text, user["username"], municipality, answer_id)
        self.store.audit(user["username"], "answer_saved", None, {"answer_id": saved["id"], "title": title})
        return saved

    def delete_answer(self, answer_id: int, user: Dict[str, Any]) -> bool:
        if not self.store.delete_answer(answer_id):
            raise DeskError(404, "not_found", "Dit standaardantwoord bestaat niet.")
        self.store.audit(user["username"], "answer_deleted", None, {"answer_id": answer_id})
        return True

    # ------------------------------------------------------------------ helpers
    def _ensure_mine(
        self, ticket: Ticket, user: Optional[Dict[str, Any]], action: str, override: bool = False
    ) -> Ticket:
        """Staff act on tickets they hold; an unclaimed ticket is claimed on the way.
        ``override``: a reply on a colleague's ticket after "Toch reageren"."""
        if ticket.status not in OPEN_STATES:
            raise DeskError(409, "closed", "Dit gesprek is al gesloten.")
        if user is None:  # the integration acts for the whole webcare team
            return ticket
        name = user["username"]
        if ticket.status == "open":
            if self.handoff.claim(ticket.id, name):
                self.store.audit(name, "claim", ticket.id, {"via": action})
                return self.require_ticket(ticket.id)
            ticket = self.require_ticket(ticket.id)
            if ticket.status not in OPEN_STATES:
                raise DeskError(409, "closed", "Dit gesprek is al gesloten.")
        if ticket.claimed_by != name:
            if action == "reply":
                if not override:
                    raise DeskError(
                        409, "taken_reply",
                        f"Dit gesprek is opgepakt door {ticket.claimed_by}. Je antwoord is niet verstuurd. "
                        "Overleg eerst met je collega, of kies 'Toch reageren' als je zeker weet dat je zelf wilt antwoorden.",
                    )
            elif not can(user, "release_any"):
                raise DeskError(409, "taken", f"Dit gesprek is al opgepakt door {ticket.claimed_by}.")
        return ticket

    # ------------------------------------------------------------------ actions
    def claim(self, ticket_id: int, user: Dict[str, Any]) -> Dict[str, Any]:
        ticket = self.require_ticket(ticket_id)
        name = user["username"]
        if self.handoff.claim(ticket_id, name):
            self.store.audit(name, "claim", ticket_id)
            return {"ok": True, "claimed_by": name}
        ticket = self.require_ticket(ticket_id)
        if ticket.status == "claimed" and ticket.claimed_by == name:
            return {"ok": True, "claimed_by": name}
        self.store.audit(name, "claim_refused", ticket_id, {"claimed_by": ticket.claimed_by, "status": ticket.status})
        if ticket.status == "closed":
            raise DeskError(409, "closed", "Dit gesprek is al gesloten.")
        raise DeskError(409, "taken", f"Dit gesprek is al opgepakt door {ticket.claimed_by}.")

    def assignable(self) -> List[str]:
        """Usernames of the active staff accounts a ticket can be given to."""
        return [u["username"] for u in self.store.list_users() if u["active"] and can(u, "desk")]

    def assign(self, ticket_id: int, assignee: str, user: Dict[str, Any]) -> Dict[str, Any]:
        """A coordinator gives a ticket to a colleague (also one claimed by someone else)."""
        if not can(user, "release_any"):
            raise DeskError(403, "forbidden", "Alleen een coördinator kan een gesprek toewijzen.")
        assignee = (assignee or "").strip()
        if assignee not in self.assignable():
            raise DeskError(400, "assignee", "Kies een collega met een actief account.")
        self.require_ticket(ticket_id)
        previous = self.handoff.assign(ticket_id, assignee)
        if previous is None:
            raise DeskError(409, "closed", "Dit gesprek is al gesloten.")
        if previous != assignee:
            self.store.audit(user["username"], "assign", ticket_id, {"to": assignee, "from": previous or None})
        return {"ok": True, "claimed_by": assignee, "previous": previous or None}

    def release(self, ticket_id: int, user: Dict[str, Any]) -> Dict[str, Any]:
        self.require_ticket(ticket_id)
        name = user["username"]
        if self.handoff.release(ticket_id, None if can(user, "release_any") else name):
            self.store.audit(name, "release", ticket_id)
            return {"ok": True}
        raise DeskError(409, "not_yours", "Je kunt alleen een gesprek vrijgeven dat je zelf hebt opgepakt.")

    def reply(
        self, ticket_id: int, text: str, user: Optional[Dict[str, Any]], actor: Optional[str] = None,
        override: bool = False,
    ) -> Dict[str, Any]:
        text = (text or "").strip()
        if not text:
            raise DeskError(400, "empty", "Typ eerst een antwoord.")
        if len(text) > MAX_TEXT:
            raise DeskError(400, "too_long", f"Een antwoord mag hoogstens {MAX_TEXT} tekens hebben.")
        ticket = self._ensure_mine(self.require_ticket(ticket_id), user, "reply", override=override)
        actor = actor or user["username"]
        if user is not None and ticket.claimed_by and ticket.claimed_by != actor:
            self.store.audit(actor, "reply_override", ticket_id, {"claimed_by": ticket.claimed_by})
        message_id = self.handoff.add_staff_reply(ticket_id, actor, text)
        self.store.audit(actor, "reply", ticket_id, {"message_id": message_id, "chars": len(text)})
        return self._deliver(ticket, message_id, text, actor)

    def retry(self, ticket_id: int, message_id: int, user: Dict[str, Any]) -> Dict[str, Any]:
        """Sends a reply again that surely did not reach the citizen (``failed``).
        Never while it may have arrived (``unknown``, or ``pending`` with its call still
        running): that could give the citizen the same reply twice."""
        ticket = self._ensure_mine(self.require_ticket(ticket_id), user, "retry")
        message = self.handoff.get_message(message_id)
        if not message or message["ticket_id"] != ticket_id or message["author"] != "staff":
            raise DeskError(404, "not_found", "Dit bericht bestaat niet.")
        refreshed = self._refresh(ticket, message)
        if refreshed is not None:
            message = dict(message, delivery=refreshed[0], error=refreshed[1])
        if message["delivery"] in ("sent", "deferred"):
            return {"ok": True, "message_id": message_id, "delivery": message["delivery"]}
        if message["delivery"] != "failed":
            raise DeskError(409, "unknown", RETRY_UNKNOWN_TEXT)
        ref = f"kcc:{message_id}"
        _, earlier = self._attempt(message)
        current = self.channel.records(ref, earlier)
        if current and any(i.status not in FINAL_OUTBOX for i in current):
            # One part failed, another may still arrive: sending all again could double it.
            raise DeskError(409, "unknown", RETRY_UNKNOWN_TEXT)
        seen = self.channel.known(ref)
        if seen is None:
            raise DeskError(
                503, "outbox_unreadable",
                "Het is nu niet na te gaan wat WhatsApp met dit bericht deed. Probeer het zo opnieuw.",
            )
        if not self.store.start_retry(message_id, seen):  # a colleague or a second click was first
            latest = self.handoff.get_message(message_id) or message
            if latest["delivery"] in ("sent", "deferred"):
                return {"ok": True, "message_id": message_id, "delivery": latest["delivery"]}
            raise DeskError(409, "unknown", RETRY_UNKNOWN_TEXT)
        self.store.audit(user["username"], "reply_retry", ticket_id, {"message_id": message_id})
        return self._deliver(ticket, message_id, message["text"], user["username"], earlier=seen)

    def _deliver(
        self, ticket: Ticket, message_id: int, text: str, actor: str, earlier: Optional[set] = None
    ) -> Dict[str, Any]:
        ref = f"kcc:{message_id}"
        if earlier is None:
            earlier = self.channel.known(ref) or set()
        result = self.rasa.send_reply(ticket.conversation_id, text, ref=ref)
        # The WhatsApp channel records (but never raises) what it did, also when Rasa's
        # answer was an error or never came: its records of this attempt come first.
        channel = self.channel.outcome(ref, earlier)
        if channel is not None:
            delivery, error = channel
        elif result.ok:
            delivery, error = "sent", None
        elif result.unanswered:  # the request may have reached Rasa: not known yet
            delivery, error = "unknown", self._unknown_text(ticket)
        else:
            delivery, error = "failed", result.error
        self.handoff.set_delivery(message_id, delivery, error)
        detail = {"message_id": message_id}
        if error:
            detail["error"] = error
        if result.error and result.error != error:
            detail["rasa"] = result.error
        self.store.audit(actor, DELIVERY_ACTIONS.get(delivery, "reply_failed"), ticket.id, detail)
        answer = {"ok": delivery != "failed", "message_id": message_id, "delivery": delivery}
        if error:
            answer["error"] = error
        return answer

    # ------------------------------------------------------------------ delivery not known yet
    def _unknown_text(self, ticket: Ticket) -> str:
        return UNKNOWN_TEXT if ticket.channel == "whatsapp" and self.channel.available else UNANSWERED_TEXT

    def _attempt(self, message: Dict[str, Any]) -> Tuple[dt.datetime, set]:
        """When the latest send attempt of a staff reply started, and the outbox ids of
        the attempts before it."""
        attempt = self.store.reply_attempt(message["id"])
        if attempt is None:
            return message["created_at"], set()
        return attempt["started_at"], attempt["earlier_outbox"]

    def _refresh(self, ticket: Ticket, message: Dict[str, Any]) -> Optional[Tuple[str, Optional[str]]]:
        """Looks up again a staff reply whose result was not known: ``unknown``, or
        ``pending`` although its call to Rasa must have ended (the desk stopped during
        the call). Stores and returns the new (delivery, error); None when unchanged."""
        delivery = message.get("delivery")
        if message.get("author") != "staff" or delivery not in ("unknown", "pending"):
            return None
        now = utcnow()
        call_ended = self.settings.rasa_timeout + CALL_MARGIN
        if delivery == "pending" and (now - message["created_at"]).total_seconds() < call_ended:
            return None  # written moments ago: its call is still running
        started, earlier = self._attempt(message)
        age = (now - started).total_seconds()
        if delivery == "pending" and age < call_ended:
            return None  # a retry whose call is still running
        records = self.channel.records(f"kcc:{message['id']}", earlier)
        outcome = self.channel.judge(records)
        if outcome is None:
            settle = max(self.settings.reply_settle_seconds, call_ended)
            if records is not None and ticket.channel == "whatsapp" and age >= settle:
                # The channel writes its outbox row before it posts to Meta: no row long
                # after the attempt means WhatsApp was never asked to send this reply.
                outcome = ("failed", NEVER_TRIED_TEXT)
            else:
                outcome = ("unknown", self._unknown_text(ticket))
        if outcome == (delivery, message.get("error")):
            return None
        if not self.store.set_delivery_if(message["id"], delivery, *outcome):
            return None  # changed meanwhile (the call ended, another reader refreshed it)
        if outcome[0] != delivery:
            detail = {"message_id": message["id"], "via": "outbox"}
            if outcome[1]:
                detail["error"] = outcome[1]
            self.store.audit("system", DELIVERY_ACTIONS.get(outcome[0], "reply_failed"), ticket.id, detail)
        return outcome

    def note(self, ticket_id: int, text: str, user: Dict[str, Any]) -> Dict[str, Any]:
        text = (text or "").strip()
        if not text:
            raise DeskError(400, "empty", "Typ eerst een notitie.")
        if len(text) > MAX_TEXT:
            raise DeskError(400, "too_long", f"Een notitie mag hoogstens {MAX_TEXT} tekens hebben.")
        self.require_ticket(ticket_id)
        message_id = self.handoff.append_message(ticket_id, "note", text, staff_user=user["username"])
        self.store.audit(user["username"], "note", ticket_id, {"message_id": message_id})
        return {"ok": True, "message_id": message_id}

    def close(
        self,
        ticket_id: int,
        outcome: str,
        user: Optional[Dict[str, Any]],
        actor: Optional[str] = None,
        force: bool = False,
    ) -> Dict[str, Any]:
        outcome = (outcome or "").strip()
        if outcome not in self.settings.outcomes:
            raise DeskError(400, "outcome", "Kies een uitkomst: " + ", ".join(self.settings.outcomes) + ".")
        ticket = self._ensure_mine(self.require_ticket(ticket_id), user, "close")
        actor = actor or user["username"]
        result = self.rasa.close(ticket.conversation_id, outcome)
        if result.ok:
            # The bot's action_close_handoff closed it already; this is a no-op then.
            self.handoff.close(ticket_id, outcome, by=actor)
            self.store.audit(actor, "close", ticket_id, {"outcome": outcome})
            return {"ok": True, "outcome": outcome}
        if force and can(user, "force_close"):
            self.handoff.close(ticket_id, outcome, by=actor)
            self.store.audit(actor, "force_close", ticket_id, {"outcome": outcome, "error": result.error})
            return {"ok": True, "outcome": outcome, "forced": True, "error": result.error}
        self.store.audit(actor, "close_failed", ticket_id, {"outcome": outcome, "error": result.error})
        raise DeskError(
            502,
            "close_failed",
            f"Afsluiten is niet gelukt ({result.error}). Het gesprek staat nog open; probeer het opnieuw.",
        )

    # ------------------------------------------------------------------ periodic
    def flag_overdue(self) -> List[int]:
        ids = self.handoff.flag_overdue(self.settings.pickup_minutes)
        for ticket_id in ids:
            self.store.audit("system", "flagged", ticket_id, {"pickup_minutes": self.settings.pickup_minutes})
        return ids

    # ------------------------------------------------------------------ coordinator
    def key_figures(self, days: int = 30) -> Optional[Dict[str, Any]]:
        """The performance report's key figures of the last ``days`` days (report.metrics);
        None when the tracker store cannot be read."""
        try:
            from report import metrics

            today = local(utcnow()).date()
            return metrics.key_figures(today - dt.timedelta(days=days - 1), today, tickets_url=self.settings.db_url)
        except Exception as exc:  # noqa: BLE001 - the overview must still open
            logger.warning("key figures unavailable (%s)", type(exc).__name__)
            return None

    def overview(self) -> Dict[str, Any]:
        now = utcnow()
        today_start_local = local(now).replace(hour=0, minute=0, second=0, microsecond=0)
        today_start = today_start_local.astimezone(dt.timezone.utc).replace(tzinfo=None)
        open_tickets = [self.ticket_summary(t, now) for t in self.handoff.list(status=list(OPEN_STATES))]
        recent = self.handoff.closed_since(today_start)
        outcomes: Dict[str, int] = {}
        for t in recent:
            outcomes[t.outcome or "?"] = outcomes.get(t.outcome or "?", 0) + 1
        pickup = [
            (t.claimed_at - t.created_at).total_seconds()
            for t in self.handoff.created_since(today_start)
            if t.claimed_at
        ]
        per_staff: Dict[str, int] = {}
        for t in open_tickets:
            if t["claimed_by"]:
                per_staff[t["claimed_by"]] = per_staff.get(t["claimed_by"], 0) + 1
        return {
            "open": sum(1 for t in open_tickets if t["status"] == "open"),
            "claimed": sum(1 for t in open_tickets if t["status"] == "claimed"),
            "overdue": sum(1 for t in open_tickets if t["overdue"]),
            "urgent": sum(1 for t in open_tickets if t["urgent"]),
            "closed_today": len(recent),
            "outcomes_today": [
                {"outcome": k, "label": OUTCOME_LABELS.get(k, k), "count": v} for k, v in sorted(outcomes.items())
            ],
            "avg_pickup_today": duration_label(sum(pickup) / len(pickup)) if pickup else None,
            "claimed_per_staff": [{"user": k, "count": v} for k, v in sorted(per_staff.items())],
            "pickup_minutes": self.settings.pickup_minutes,
            "key_figures": self.key_figures(),
            "webhook": {
                "configured": bool(self.settings.webhook_url),
                "failed": sum(1 for e in self.store.outbox(200) if e["status"] == "failed"),
                "pending": sum(1 for e in self.store.outbox(200) if e["status"] == "pending"),
            },
            "recent_audit": [
                {
                    "at": local(a["at"]).strftime("%d-%m %H:%M:%S"),
                    "actor": a["actor"],
                    "action": a["action"],
                    "action_label": ACTION_LABELS.get(a["action"], a["action"]),
                    "ticket_id": a["ticket_id"],
                }
                for a in self.store.audit_log(limit=30)
            ],
        }


def _transcript_sender(item: Dict[str, Any]) -> str:
    """citizen | staff (a colleague's reply in an earlier handoff) | bot."""
    sender = str(item.get("sender") or item.get("role") or "")
    if sender in ("citizen", "user"):
        return "citizen"
    return "staff" if sender == "staff" else "bot"


def _transcript_time(value: Any) -> str:
    if value in (None, ""):
        return ""
    try:
        if isinstance(value, (int, float)):
            moment = dt.datetime.fromtimestamp(float(value), dt.timezone.utc)
        else:
            moment = dt.datetime.fromisoformat(str(value))
        return local(moment).strftime("%H:%M")
    except (ValueError, OverflowError, OSError):
        return ""
