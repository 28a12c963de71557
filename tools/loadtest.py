"""Load and fault test of the production set-up, with real processes on 127.0.0.1.

    python -m tools.loadtest                       # make loadtest: every phase below
    python -m tools.loadtest --faults-only --senders 10 --messages 5

Starts: PostgreSQL database ``appcare_load`` (created when missing, its tables
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
import hashlib
import hmac
import json
import os
import queue
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from appcare import stats
from appcare.ops import processes
from appcare.plugins import live_model
from appcare.ports import free_port
from tools.haproxy import HAProxy

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

APP_SECRET = "loadtest-app-secret-" + "0123456789abcdef"  # test values, long enough for production mode
VERIFY_TOKEN = "loadtest-verify-token"
ACCESS_TOKEN = "loadtest-access-token-0123456789"
PNID_TERNEUZEN = "1000000001"
PNID_LELYSTAD = "1000000002"
TENANTS = f"{PNID_TERNEUZEN}:terneuzen,{PNID_LELYSTAD}:lelystad"

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


def latest_model() -> Path:
    """The model `make run` would serve (appcare.plugins.live_model.served)."""
    model = live_model.served(ROOT / "models")
    if model is None:
        raise SystemExit("no trained model in models/: run `make train` first")
    return model


def percentile(values: List[float], p: float) -> float:
    """:func:`appcare.stats.percentile`, 0.0 for no data (the report lines print numbers)."""
    result = stats.percentile(values, p)
    return 0.0 if result is None else result


# ------------------------------------------------------------------ fake Graph API
class RecordingGraph:
    """Fake Graph API: answers every send with a wamid and attributes replies to the
    message whose read receipt came last for that citizen.

    Like Meta it reports on every message it took with signed status webhooks
    (``sent``, ``delivered``) to ``status_url``, echoing ``biz_opaque_callback_data``
    and retrying a webhook that is not answered 200. Each instance reaches it under
    its own path prefix (``/i/<instance>/...``), so a *trap* can stop one instance at
    an exact moment for a kill: at a read receipt (before Rasa), some time after one
    (during the turn), or at a reply send that Meta took (``send_accepted``) or that
    never reached Meta (``send_lost``)."""

    TRAPS = ("before_rasa", "during_turn", "send_accepted", "send_lost")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sender_of: Dict[str, str] = {}  # inbound wamid -> wa_id
        self.current: Dict[str, Optional[str]] = {}  # wa_id -> wamid being answered
        self.receipts: Dict[str, int] = {}
        self.turns: Dict[str, int] = {}  # receipts followed by at least one reply
        self.replies: Dict[str, int] = {}
        self.first_reply: Dict[str, float] = {}
        self.texts: Dict[str, List[str]] = {}  # wa_id -> reply texts, in order
        self.paths: Dict[str, List[str]] = {}  # wa_id -> request paths (which business number sent it)
        self.reply_bodies: Dict[str, List[str]] = {}  # inbound wamid -> reply bodies
        self.callbacks: Dict[str, int] = {}  # biz_opaque_callback_data -> times taken (>1: citizen got it twice)
        self.callback_owner: Dict[str, str] = {}  # biz_opaque_callback_data -> inbound wamid
        self.unattributed = 0
        self.requests = 0
        self.status_url: Optional[str] = None
        self.app_secret = APP_SECRET
        self.status_failures = 0
        self._status_queue: "queue.Queue[Tuple[bytes, float]]" = queue.Queue()
        self._since_receipt: Dict[str, bool] = {}
        self._ids = 0
        self._trap: Optional[Dict[str, Any]] = None
        self.trap_hit = threading.Event()
        self._held = threading.Event()  # released when the run ends
        graph = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw.decode("utf-8")) if raw else {}
                except ValueError:
                    body = {}
                body = body if isinstance(body, dict) else {}
                trap = graph._spring(body, self.path)
                if trap == "send_lost" or trap == "before_rasa":
                    graph._held.wait(120)  # the instance is killed meanwhile; nothing recorded
                    self.close_connection = True
                    return
                answer = graph.record(body, self.path)
                if trap == "send_accepted":
                    graph._held.wait(120)  # Meta took it; the answer never reaches the instance
                    self.close_connection = True
                    return
                data = json.dumps(answer).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                if not isinstance(sys.exc_info()[1], (ConnectionError, OSError)):
                    super().handle_error(request, client_address)  # a killed instance resets its connections

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-graph", daemon=True)
        self._status_thread = threading.Thread(target=self._post_statuses, name="fake-graph-status", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url_for(self, instance: str) -> str:
        return f"{self.url}/i/{instance}"

    def start(self) -> "RecordingGraph":
        self.thread.start()
        self._status_thread.start()
        return self

    def stop(self) -> None:
        self._held.set()
        self._status_queue.put((b"", 0.0))
        self.server.shutdown()
        self.server.server_close()

    def expect(self, wamid: str, wa_id: str) -> None:
        with self.lock:
            self.sender_of[wamid] = wa_id

    # ----------------------------------------------------------------- traps
    def arm(self, kind: str, instance: str, turn_delay: float = 0.4) -> None:
        """The next matching request of ``instance`` sets :attr:`trap_hit` (and is
        held, see the class docstring): the driver then kills that instance."""
        if kind not in self.TRAPS:
            raise ValueError(f"unknown trap {kind!r}; one of {', '.join(self.TRAPS)}")
        with self.lock:
            self.trap_hit.clear()
            self._trap = {"kind": kind, "instance": instance, "delay": turn_delay}

    def _spring(self, body: Dict[str, Any], path: str) -> Optional[str]:
        with self.lock:
            trap = self._trap
            if trap is None or not path.startswith(f"/i/{trap['instance']}/"):
                return None
            is_read = body.get("status") == "read"
            kind = trap["kind"]
            if is_read and kind not in ("before_rasa", "during_turn"):
                return None
            if not is_read and kind in ("before_rasa", "during_turn"):
                return None
            if is_read and self.sender_of.get(str(body.get("message_id") or "")) is None:
                return None
            self._trap = None
        if kind == "during_turn":
            threading.Timer(trap["delay"], self.trap_hit.set).start()
            return None
        self.trap_hit.set()
        return kind

    # ------------------------------------------------------------- recording
    def record(self, body: Dict[str, Any], path: str = "") -> Dict[str, Any]:
        now = time.time()
        with self.lock:
            self.requests += 1
            if body.get("status") == "read":
                wamid = str(body.get("message_id") or "")
                wa_id = self.sender_of.get(wamid)
                if wa_id is not None:
                    self.current[wa_id] = wamid
                    self.receipts[wamid] = self.receipts.get(wamid, 0) + 1
                    self._since_receipt[wa_id] = False
                return {"success": True}
            to = str(body.get("to") or body.get("recipient") or "")
            text = _text_of(body)
            self.texts.setdefault(to, []).append(text)
            self.paths.setdefault(to, []).append(path)
            wamid = self.current.get(to)
            callback = str(body.get("biz_opaque_callback_data") or "")
            if callback:
                self.callbacks[callback] = self.callbacks.get(callback, 0) + 1
                if wamid is not None:
                    self.callback_owner.setdefault(callback, wamid)
            if wamid is None:
                self.unattributed += 1
            else:
                if not self._since_receipt.get(to):
                    self._since_receipt[to] = True
                    self.turns[wamid] = self.turns.get(wamid, 0) + 1
                self.replies[wamid] = self.replies.get(wamid, 0) + 1
                self.first_reply.setdefault(wamid, now)
                self.reply_bodies.setdefault(wamid, []).append(text)
            self._ids += 1
            out_id = f"wamid.OUT{self._ids:08d}"
        if self.status_url:
            pnid = pnid_of_path(path)
            for status in ("sent", "delivered"):
                self._status_queue.put((status_payload(out_id, to, pnid, status, callback or None), time.monotonic()))
        return {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": out_id}]}

    def _post_statuses(self) -> None:
        """Delivers status webhooks, each retried until answered 200 (as Meta does,
        with a shorter horizon), several at a time: one slow webhook never holds up
        the reports of other messages."""
        from concurrent.futures import ThreadPoolExecutor

        import requests

        def deliver(body: bytes) -> None:
            for attempt in range(20):
                try:
                    answer = requests.post(self.status_url or "", data=body, timeout=10, headers={
                        "Content-Type": "application/json", "X-Hub-Signature-256": signature(body, self.app_secret),
                    })
                    if answer.status_code == 200:
                        return
                except requests.RequestException:
                    pass
                with self.lock:
                    self.status_failures += 1
                if self._held.is_set():
                    return
                time.sleep(min(5.0, 0.2 * 2 ** attempt))

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="fake-graph-status") as pool:
            while True:
                body, _queued = self._status_queue.get()
                if not body:
                    return
                pool.submit(deliver, body)

    def replies_for(self, wa_id: str) -> List[str]:
        with self.lock:
            return list(self.texts.get(wa_id, []))

    def answered(self, wamid: str) -> bool:
        with self.lock:
            return wamid in self.first_reply

    def delivered_twice(self) -> Dict[str, int]:
        """Inbound wamid -> how many of its reply messages Meta took more than once."""
        with self.lock:
            doubled: Dict[str, int] = {}
            for callback, count in self.callbacks.items():
                if count > 1:
                    owner = self.callback_owner.get(callback, "?")
                    doubled[owner] = doubled.get(owner, 0) + 1
            return doubled


def _text_of(body: Dict[str, Any]) -> str:
    kind = body.get("type")
    if kind == "text":
        return str((body.get("text") or {}).get("body") or "")
    if kind == "interactive":
        inner = body.get("interactive") or {}
        return str((inner.get("body") or {}).get("text") or "")
    return json.dumps(body.get(kind) or {}, ensure_ascii=False)[:200]


# ---------------------------------------------------------------------- payloads
def text_payload(wa_id: str, text: str, wamid: str, pnid: str = PNID_TERNEUZEN, name: str = "Load Test",
                 ts: Optional[int] = None) -> bytes:
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "31850000000", "phone_number_id": pnid},
                    "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                    "messages": [{"from": wa_id, "id": wamid, "timestamp": str(int(ts or time.time())),
                                  "type": "text", "text": {"body": text}}],
                },
            }],
        }],
    }
    return json.dumps(payload).encode("utf-8")


def status_payload(wamid: str, recipient: str, pnid: str, status: str = "sent",
                   callback_data: Optional[str] = None, ts: Optional[int] = None) -> bytes:
    """A status webhook as Meta sends it for one of our messages; ``callback_data``
    is the ``biz_opaque_callback_data`` of the send, echoed."""
    # A citizen without a phone number is addressed by BSUID ("NL.1349..."): Meta's status
    # then carries recipient_user_id instead of recipient_id.
    who = {"recipient_user_id": recipient} if "." in recipient else {"recipient_id": recipient}
    item: Dict[str, Any] = {
        "id": wamid, "status": status, "timestamp": str(int(ts or time.time())), **who,
        "pricing": {"billable": True, "pricing_model": "PMP", "category": "service", "type": "free_customer_service"},
    }
    if callback_data:
        item["biz_opaque_callback_data"] = callback_data
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "31850000000", "phone_number_id": pnid},
            "statuses": [item],
        }}]}],
    }
    return json.dumps(payload).encode("utf-8")


def pnid_of_path(path: str) -> str:
    """The business number id of a Graph API path ``.../{phone_number_id}/messages``."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    return parts[-2] if len(parts) >= 2 else ""


def signature(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------------- cluster
def ensure_database(name: str, host: str = "127.0.0.1", port: int = 5432, user: str = "postgres",
                    fresh: bool = True) -> None:
    """Creates database ``name`` when missing and (``fresh``) drops its tables."""
    import psycopg2

    conn = psycopg2.connect(host=host, port=port, user=user, dbname="test")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    if fresh:
        conn = psycopg2.connect(host=host, port=port, user=user, dbname=name)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("DROP SCHEMA IF EXISTS public CASCADE")
                cur.execute("CREATE SCHEMA public")
        finally:
            conn.close()


def drop_database(name: str, host: str = "127.0.0.1", port: int = 5432, user: str = "postgres") -> None:
    """Drops a test database (its processes must have stopped)."""
    import psycopg2

    try:
        conn = psycopg2.connect(host=host, port=port, user=user, dbname="test")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001
        print(f"[loadtest] could not drop database {name} ({type(exc).__name__})", file=sys.stderr)


async def _rabbit(queue: str, delete: bool, host: str = "127.0.0.1", port: int = 5672) -> None:
    import aio_pika

    connection = await aio_pika.connect(host=host, port=port, login="guest", password="guest", timeout=5)
    async with connection:
        channel = await connection.channel()
        if delete:
            await channel.queue_delete(queue, if_unused=False, if_empty=False)


def delete_queue(queue: str) -> None:
    try:
        asyncio.run(_rabbit(queue, True))
    except Exception as exc:  # noqa: BLE001
        print(f"[loadtest] could not delete RabbitMQ queue {queue} ({type(exc).__name__})", file=sys.stderr)


@dataclass
class Proc:
    name: str
    cmd: List[str]
    env: Dict[str, str]
    popen: Optional[subprocess.Popen] = None


class Cluster:
    """The production topology as local processes (see module docstring): HAProxy with
    deploy/haproxy.cfg in front of ``instances`` Rasa instances and two action servers."""

    ACTION_SERVERS = 2  # deploy/haproxy.cfg balances two action servers

    def __init__(
        self,
        workdir: Path,
        database: str = "appcare_load",
        instances: int = 2,
        pg_port: int = 5432,
        redis_port: int = 6379,
        queue: Optional[str] = None,
        log_format: str = "json",
        extra_env: Optional[Dict[str, str]] = None,
        model: Optional[Path] = None,
    ) -> None:
        if instances != 2:
            raise ValueError("deploy/haproxy.cfg names two Rasa instances")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.database = database
        self.pg_port = pg_port
        self.redis_port = redis_port
        self.run_id = uuid.uuid4().hex[:8]
        self.queue = queue or f"appcare_load_{self.run_id}"
        self.graph = RecordingGraph()
        self.model = model or latest_model()
        # Production mode (APPCARE_ENV=production) with this run's own strong secrets:
        # every component checks them at start-up, as in a real installation.
        self.secrets = {
            "APPCARE_PSEUDONYM_KEY": secrets.token_hex(32), "ACTION_SERVER_TOKEN": secrets.token_urlsafe(32),
            "RASA_JWT_SECRET": secrets.token_urlsafe(32),
        }
        self._choose_ports(instances)
        self.procs: Dict[str, Proc] = {}
        self.haproxy: Optional[HAProxy] = None
        self.log_format = log_format
        self.extra_env = extra_env or {}

    def _choose_ports(self, instances: int) -> None:
        self.public_port, self.internal_port, self.lb_actions_port, self.stats_port = (free_port() for _ in range(4))
        self.action_ports = [free_port() for _ in range(self.ACTION_SERVERS)]
        self.rasa_ports = [free_port() for _ in range(instances)]

    # -------------------------------------------------------------- settings
    @property
    def db_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{self.database}"

    @property
    def public_url(self) -> str:
        """HAProxy's public listener: Meta's webhook only."""
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def internal_url(self) -> str:
        """HAProxy's internal listener: Rasa's HTTP API for the desk."""
        return f"http://127.0.0.1:{self.internal_port}"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.stats_port}"

    def instance_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.rasa_ports[int(name.split('-')[1]) - 1]}"

    def action_url(self, name: str = "actions-1") -> str:
        return f"http://127.0.0.1:{self.action_ports[int(name.split('-')[1]) - 1]}"

    def base_env(self, component: str) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "APPCARE_"))}
        env.update({
            "TF_CPP_MIN_LOG_LEVEL": "2", "RASA_TELEMETRY_ENABLED": "false", "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
            "PYTHONWARNINGS": "ignore", "LOG_LEVEL": "INFO",
            "APPCARE_LOG_FORMAT": self.log_format, "APPCARE_COMPONENT": component,
            "APPCARE_DB_URL": self.db_url,
            "ACTION_ENDPOINT_URL": f"http://127.0.0.1:{self.lb_actions_port}/webhook",  # through HAProxy
            "DB_HOST": "127.0.0.1", "DB_PORT": str(self.pg_port), "DB_NAME": self.database,
            "DB_USER": "postgres", "DB_PASSWORD": "",
            "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(self.redis_port), "REDIS_PASSWORD": "", "REDIS_DB": "3",
            "REDIS_KEY_PREFIX": f"load{self.run_id}",
            "RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": "5672", "RABBITMQ_USERNAME": "guest",
            "RABBITMQ_PASSWORD": "guest", "RABBITMQ_QUEUE": self.queue, "RABBITMQ_EXCHANGE": f"appcare-{self.run_id}",
            "TICKET_LOCK_LIFETIME": "10", "APPCARE_ENV": "production", **self.secrets,
            "WHATSAPP_ACCESS_TOKEN": ACCESS_TOKEN, "WHATSAPP_PHONE_NUMBER_ID": PNID_TERNEUZEN,
            "WHATSAPP_APP_SECRET": APP_SECRET, "WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN,
            # each instance under its own path, so a trap can stop one of them (RecordingGraph)
            "WHATSAPP_GRAPH_URL": self.graph.url_for(component) if component.startswith("rasa-") else self.graph.url,
            "WHATSAPP_TENANTS": TENANTS,
            "WHATSAPP_LEASE_SECONDS": "10", "WHATSAPP_SWEEP_INTERVAL": "3", "WHATSAPP_STALE_AFTER": "10",
        })
        env.update(self.extra_env)
        return env

    def _define(self) -> None:
        credentials = ROOT / "credentials.prod.yml"  # WhatsApp only, as in production
        logging_file = str(ROOT / "deploy" / "logging.yml")
        for i, port in enumerate(self.action_ports):
            name = f"actions-{i + 1}"
            self.procs[name] = Proc(name, [
                sys.executable, "-m", "appcare.plugins.action_server", "--port", str(port), "--interface", "127.0.0.1",
            ], self.base_env(name))
        for i, port in enumerate(self.rasa_ports):
            name = f"rasa-{i + 1}"
            env = self.base_env(name)
            env["APPCARE_INSTANCE_ID"] = name
            self.procs[name] = Proc(name, [
                str(BIN / "rasa"), "run", "--enable-api", "--port", str(port), "--model", str(self.model),
                "--interface", "127.0.0.1", f"--jwt-secret={self.secrets['RASA_JWT_SECRET']}", "--jwt-method", "HS256",
                "--endpoints", str(ROOT / "endpoints.prod.yml"), "--credentials", str(credentials),
                "--logging-config-file", logging_file,
            ], env)
        addresses = {
            "APPCARE_PUBLIC_BIND": f"127.0.0.1:{self.public_port}",
            "APPCARE_INTERNAL_BIND": f"127.0.0.1:{self.internal_port}",
            "APPCARE_ACTIONS_BIND": f"127.0.0.1:{self.lb_actions_port}",
            "APPCARE_STATS_BIND": f"127.0.0.1:{self.stats_port}",
        }
        for i, port in enumerate(self.rasa_ports):
            addresses[f"APPCARE_RASA_{i + 1}"] = f"127.0.0.1:{port}"
        for i, port in enumerate(self.action_ports):
            addresses[f"APPCARE_ACTIONS_{i + 1}"] = f"127.0.0.1:{port}"
        self.haproxy = HAProxy(addresses, self.workdir / "haproxy.sock", self.workdir / "haproxy.log")

    # ------------------------------------------------------------- processes
    def spawn(self, name: str) -> None:
        proc = self.procs[name]  # a restart appends to the same log
        proc.popen = processes.start(proc.cmd, name=name, log=self.workdir / f"{name}.log", append=True, env=proc.env)

    def alive(self, name: str) -> bool:
        popen = self.procs[name].popen
        return popen is not None and popen.poll() is None

    def kill(self, name: str, sig: int = signal.SIGKILL, wait: float = 30.0) -> None:
        """``sig`` to the process group of ``name``; SIGKILL for what still runs after ``wait`` seconds."""
        popen = self.procs[name].popen
        if popen is not None:
            processes.stop([popen], timeout=wait, sig=sig)

    def wait_http(self, url: str, seconds: float, name: Optional[str] = None) -> None:
        import requests

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if name is not None and not self.alive(name):
                raise RuntimeError(f"{name} exited during start-up:\n{self.log_tail(name)}")
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{url} did not come up in {seconds:.0f} s:\n{self.log_tail(name) if name else ''}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("*.log")))

    def wait_instance(self, name: str, seconds: float = 400.0) -> None:
        self.wait_http(self.instance_url(name) + "/webhooks/whatsapp/health", seconds, name)

    def start(self, fresh_database: bool = True) -> "Cluster":
        ensure_database(self.database, port=self.pg_port, fresh=fresh_database)
        self.graph.start()
        try:
            return self._start_processes()
        except RuntimeError as exc:
            # e.g. a port taken by another program between choosing and binding it
            print(f"[cluster] start failed ({str(exc).splitlines()[0]}); retrying once with new ports", file=sys.stderr)
            self._stop_processes(signal.SIGKILL)
            self._choose_ports(len(self.rasa_ports))
            self.procs.clear()
            return self._start_processes()

    def _start_processes(self) -> "Cluster":
        self.graph.status_url = self.public_url + "/webhooks/whatsapp/webhook"  # Meta's status webhooks
        self._define()
        for name in self.procs:
            self.spawn(name)
        assert self.haproxy is not None
        self.haproxy.start()
        for name in [n for n in self.procs if n.startswith("actions-")]:
            self.wait_http(self.action_url(name) + "/health", 180, name)
        for name in [n for n in self.procs if n.startswith("rasa-")]:
            self.wait_instance(name)
        self.wait_balancer_sees_all()
        return self

    def wait_balancer_sees_all(self, seconds: float = 30.0) -> None:
        """HAProxy's health checks have marked every instance and action server UP."""
        assert self.haproxy is not None
        for name in self.procs:
            backend = "rasa" if name.startswith("rasa-") else "actions"
            self.haproxy.wait_status(backend, name, "UP", seconds)

    def _stop_processes(self, sig: int) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for name in [n for n in self.procs if n.startswith("rasa-")] + [n for n in self.procs if n.startswith("actions-")]:
            self.kill(name, sig, wait=30)

    def stop(self) -> None:
        self._stop_processes(signal.SIGTERM)
        self.graph.stop()
        delete_queue(self.queue)

    def restart_actions(self, name: str = "actions-1") -> float:
        """Restarts one action server (SIGTERM, start); HAProxy sends the action calls to
        the other meanwhile."""
        started = time.monotonic()
        self.kill(name, signal.SIGTERM)
        self.spawn(name)
        self.wait_http(self.action_url(name) + "/health", 180, name)
        return time.monotonic() - started

    def drain_and_restart(self, name: str, progress: Callable[[str], None] = print) -> float:
        """A zero-downtime upgrade of one instance through HAProxy's runtime API, as in
        docs/production.md: drain, wait until its requests are done, stop it (SIGTERM:
        running turns finish, its open messages go to the other instance), start it,
        wait for its health, back to ready. Returns the seconds it took."""
        assert self.haproxy is not None
        started = time.monotonic()
        self.haproxy.set_state("rasa", name, "drain")
        self.haproxy.wait_status("rasa", name, "DRAIN", 10)
        idle = self.haproxy.wait_idle("rasa", name, 60) + self.haproxy.wait_idle("rasa_api", name, 130)
        progress(f"[loadtest] {name} drained (no requests after {idle:.1f} s); stopping it (SIGTERM)")
        self.kill(name, signal.SIGTERM, wait=60)
        self.spawn(name)
        self.wait_instance(name, 400)
        self.haproxy.set_state("rasa", name, "ready")
        self.haproxy.wait_status("rasa", name, "UP", 30)
        return time.monotonic() - started

    # ------------------------------------------------------------ messaging
    def unsettled(self, recipients: List[str]) -> int:
        """Open inbox messages of these citizens plus their outbox rows that may still
        be (re)sent: 0 means the channel is finished with them, so a missing or a
        second answer can no longer come."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.db_url, future=True)
        try:
            with engine.connect() as conn:
                open_in = conn.execute(sa.text(
                    "SELECT count(*) FROM whatsapp_inbox WHERE wa_id = ANY(:r) "
                    "AND status IN ('pending', 'processing', 'replying')"), {"r": list(recipients)}).scalar()
                open_out = conn.execute(sa.text(
                    "SELECT count(*) FROM whatsapp_outbox WHERE recipient = ANY(:r) "
                    "AND status IN ('pending', 'sending', 'unknown')"), {"r": list(recipients)}).scalar()
            return int(open_in or 0) + int(open_out or 0)
        finally:
            engine.dispose()

    def wait_settled(self, recipients: List[str], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.unsettled(recipients) == 0:
                    return True
            except Exception:  # noqa: BLE001 - e.g. the database proxy is cut; keep waiting
                pass
            time.sleep(0.25)  # poll interval of a bounded wait
        return False

    def post(self, body: bytes, timeout: float = 10.0) -> int:
        import requests

        response = requests.post(
            self.public_url + "/webhooks/whatsapp/webhook", data=body, timeout=timeout,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature(body)},
        )
        return response.status_code

    def say(self, wa_id: str, text: str, pnid: str = PNID_TERNEUZEN, name: str = "Test Persoon",
            timeout: float = 60.0, settle: float = 1.5) -> List[str]:
        """Sends one signed message through HAProxy; returns the reply texts."""
        wamid = f"wamid.T{uuid.uuid4().hex}"
        self.graph.expect(wamid, wa_id)
        before = len(self.graph.replies_for(wa_id))
        status = self.post(text_payload(wa_id, text, wamid, pnid=pnid, name=name))
        if status != 200:
            raise RuntimeError(f"webhook answered {status}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.graph.answered(wamid):
            time.sleep(0.1)
        time.sleep(settle)  # the rest of the turn (paced at 1 message/s)
        return self.graph.replies_for(wa_id)[before:]


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
