"""Demo data for the performance report: simulated citizens talk to the REAL assistant.

    python -m report.simulate [--out reports/demo] [--conversations 240] [--days 28]
                              [--tracker-db PATH] [--model models/x.tar.gz] [--seed 2026]

What it does, honestly:

1. Starts its own action server (the real ``actions`` package, served by rasa_sdk in
   this module's ``_actions`` sub-command) and its own Rasa server (``rasa run`` with
   the trained model, the REST channel and the HTTP API) on free ports on 127.0.0.1,
   with a temporary endpoints file pointing at a FRESH SQLite tracker store
   (``<out>/tracker.db``, or ``--tracker-db``) and a fresh ticket store
   (``APPCARE_DB_URL=sqlite:///<out>/appcare.db``).
2. Sends scripted, randomised Dutch conversations through the REST channel
   (``/webhooks/rest/webhook`` with metadata ``{"municipality": ..}``): opening hours,
   passport and ID card, marriage, roadworks, follow-ups, greetings, fallbacks,
   handoffs (asked for, personal cases, complaints, other municipal topics, twice not
   understood), thumbs up/down clicks on the feedback question and button clicks on
   clarifying questions. The citizen reacts to what the bot actually answered
   (buttons, questions for an age, document or street). Every event in the tracker
   store and every ticket is produced by Rasa and the real actions.
3. Staff of the KCC handle some tickets like the desk does: claim, reply and close in
   the ticket store, with the reply and the close sent through Rasa's HTTP API
   (``trigger_intent`` EXTERNAL_kcc_reply / EXTERNAL_kcc_close); tickets whose
   simulated reply moment lies in the future stay open.
4. Rasa stamps events with the real time and the REST API cannot set a timestamp. So
   the simulator spreads the conversations over the last ``--days`` days AFTERWARDS:
   per conversation it records the real moment of every request and maps it onto a
   simulated moment (a plausible day and hour, with the citizen's typing time between
   messages and the staff's reply time). After the servers have stopped it rewrites
   the stored timestamps (``events.timestamp`` and the ``timestamp`` in the event's
   JSON; ticket and ticket-message times) with that mapping. Durations measured by
   the servers inside one request (bot reply latency) are kept as they were.
   While a conversation runs, the action server's clock (``APPCARE_NOW``, read by
   ``appcare.clock``) is set to the simulated moment, so answers such as "open now?",
   the KCC-hours check of a handoff and the promised reply time match the
   simulated time. Channel "whatsapp" is simulated by sending the metadata the
   WhatsApp channel would add (``channel``, ``delay_seconds``) through the REST
   channel; the other conversations are plain REST ("Web").

Finally it writes ``<out>/simulation.json`` (period, endpoints file, ticket URL) that
``python -m report --demo`` reads, and stops both servers.
"""
from __future__ import annotations

import argparse
import bisect
import datetime as dt
import json
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional
from zoneinfo import ZoneInfo

import requests

from appcare.ops import processes
from appcare.plugins import live_model
from appcare.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Europe/Amsterdam")
UTC = dt.timezone.utc
BIN = Path(sys.executable).parent
MUNICIPALITIES = {"terneuzen": 0.55, "lelystad": 0.45}
STREETS = {
    "terneuzen": ["Noordstraat", "Nassaustraat", "Serlippensstraat", "Markt"],
    "lelystad": ["Larserdreef", "Stationsdreef", "Houtribweg", "Zuiderzeewijk"],
}


def log(message: str) -> None:
    print(f"[simulate] {message}", flush=True)


# --------------------------------------------------------------------------- scripts

OPENING = [
    "wat zijn de openingstijden", "wat zijn de openingstijden?", "hoe laat is het gemeentehuis morgen open",
    "is het stadhuis nu open?", "openingstijden zaterdag", "wanneer is het stadhuis open",
    "zijn jullie 2e kerstdag open", "hoe laat gaat de balie open op maandag", "Openingstijden gemeente",
    "tot hoe laat zijn jullie vandaag open", "zijn jullie open op koningsdag?",
]
PASSPORT = [
    "wat kost een paspoort", "wat kost een paspoort?", "hoeveel kost een id kaart", "prijs identiteitskaart",
    "hoe vraag ik een paspoort aan", "ik wil een nieuw paspoort", "wat moet ik meenemen voor mijn nieuwe paspoort",
    "hoe lang duurt het voor mijn paspoort klaar is", "ik ben mijn paspoort kwijt", "paspoort kwijt wat nu",
    "kan ik met spoed een paspoort krijgen", "hoe lang is een id kaart geldig", "id kaart voor mijn dochter",
    "wat kost een paspoord", "wanneer kan ik mijn paspoort ophalen",
]
MARRIAGE = [
    "wij willen trouwen hoe werkt dat", "wat kost trouwen", "wat kost trouwen op zaterdag", "kun je gratis trouwen",
    "hoeveel getuigen mag ik hebben", "waar kun je trouwen", "wat is het verschil tussen trouwen en een partnerschap",
    "hoe doe ik de melding voorgenomen huwelijk",
]
ROADWORKS = [
    "is de {street} nog afgesloten", "wegwerkzaamheden", "zijn er werkzaamheden aan de {street}",
    "hoe lang duren de werkzaamheden aan de {street}", "wat is de omleiding bij de {street}",
    "welke wegen zijn dicht",
]
HUMAN = ["ik wil een medewerker spreken", "kan ik met een mens praten", "medewerker graag", "mag ik iemand spreken"]
PERSONAL = [
    "hoe ver is het met mijn aanvraag", "mijn bsn 123456782 staat verkeerd in jullie systeem",
    "is mijn vergunning al goedgekeurd", "ik heb een aanvraag gedaan, wanneer hoor ik iets",
    "kunnen jullie in mijn dossier kijken? bel me op 06-12345678",
]
COMPLAINT = ["ik wil een klacht indienen", "belachelijk hoe lang dit duurt", "ik wil klagen over jullie service",
             "niemand belt terug, dit is toch niet normaal"]
MUNICIPAL_OTHER = [
    "wanneer wordt het grofvuil opgehaald", "hoe geef ik een adreswijziging door", "parkeervergunning aanvragen",
    "hondenbelasting betalen", "lantaarnpaal brandt niet", "ik wil een uittreksel uit het bevolkingsregister",
]
UNCLEAR = [
    "kan mijn kat mee naar binnen", "blablabla", "hmm ik weet het niet zo goed", "vraagje over de kermis",
    "www.google.nl", "asdfgh", "wat vinden jullie van de nieuwe rotonde",
]
OTHER = ["gaat het vanmiddag regenen", "wie wint er zondag", "ben jij een robot?"]
GREET = ["hallo", "hoi", "goedemorgen", "goedemiddag", "hey"]
THANKS = ["bedankt", "dank je wel", "top, dank je", "oke bedankt"]
FOLLOWUP = {
    "opening": ["en zaterdag?", "en morgen?", "en maandag"],
    "passport": ["en voor een id-kaart?", "nee ik bedoel een id-kaart"],
}
WAIT_MESSAGES = ["ok, ik wacht", "dank je, ik wacht wel", "hallo?", "is er al iemand?"]
RETURN = ["laat maar", "ik wacht niet meer", "doe maar weer de bot"]
STAFF_REPLIES = [
    "Goedemiddag, u spreekt met het KCC. Ik kijk even met u mee.",
    "Dank voor uw bericht. Ik heb uw vraag doorgezet naar de juiste afdeling, u hoort binnen twee werkdagen van ons.",
    "Hallo, wat vervelend. Kunt u mij iets meer vertellen?",
]


@dataclass
class Plan:
    kind: str
    first: List[str]
    followups: List[str] = field(default_factory=list)


KINDS = ("opening", "passport", "marriage", "roadworks", "greet_topic", "human", "personal", "complaint",
         "municipal_other", "unclear", "other")


def make_plan(rng: random.Random, municipality: str, kind: Optional[str] = None) -> Plan:
    kinds = [
        ("opening", 20), ("passport", 22), ("marriage", 9), ("roadworks", 9), ("greet_topic", 8),
        ("human", 6), ("personal", 5), ("complaint", 3), ("municipal_other", 6), ("unclear", 7), ("other", 3),
    ]
    kind = kind or rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
    street = rng.choice(STREETS[municipality])
    pick = lambda items: rng.choice(items).replace("{street}", street)  # noqa: E731
    topic_lists = {"opening": OPENING, "passport": PASSPORT, "marriage": MARRIAGE, "roadworks": ROADWORKS}
    if kind in topic_lists:
        plan = Plan(kind, [pick(topic_lists[kind])])
        if kind in FOLLOWUP and rng.random() < 0.3:
            plan.followups.append(pick(FOLLOWUP[kind]))
        if rng.random() < 0.2:
            plan.followups.append(pick(topic_lists[rng.choice(list(topic_lists))]))
        if rng.random() < 0.25:
            plan.followups.append(pick(THANKS))
        return plan
    if kind == "greet_topic":
        topic = rng.choice(list(topic_lists))
        return Plan(topic, [pick(GREET), pick(topic_lists[topic])], [pick(THANKS)] if rng.random() < 0.5 else [])
    table = {"human": HUMAN, "personal": PERSONAL, "complaint": COMPLAINT, "municipal_other": MUNICIPAL_OTHER,
             "unclear": UNCLEAR, "other": OTHER}
    return Plan(kind, [pick(table[kind])])


def sim_start_moment(rng: random.Random, first_day: dt.date, days: int, now: dt.datetime) -> dt.datetime:
    """A plausible local moment: fewer chats at the weekend and at night, peaks in the
    morning, after lunch and in the evening."""
    hour_weights = [1, 0.5, 0.3, 0.2, 0.2, 0.4, 1, 3, 6, 8, 9, 8, 6, 7, 7, 6, 5, 4, 4, 6, 7, 6, 4, 2]
    for _ in range(100):
        day = first_day + dt.timedelta(days=rng.randrange(days))
        weight = 0.45 if day.weekday() >= 5 else 1.0
        if rng.random() > weight:
            continue
        hour = rng.choices(range(24), hour_weights)[0]
        moment = dt.datetime.combine(day, dt.time(hour, rng.randrange(60), rng.randrange(60)), tzinfo=TZ)
        # a nonexistent local time (DST gap) is normalised by a round trip through UTC
        moment = moment.astimezone(UTC).astimezone(TZ)
        if moment < now - dt.timedelta(minutes=30):
            return moment
    return now - dt.timedelta(hours=2)


# --------------------------------------------------------------------------- time mapping


class Timeline:
    """Maps the real moments of one conversation onto simulated moments (step-wise)."""

    def __init__(self) -> None:
        self.real: List[float] = []
        self.sim: List[float] = []

    def mark(self, sim_moment: dt.datetime) -> None:
        self.real.append(time.time())
        self.sim.append(sim_moment.timestamp())

    def map(self, real_ts: float) -> float:
        index = bisect.bisect_right(self.real, real_ts) - 1
        if index < 0:
            index = 0
        return self.sim[index] + (real_ts - self.real[index])

    def map_naive_utc(self, moment: Optional[dt.datetime]) -> Optional[dt.datetime]:
        if moment is None:
            return None
        real_ts = moment.replace(tzinfo=UTC).timestamp()
        return dt.datetime.fromtimestamp(self.map(real_ts), UTC).replace(tzinfo=None)


# --------------------------------------------------------------------------- servers


class Servers:
    """The action server and the Rasa server of one simulation (stopped by their pids)."""

    def __init__(self, out: Path, tracker_db: Path, tickets_url: str, model: Path):
        self.out = out
        self.action_port = free_port()
        self.rasa_port = free_port()
        self.tickets_url = tickets_url
        self.model = model
        self.procs: List[processes.Process] = []
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.endpoints = out / "endpoints.yml"
        self.endpoints.write_text(
            "# Written by `python -m report.simulate`: demo tracker store of the report.\n"
            f"action_endpoint:\n  url: \"http://127.0.0.1:{self.action_port}/webhook\"\n\n"
            f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: \"{tracker_db}\"\n",
            encoding="utf-8",
        )
        self.credentials = out / "credentials.yml"
        self.credentials.write_text("rest:\n", encoding="utf-8")
        self.env = dict(os.environ, APPCARE_DB_URL=tickets_url, RASA_TELEMETRY_ENABLED="false",
                        TF_CPP_MIN_LOG_LEVEL="2", SQLALCHEMY_SILENCE_UBER_WARNING="1", PYTHONUNBUFFERED="1")
        self.env.pop("APPCARE_NOW", None)

    @property
    def rasa_url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    @property
    def action_url(self) -> str:
        return f"http://127.0.0.1:{self.action_port}"

    def _start(self, name: str, cmd: List[str]) -> processes.Process:
        proc = processes.start(cmd, name=name, log=self.logs / f"{name}.log", env=self.env)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        actions = self._start("actions", [sys.executable, "-m", "report.simulate", "_actions",
                                          "--port", str(self.action_port)])
        rasa = self._start("rasa", [
            str(BIN / "rasa"), "run", "--model", str(self.model), "--enable-api", "-i", "127.0.0.1",
            "--port", str(self.rasa_port), "--endpoints", str(self.endpoints),
            "--credentials", str(self.credentials),
        ])
        processes.wait_ready(f"{self.action_url}/health", [actions], 120, ok=lambda r: r.status_code < 500)
        processes.wait_ready(f"{self.rasa_url}/status", [rasa], 300, ok=lambda r: r.status_code < 500)
        status = requests.get(f"{self.rasa_url}/status", timeout=10).json()
        if not status.get("model_file"):
            raise RuntimeError("Rasa started without a model")

    def stop(self) -> None:
        processes.stop(list(reversed(self.procs)), timeout=20)  # process groups: SIGTERM, then SIGKILL
        self.procs.clear()

    # -- requests ---------------------------------------------------------------
    def set_clock(self, moment: Optional[dt.datetime]) -> None:
        response = requests.post(f"{self.action_url}/_sim/now",
                                 json={"now": moment.isoformat() if moment else None}, timeout=10)
        response.raise_for_status()

    def send(self, sender: str, text: str, metadata: Dict[str, Any]) -> List[Dict[str, Any]]:
        response = requests.post(f"{self.rasa_url}/webhooks/rest/webhook",
                                 json={"sender": sender, "message": text, "metadata": metadata}, timeout=60)
        response.raise_for_status()
        return response.json() or []

    def trigger(self, sender: str, intent: str, entities: Dict[str, Any]) -> None:
        response = requests.post(f"{self.rasa_url}/conversations/{sender}/trigger_intent",
                                 params={"output_channel": "latest"},
                                 json={"name": intent, "entities": entities}, timeout=60)
        response.raise_for_status()


def serve_actions(port: int) -> None:
    """The real action server (rasa_sdk + the ``actions`` package) plus one route that
    sets the simulated clock (``APPCARE_NOW``, read by appcare.clock on every call)."""
    from rasa_sdk.endpoint import create_app
    from sanic import response

    app = create_app("actions")

    @app.post("/_sim/now")
    async def set_now(request):  # noqa: ANN001
        value = (request.json or {}).get("now")
        if value:
            os.environ["APPCARE_NOW"] = value
        else:
            os.environ.pop("APPCARE_NOW", None)
        return response.json({"now": value})

    app.run("127.0.0.1", port, workers=1, access_log=False)


# --------------------------------------------------------------------------- one conversation


@dataclass
class ConversationResult:
    sender: str
    timeline: Timeline
    municipality: str
    handed_over: bool
    last_sim: dt.datetime


def _buttons(replies: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [b for r in replies for b in (r.get("buttons") or [])]


def _text(replies: List[Dict[str, Any]]) -> str:
    return " ".join(str(r.get("text") or "") for r in replies)


def run_conversation(servers: Servers, store, rng: random.Random, start: dt.datetime,
                     kind: Optional[str] = None) -> ConversationResult:
    municipality = rng.choices(list(MUNICIPALITIES), list(MUNICIPALITIES.values()))[0]
    whatsapp = rng.random() < 0.75
    sender = f"316{rng.randrange(10**7, 10**8)}" if whatsapp else f"web-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
    plan = make_plan(rng, municipality, kind)
    timeline = Timeline()
    moment = start
    handed_over = False
    queue = list(plan.first) + list(plan.followups)
    misses = 0
    turns = 0
    while queue and turns < 8:
        text = queue.pop(0)
        turns += 1
        metadata: Dict[str, Any] = {"municipality": municipality}
        if whatsapp:
            delay = round(rng.uniform(0.3, 4.0), 3) if rng.random() > 0.01 else round(rng.uniform(3700, 9000), 3)
            metadata.update({"channel": "whatsapp", "delay_seconds": delay})
        servers.set_clock(moment)
        timeline.mark(moment)
        replies = servers.send(sender, text, metadata)
        said = _text(replies)
        buttons = _buttons(replies)
        payloads = [b.get("payload", "") for b in buttons]
        moment += dt.timedelta(seconds=rng.uniform(8, 75))
        if not handed_over and store.open_ticket_for(sender) is not None:
            handed_over = True
            roll = rng.random()
            queue = [rng.choice(WAIT_MESSAGES)] if roll < 0.45 else []
            if 0.45 <= roll < 0.53:
                queue = [rng.choice(RETURN)]
            continue
        if "/feedback_positive" in payloads:
            if rng.random() < 0.55:
                queue.insert(0, "/feedback_positive" if rng.random() < 0.78 else "/feedback_negative")
            continue
        if "/request_human" in payloads and "begreep" in said:  # clarifying question with buttons
            misses += 1
            roll = rng.random()
            topic_buttons = [p for p in payloads if p != "/request_human"]
            if roll < 0.5 and topic_buttons:
                queue.insert(0, topic_buttons[0])
            elif roll < 0.7:
                queue.insert(0, "/request_human")
            else:
                queue.insert(0, rng.choice(UNCLEAR))
            continue
        if "opnieuw stellen" in said or "Welke dag bedoel je" in said:
            queue.insert(0, rng.choice(OPENING + PASSPORT))
            continue
        if "paspoort of een ID-kaart" in said and payloads:
            queue.insert(0, rng.choice(payloads))
            continue
        if "Hoe oud is" in said:
            queue.insert(0, rng.choice(["35", "ze is 12", "45 jaar", "17", "mijn zoon is 8"]))
            continue
        if "Over welke straat" in said:
            queue.insert(0, rng.choice(STREETS[municipality]))
            continue
    return ConversationResult(sender, timeline, municipality, handed_over, moment)


def handle_ticket(servers: Servers, store, rng: random.Random, result: ConversationResult, now: dt.datetime) -> str:
    """Staff of the KCC claim, answer and close the ticket like the desk does."""
    from appcare import content, opening_hours

    ticket = store.open_ticket_for(result.sender)
    if ticket is None:
        return "no open ticket"
    created = result.timeline.map_naive_utc(ticket.created_at).replace(tzinfo=UTC).astimezone(TZ)
    if ticket.in_kcc_hours:
        claim_at = created + dt.timedelta(minutes=rng.lognormvariate(1.8, 0.7))
    else:
        opening = opening_hours.next_opening(content.load(result.municipality), "kcc", created) or created
        claim_at = opening + dt.timedelta(minutes=rng.uniform(2, 55))
    reply_at = claim_at + dt.timedelta(minutes=rng.uniform(0.5, 6))
    close_at = reply_at + dt.timedelta(minutes=rng.lognormvariate(2.3, 0.8))
    if rng.random() < 0.07 or reply_at >= now:
        return "left open"
    staff = rng.choice(["anja.kcc", "mohamed.kcc", "petra.kcc"])
    result.timeline.mark(claim_at)
    store.claim(ticket.id, staff)
    result.timeline.mark(reply_at)
    servers.set_clock(reply_at)
    reply_text = rng.choice(STAFF_REPLIES)
    message_id = store.add_staff_reply(ticket.id, staff, reply_text)
    servers.trigger(result.sender, "EXTERNAL_kcc_reply", {"kcc_text": reply_text})
    store.set_delivery(message_id, "sent")
    if close_at >= now or rng.random() < 0.06:
        return "answered"
    result.timeline.mark(close_at)
    servers.set_clock(close_at)
    servers.trigger(result.sender, "EXTERNAL_kcc_close",
                    {"kcc_outcome": rng.choice(["beantwoord", "beantwoord", "beantwoord", "doorverwezen"])})
    return "closed"


# --------------------------------------------------------------------------- time shift


def shift_events(tracker_db: Path, timelines: Dict[str, Timeline]) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tracker_db}", future=True)
    events = sa.table("events", sa.column("id", sa.Integer), sa.column("sender_id", sa.String),
                      sa.column("timestamp", sa.Float), sa.column("data", sa.Text))
    changed = 0
    with engine.begin() as connection:
        for sender, timeline in timelines.items():
            rows = connection.execute(
                sa.select(events.c.id, events.c.timestamp, events.c.data).where(events.c.sender_id == sender)
            ).all()
            for row in rows:
                new_ts = timeline.map(row.timestamp)
                data = json.loads(row.data) if row.data else {}
                data["timestamp"] = new_ts
                connection.execute(sa.update(events).where(events.c.id == row.id)
                                   .values(timestamp=new_ts, data=json.dumps(data)))
                changed += 1
    engine.dispose()
    return changed


def shift_tickets(store, timelines: Dict[str, Timeline]) -> int:
    from appcare.handoff_store import TicketMessageRow, TicketRow
    from sqlalchemy import select

    changed = 0
    with store._session.begin() as session:  # noqa: SLF001 - demo data only
        for ticket in session.execute(select(TicketRow)).scalars():
            timeline = timelines.get(ticket.conversation_id)
            if timeline is None:
                continue
            for column in ("created_at", "claimed_at", "first_staff_reply_at", "closed_at"):
                setattr(ticket, column, timeline.map_naive_utc(getattr(ticket, column)))
            for message in session.execute(
                select(TicketMessageRow).where(TicketMessageRow.ticket_id == ticket.id)
            ).scalars():
                message.created_at = timeline.map_naive_utc(message.created_at)
            changed += 1
    return changed


# --------------------------------------------------------------------------- main


def _fresh(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            candidate.unlink()


def simulate(out: Path, conversations: int, days: int, seed: int, tracker_db: Optional[Path] = None,
             model: Optional[Path] = None, now: Optional[dt.datetime] = None,
             kinds: Optional[List[str]] = None) -> Dict[str, Any]:
    """Runs the simulation (see the module docstring); ``kinds`` forces the scenario of
    the first conversations (names in ``KINDS``), the rest are drawn at random."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    tracker_db = (tracker_db or out / "tracker.db").resolve()
    tickets_db = out / "appcare.db"
    _fresh(tracker_db)
    _fresh(tickets_db)
    model = model or live_model.served(ROOT / "models")
    if model is None or not Path(model).exists():
        raise SystemExit("[simulate] no trained model in models/: run `make train` first")
    now = (now or dt.datetime.now(TZ)).astimezone(TZ)
    last_day = now.date() - dt.timedelta(days=1)
    first_day = last_day - dt.timedelta(days=days - 1)
    tickets_url = f"sqlite:///{tickets_db}"
    rng = random.Random(seed)
    servers = Servers(out, tracker_db, tickets_url, Path(model))
    log(f"model {Path(model).name}; starting action server :{servers.action_port} and Rasa :{servers.rasa_port} "
        f"(about a minute)")
    started = time.monotonic()
    timelines: Dict[str, Timeline] = {}
    outcomes: Dict[str, int] = {}
    from appcare.handoff_store import HandoffStore

    store = HandoffStore(tickets_url)
    try:
        servers.start()
        log(f"servers ready after {time.monotonic() - started:.0f} s; {conversations} conversations "
            f"spread over {first_day} .. {last_day}")
        starts = sorted(sim_start_moment(rng, first_day, days, now) for _ in range(conversations))
        forced = list(kinds or [])
        for index, start in enumerate(starts, 1):
            result = run_conversation(servers, store, rng, start, forced.pop(0) if forced else None)
            timelines[result.sender] = result.timeline
            if result.handed_over:
                outcome = handle_ticket(servers, store, rng, result, now)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if index % 25 == 0:
                log(f"{index}/{conversations} conversations")
        servers.set_clock(None)
    finally:
        servers.stop()
    events = shift_events(tracker_db, timelines)
    tickets = shift_tickets(store, timelines)
    info = {
        "from": first_day.isoformat(),
        "to": last_day.isoformat(),
        "endpoints": str(servers.endpoints),
        "tickets_url": tickets_url,
        "tracker_db": str(tracker_db),
        "conversations": conversations,
        "senders": len(timelines),
        "events": events,
        "tickets": tickets,
        "staff_handling": outcomes,
        "seed": seed,
        "model": Path(model).name,
        "simulated_at": now.isoformat(),
        "note": "Simulated conversations through the real assistant; timestamps shifted afterwards "
                "(see report/simulate.py).",
    }
    (out / "simulation.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    log(f"done in {time.monotonic() - started:.0f} s: {len(timelines)} conversations, {events} events, "
        f"{tickets} tickets ({outcomes}); {out / 'simulation.json'}")
    return info


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_actions"]:
        parser = argparse.ArgumentParser(prog="python -m report.simulate _actions")
        parser.add_argument("_actions")
        parser.add_argument("--port", type=int, required=True)
        serve_actions(parser.parse_args(argv).port)
        return 0
    parser = argparse.ArgumentParser(prog="python -m report.simulate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports/demo", help="directory for the demo stores (reports/demo)")
    parser.add_argument("--tracker-db", default=None, help="SQLite tracker store to fill (default <out>/tracker.db)")
    parser.add_argument("--conversations", type=int, default=240)
    parser.add_argument("--days", type=int, default=28, help="spread over this many days, ending yesterday")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--model", default=None, help="trained model (default: the one `make run` serves)")
    args = parser.parse_args(argv)
    try:
        simulate(Path(args.out), args.conversations, args.days, args.seed,
                 Path(args.tracker_db) if args.tracker_db else None, Path(args.model) if args.model else None)
    except RuntimeError as exc:
        print(f"[simulate] failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
