"""Load and fault test of the production set-up, with real processes on 127.0.0.1.

    python -m tools.loadtest                       # make loadtest: every phase below
    python -m tools.loadtest --faults-only --senders 10 --messages 5

Starts (tests/support/cluster.py): PostgreSQL database ``appcare_load`` (created when missing, its tables
dropped first) as Rasa's SQL tracker store and as ``APPCARE_DB_URL``; the Redis lock
store (own key prefix); Rasa's Pika event broker on RabbitMQ (own queue, deleted
afterwards); two action servers; two ``rasa run`` instances with the same model and
``endpoints.prod.yml``; HAProxy with deploy/haproxy.cfg (Debian's package, installed
with apt-get when missing) in front of the instances and of the action servers; a
fake WhatsApp Graph API that records every read receipt and reply.

Phases, measured in one run so that they compare as ratios (tools/throughput.py):
1. the saturation throughput of the plain REST path of one instance (embedded stores);
2. a fixed offered load (5 messages/s for 120 s) through HAProxy, with its reply latency;
3. the saturation throughput of the WhatsApp production path with two instances;
4. faults: every sender's messages as signed webhooks through HAProxy (a citizen waits
   for the answer most of the time and sometimes types on), Meta-style duplicate
   deliveries (~5 %), rasa-1 drained through HAProxy's runtime API and restarted (a
   zero-downtime upgrade), rasa-2 killed (SIGKILL) and started again, one action
   server restarted (SIGTERM, start). Each sender's last message waits until the
   instances are back, so the restarted instances take traffic again in a short run.

Counting (from what the fake Graph API received, i.e. what citizens saw): a reply
belongs to the message whose read receipt came last for that citizen (the channel
marks a message read when it starts on it). *lost*: a message without any reply;
*doubled*: a message answered in two separate turns; *reordered*: a message whose
first reply came before the first reply of an earlier message of the same
citizen; latency: webhook POST to the first reply. lost/doubled/reordered count every
WhatsApp phase; p50/p95/p99 and msgs_per_s are those of the fault phase.

The last line is exactly:
``lost=N doubled=N reordered=N p50_ms=N p95_ms=N p99_ms=N msgs_per_s=N``
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from appcare import stats
from tests.support.cluster import Cluster, RecordingGraph, signature, text_payload

ROOT = Path(__file__).resolve().parent.parent

# Questions the assistant answers itself (no handoff: the bot would go silent).
PHRASES = [
    "hallo", "goedemorgen", "wat zijn de openingstijden van het gemeentehuis?", "is het gemeentehuis nu open?",
    "hoeveel kost een paspoort?", "hoe lang duurt het aanvragen van een paspoort?",
    "wat moet ik meenemen voor een id-kaart?", "hoe lang is mijn paspoort geldig?",
    "wanneer kan ik mijn paspoort ophalen?", "ik ben mijn paspoort kwijt",
    "hoe vraag ik een id-kaart aan voor mijn kind?", "wat kost trouwen?", "waar kan ik trouwen?",
    "kan ik gratis trouwen?", "hoeveel getuigen heb ik nodig bij het huwelijk?",
    "wat is het verschil tussen trouwen en geregistreerd partnerschap?", "zijn er wegwerkzaamheden?",
    "bedankt!", "dank je wel", "nee",
]


def percentile(values: List[float], p: float) -> float:
    """:func:`appcare.stats.percentile`, 0.0 for no data (the report lines print numbers)."""
    result = stats.percentile(values, p)
    return 0.0 if result is None else result


# -------------------------------------------------------------------------- driver
@dataclass
class Sent:
    wa_id: str
    index: int
    wamid: str
    text: str
    posted: float = 0.0
    acked: float = 0.0
    status: int = 0


@dataclass
class RunResult:
    sent: List[Sent] = field(default_factory=list)
    duplicates: int = 0
    webhook_retries: int = 0
    ack_ms: List[float] = field(default_factory=list)
    kill_at: Optional[float] = None
    back_after: Optional[float] = None
    actions_restart_s: Optional[float] = None
    drain_s: Optional[float] = None
    started: float = 0.0
    finished_sending: float = 0.0
    notes: List[str] = field(default_factory=list)


META_TIMEOUT_S = 20.0  # Meta waits about this long for the 200 of a webhook
META_GIVE_UP_S = 600.0  # Meta retries for days; a run does not wait that long


async def deliver_like_meta(session: Any, url: str, body: bytes, result: "RunResult") -> Tuple[int, float]:
    """POSTs a signed webhook until it is answered 200, as Meta does: a refused or
    unanswered delivery is repeated with back-off (counted in ``webhook_retries``).
    Returns the last status and the time until it was acknowledged (ms)."""
    import aiohttp

    started = time.monotonic()
    status, attempt = 0, 0
    while time.monotonic() - started < META_GIVE_UP_S:
        try:
            async with session.post(url, data=body, headers={
                "Content-Type": "application/json", "X-Hub-Signature-256": signature(body),
            }, timeout=aiohttp.ClientTimeout(total=META_TIMEOUT_S)) as response:
                await response.read()
                status = response.status
                if status == 200:
                    break
        except (aiohttp.ClientError, asyncio.TimeoutError):
            status = 0
        result.webhook_retries += 1
        await asyncio.sleep(min(8.0, 0.5 * 2 ** attempt))
        attempt += 1
    return status, (time.monotonic() - started) * 1000


async def drive(
    cluster: Cluster,
    senders: int,
    messages: int,
    duplicate_rate: float = 0.05,
    kill_fraction: float = 0.4,
    actions_fraction: float = 0.6,
    kill_instance: str = "rasa-2",
    kill_mode: str = "count",
    drain_fraction: float = 0.0,
    drain_instance: str = "rasa-1",
    seed: int = 7,
    deadline_s: float = 1500.0,
    settle_s: float = 180.0,
    progress: Callable[[str], None] = print,
) -> RunResult:
    import aiohttp

    rnd = random.Random(seed)
    result = RunResult(started=time.time())
    total = senders * messages
    base = 31600000000 + rnd.randrange(10_000_000, 90_000_000)
    wa_ids = [str(base + i * 37) for i in range(senders)]
    run = uuid.uuid4().hex[:6].upper()
    counter = {"sent": 0}
    kill_done = asyncio.Event()
    instance_back = asyncio.Event()
    drained = asyncio.Event()  # the drained instance is back (or no drain in this run)
    if drain_fraction <= 0:
        drained.set()
    hold_last = kill_fraction > 0 and messages > 1 and int(total * kill_fraction) <= senders * (messages - 1)
    if not hold_last:
        instance_back.set()
    stop_at = time.monotonic() + deadline_s
    loop = asyncio.get_running_loop()
    background: List[asyncio.Task] = []
    url = cluster.public_url + "/webhooks/whatsapp/webhook"

    async def post(session: aiohttp.ClientSession, body: bytes) -> Tuple[int, float]:
        return await deliver_like_meta(session, url, body, result)

    async def duplicate_later(session: aiohttp.ClientSession, body: bytes) -> None:
        await asyncio.sleep(rnd.uniform(0.3, 6.0))
        status, _ = await post(session, body)
        if status == 200:
            result.duplicates += 1

    def kill_and_restart() -> None:
        moment = "now"
        if kill_mode != "count":
            # Kill at an exact moment of a turn of this instance (RecordingGraph traps).
            cluster.graph.arm(kill_mode, kill_instance, turn_delay=rnd.uniform(0.1, 0.8))
            moment = kill_mode if cluster.graph.trap_hit.wait(90) else f"{kill_mode} (trap not hit in 90 s)"
            result.notes.append(f"kill moment: {moment}")
        result.kill_at = time.time()
        progress(f"[loadtest] killing {kill_instance} (SIGKILL, {moment}) after {counter['sent']} messages; "
                 "starting it again")
        cluster.kill(kill_instance, signal.SIGKILL)
        started = time.monotonic()
        cluster.spawn(kill_instance)
        cluster.wait_instance(kill_instance, 400)
        result.back_after = time.monotonic() - started
        progress(f"[loadtest] {kill_instance} is back after {result.back_after:.0f} s")

    def drain_and_restart() -> None:
        progress(f"[loadtest] draining {drain_instance} through HAProxy's runtime API after {counter['sent']} "
                 "messages (zero-downtime upgrade)")
        try:
            result.drain_s = cluster.drain_and_restart(drain_instance, progress)
        except Exception as exc:  # noqa: BLE001 - reported, and the run goes on
            result.notes.append(f"drain of {drain_instance} FAILED: {str(exc).splitlines()[0]}")
            progress(f"[loadtest] drain of {drain_instance} failed: {exc}")
            return
        progress(f"[loadtest] {drain_instance} upgraded and ready again after {result.drain_s:.0f} s")

    def restart_actions() -> None:
        progress(f"[loadtest] restarting the action server after {counter['sent']} messages")
        result.actions_restart_s = cluster.restart_actions()
        progress(f"[loadtest] action server back after {result.actions_restart_s:.1f} s")

    async def events_watch() -> None:
        kill_after = int(total * kill_fraction) if kill_fraction > 0 else None
        actions_after = int(total * actions_fraction) if actions_fraction > 0 else None
        drain_after = int(total * drain_fraction) if drain_fraction > 0 else None
        while time.monotonic() < stop_at and (kill_after is not None or actions_after is not None
                                              or drain_after is not None):
            # Never both instances away at once: whichever of drain and kill comes second
            # waits until the instance of the first one is back.
            kill_started = kill_after is None and kill_fraction > 0
            drain_started = drain_after is None and drain_fraction > 0
            if (drain_after is not None and counter["sent"] >= drain_after
                    and (not kill_started or instance_back.is_set())):
                drain_after = None
                future = loop.run_in_executor(None, drain_and_restart)
                future.add_done_callback(lambda _f: loop.call_soon_threadsafe(drained.set))
                background.append(asyncio.ensure_future(future))
            if (kill_after is not None and counter["sent"] >= kill_after
                    and (not drain_started or drained.is_set())):
                kill_after = None
                kill_done.set()
                future = loop.run_in_executor(None, kill_and_restart)
                future.add_done_callback(lambda _f: loop.call_soon_threadsafe(instance_back.set))
                background.append(asyncio.ensure_future(future))
            if actions_after is not None and counter["sent"] >= actions_after:
                actions_after = None
                background.append(asyncio.ensure_future(loop.run_in_executor(None, restart_actions)))
            await asyncio.sleep(0.05)

    async def citizen(session: aiohttp.ClientSession, index: int, wa_id: str) -> None:
        await asyncio.sleep(rnd.uniform(0, 2.0))
        texts = [rnd.choice(PHRASES) for _ in range(messages)]
        for k, text in enumerate(texts):
            if time.monotonic() >= stop_at:
                return
            if k == messages - 1 and hold_last:
                # the last message goes out when the killed instance is back
                while not (instance_back.is_set() and drained.is_set()) and time.monotonic() < stop_at:
                    await asyncio.sleep(0.2)
            wamid = f"wamid.LOAD{run}{index:03d}{k:03d}{uuid.uuid4().hex[:8]}"
            cluster.graph.expect(wamid, wa_id)
            body = text_payload(wa_id, text, wamid)
            item = Sent(wa_id, k, wamid, text, posted=time.time())
            result.sent.append(item)
            counter["sent"] += 1
            item.status, ack_ms = await post(session, body)
            item.acked = time.time()
            result.ack_ms.append(ack_ms)
            if rnd.random() < duplicate_rate:
                background.append(asyncio.create_task(duplicate_later(session, body)))
            if rnd.random() < 0.75:  # waits for the answer (bounded), then reads it
                wait_until = time.monotonic() + 30.0
                while not cluster.graph.answered(wamid) and time.monotonic() < min(wait_until, stop_at):
                    await asyncio.sleep(0.1)
                await asyncio.sleep(rnd.uniform(0.3, 2.0))
            else:  # types on
                await asyncio.sleep(rnd.uniform(0.1, 0.8))

    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:
        watcher = asyncio.create_task(events_watch())
        await asyncio.gather(*(citizen(session, i, w) for i, w in enumerate(wa_ids)))
        result.finished_sending = time.time()
        progress(f"[loadtest] all {len(result.sent)} messages sent; waiting for the last answers")
        settle_until = time.monotonic() + settle_s
        while time.monotonic() < min(settle_until, stop_at + settle_s):
            if all(cluster.graph.answered(s.wamid) for s in result.sent):
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(2.0)  # replies still being paced out / doubles arriving late
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await asyncio.gather(*background, return_exceptions=True)
    return result


@dataclass
class Report:
    received: int
    answered: int
    lost: int
    doubled: int
    reordered: int
    p50: float
    p95: float
    p99: float
    throughput: float
    lines: List[str]

    @property
    def last_line(self) -> str:
        return (f"lost={self.lost} doubled={self.doubled} reordered={self.reordered} p50_ms={round(self.p50)} "
                f"p95_ms={round(self.p95)} p99_ms={round(self.p99)} msgs_per_s={self.throughput:.1f}")


def analyse(cluster: Cluster, result: RunResult, senders: int, messages: int) -> Report:
    graph = cluster.graph
    with graph.lock:
        first = dict(graph.first_reply)
        turns = dict(graph.turns)
        unattributed = graph.unattributed
        for detail in graph.unattributed_details:
            print(f"[loadtest] unattributed reply: {detail}", file=sys.stderr, flush=True)
        if graph.refused:
            print(f"[loadtest] the fake Graph API refused {graph.refused} cut-off request(s) (a killed instance)",
                  file=sys.stderr, flush=True)
    received = [s for s in result.sent if s.status == 200]
    answered = [s for s in received if s.wamid in first]
    lost = [s for s in result.sent if s.wamid not in first]  # never answered, acknowledged or not
    twice = graph.delivered_twice()  # a reply message Meta took twice (same outbox row)
    doubled = [s for s in received if turns.get(s.wamid, 0) > 1 or s.wamid in twice]
    reordered = 0
    by_sender: Dict[str, List[Sent]] = {}
    for s in received:
        by_sender.setdefault(s.wa_id, []).append(s)
    for items in by_sender.values():
        items.sort(key=lambda s: s.index)
        latest = 0.0
        for s in items:
            t = first.get(s.wamid)
            if t is None:
                continue
            if t < latest:
                reordered += 1
            latest = max(latest, t)
    latencies = [(first[s.wamid] - s.posted) * 1000 for s in answered]
    end = max(first.values()) if first else time.time()
    span = max(0.001, end - result.started)
    throughput = len(answered) / span
    lines = [
        f"loadtest: {senders} senders x {messages} messages through HAProxy, "
        f"{len(cluster.rasa_ports)} Rasa instances, PostgreSQL tracker + inbox, Redis lock store, RabbitMQ events",
        f"faults: killed rasa-2 (SIGKILL) at {time.strftime('%H:%M:%S', time.localtime(result.kill_at)) if result.kill_at else '-'}"
        f", back after {result.back_after or 0:.0f} s; action server actions-1 restarted in "
        f"{result.actions_restart_s or 0:.1f} s; rasa-1 drained and upgraded in "
        f"{'%.0f s' % result.drain_s if result.drain_s is not None else '-'}",
        f"received: {len(received)} messages (+{result.duplicates} duplicate deliveries, "
        f"{result.webhook_retries} webhook retries); webhook ack p50 {percentile(result.ack_ms, 50):.0f} ms, "
        f"p99 {percentile(result.ack_ms, 99):.0f} ms, max {max(result.ack_ms or [0]):.0f} ms",
        f"answered: {len(answered)}, lost: {len(lost)}, answered twice: {len(doubled)}, out of order: {reordered}, "
        f"unattributed replies: {unattributed}, reply messages taken twice by Meta: {sum(twice.values())}",
        f"reply latency: p50 {percentile(latencies, 50):.0f} ms, p95 {percentile(latencies, 95):.0f} ms, "
        f"p99 {percentile(latencies, 99):.0f} ms, max {max(latencies or [0]):.0f} ms; "
        f"throughput {throughput:.1f} answered msgs/s over {span:.0f} s",
    ]
    lines.extend(result.notes)
    return Report(len(received), len(answered), len(lost), len(doubled), reordered,
                  percentile(latencies, 50), percentile(latencies, 95), percentile(latencies, 99), throughput, lines)


def database_notes(cluster: Cluster) -> List[str]:
    """Cross-check in the channel's tables: unfinished or failed messages and sends."""
    import sqlalchemy as sa

    engine = sa.create_engine(cluster.db_url, future=True)
    try:
        with engine.connect() as conn:
            inbox = dict(conn.execute(sa.text("SELECT status, count(*) FROM whatsapp_inbox GROUP BY status")).all())
            outbox = dict(conn.execute(sa.text("SELECT status, count(*) FROM whatsapp_outbox GROUP BY status")).all())
            errors = dict(conn.execute(sa.text(
                "SELECT coalesce(error, '-'), count(*) FROM whatsapp_outbox WHERE status = 'failed' GROUP BY error"
            )).all())
    except Exception as exc:  # noqa: BLE001
        return [f"database check failed: {type(exc).__name__}"]
    finally:
        engine.dispose()
    note = f"inbox: {json.dumps(inbox, sort_keys=True)}; outbox: {json.dumps(outbox, sort_keys=True)}"
    if errors:
        note += f"; failed sends: {json.dumps(errors, sort_keys=True)}"
    return [note]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.loadtest", description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of messages Meta delivers twice")
    parser.add_argument("--kill-at", type=float, default=0.4, help="kill rasa-2 after this share of messages (0: never)")
    parser.add_argument("--drain-at", type=float, default=0.1,
                        help="drain and restart rasa-1 through HAProxy after this share of messages (0: never)")
    parser.add_argument("--restart-actions-at", type=float, default=0.6, help="restart action server actions-1 (0: never)")
    parser.add_argument("--kill-mode", default="count", choices=("count",) + RecordingGraph.TRAPS,
                        help="when exactly rasa-2 dies: at the message count (count), at a read receipt "
                             "(before_rasa), during a turn, or at a reply send Meta took / that never reached it")
    parser.add_argument("--saturation-users", type=int, default=48,
                        help="citizens in the closed-loop saturation phases (REST and WhatsApp alike; enough that "
                             "the WhatsApp channel's pacing of 1 message/s per citizen does not cap the loop)")
    parser.add_argument("--saturation-seconds", type=float, default=60.0, help="measured window of each saturation phase")
    parser.add_argument("--rate", type=float, default=5.0, help="offered load of the fixed-rate phase (messages/s)")
    parser.add_argument("--rate-seconds", type=float, default=120.0, help="duration of the fixed-rate phase")
    parser.add_argument("--faults-only", action="store_true", help="skip the REST, saturation and fixed-rate phases")
    parser.add_argument("--database", default="appcare_load")
    parser.add_argument("--workdir", default=str(ROOT / "var" / "loadtest"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=1500.0, help="upper bound of the sending phase (s)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    from tools import throughput

    def say(message: str) -> None:
        print(message, flush=True)

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("*.log"):
        old.unlink()
    cluster = Cluster(workdir, database=args.database)
    say(f"[loadtest] starting HAProxy (deploy/haproxy.cfg), 2 Rasa instances and 2 action servers "
        f"(logs in {workdir}); model {cluster.model.name}")
    started = time.monotonic()
    phases: List[Any] = []
    figures: Dict[str, Any] = {}
    try:
        cluster.start()
        say(f"[loadtest] cluster up in {time.monotonic() - started:.0f} s")
        if not args.faults_only:
            warmup = 10.0
            rest = throughput.RestInstance(cluster).start()
            try:
                rest.wait()
                say(f"[loadtest] phase 1: plain REST of one instance, {args.saturation_users} citizens in a closed "
                    f"loop for {args.saturation_seconds:.0f} s")
                phases.append(throughput.rest_saturation(rest, args.saturation_users, warmup, args.saturation_seconds))
            finally:
                rest.stop()
            say(f"[loadtest] phase 2: fixed load of {args.rate:g} messages/s for {args.rate_seconds:.0f} s through HAProxy")
            phases.append(throughput.fixed_rate(cluster, args.rate, args.rate_seconds))
            say(f"[loadtest] phase 3: WhatsApp production path saturated, {args.saturation_users} citizens in a closed "
                f"loop for {args.saturation_seconds:.0f} s")
            phases.append(throughput.whatsapp_saturation(cluster, args.saturation_users, warmup,
                                                         args.saturation_seconds))
        say(f"[loadtest] phase {4 if phases else 1}: faults: {args.senders} senders x {args.messages} messages")
        result = asyncio.run(drive(
            cluster, args.senders, args.messages, args.duplicates, args.kill_at, args.restart_actions_at,
            kill_mode=args.kill_mode, drain_fraction=args.drain_at, seed=args.seed, deadline_s=args.timeout,
            progress=say,
        ))
        result.notes.extend(database_notes(cluster))
        report = analyse(cluster, result, args.senders, args.messages)
        extra = [analyse(cluster, p.result, 0, 0) for p in phases if p.result is not None]
    finally:
        cluster.stop()
    lines = list(report.lines)
    if phases:
        rest_phase, fixed, saturated = phases
        ratio = saturated.answered_per_s / rest_phase.answered_per_s if rest_phase.answered_per_s else 0.0
        p95_fixed = percentile(fixed.latencies_ms, 95)
        figures = {
            "rest_msgs_per_s": round(rest_phase.answered_per_s, 2),
            "whatsapp_saturation_msgs_per_s": round(saturated.answered_per_s, 2),
            "whatsapp_vs_rest": round(ratio, 3),
            "fixed_rate": args.rate, "fixed_rate_answered_per_s": round(fixed.answered_per_s, 2),
            "fixed_rate_p50_ms": round(percentile(fixed.latencies_ms, 50)), "fixed_rate_p95_ms": round(p95_fixed),
        }
        lines += [
            f"saturation, plain REST of 1 instance: {rest_phase.answered_per_s:.1f} answered msgs/s "
            f"(p50 {percentile(rest_phase.latencies_ms, 50):.0f} ms, p95 {percentile(rest_phase.latencies_ms, 95):.0f} ms)",
            f"saturation, WhatsApp via HAProxy with 2 instances: {saturated.answered_per_s:.1f} answered msgs/s "
            f"(p50 {percentile(saturated.latencies_ms, 50):.0f} ms, p95 {percentile(saturated.latencies_ms, 95):.0f} ms)",
            f"ratio WhatsApp/REST: {ratio:.2f} (target >= 0.70: {'met' if ratio >= 0.70 else 'MISSED'})",
            f"plain REST: {rest_phase.cpu}",
            f"WhatsApp: {saturated.cpu}",
            f"fixed load {args.rate:g} msgs/s for {args.rate_seconds:.0f} s: {len(fixed.latencies_ms)} answered, "
            f"reply latency p50 {percentile(fixed.latencies_ms, 50):.0f} ms, p95 {p95_fixed:.0f} ms, "
            f"p99 {percentile(fixed.latencies_ms, 99):.0f} ms (target p95 <= 2000 ms: "
            f"{'met' if p95_fixed <= 2000 else 'MISSED'})",
        ]
        for phase, part in zip([p for p in phases if p.result is not None], extra):
            lines.append(f"{phase.name}: lost {part.lost}, doubled {part.doubled}, reordered {part.reordered} "
                         f"of {part.received} messages")
    lost = report.lost + sum(p.lost for p in extra)
    doubled = report.doubled + sum(p.doubled for p in extra)
    reordered = report.reordered + sum(p.reordered for p in extra)
    for line in lines:
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "senders": args.senders, "messages": args.messages, "received": report.received,
            "answered": report.answered, "lost": lost, "doubled": doubled,
            "reordered": reordered, "p50_ms": round(report.p50), "p95_ms": round(report.p95),
            "p99_ms": round(report.p99), "msgs_per_s": round(report.throughput, 2), **figures, "lines": lines,
        }, indent=2), encoding="utf-8")
    print(f"lost={lost} doubled={doubled} reordered={reordered} p50_ms={round(report.p50)} "
          f"p95_ms={round(report.p95)} p99_ms={round(report.p99)} msgs_per_s={report.throughput:.1f}", flush=True)
    return 0 if lost == 0 and doubled == 0 and reordered == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
