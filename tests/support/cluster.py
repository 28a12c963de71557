"""The production topology as local processes, for the production tests and the load
test (tools/loadtest.py): :class:`Cluster` starts HAProxy with deploy/haproxy.cfg
(tests/support/haproxy.py) in front of two ``rasa run`` instances with the same model
and ``endpoints.prod.yml`` and of two action servers, all in production mode with this
run's own secrets, on PostgreSQL (a database of its own, created when missing, its
tables dropped first; tracker store and ``APPCARE_DB_URL``), the Redis lock store (own
key prefix) and Rasa's Pika event broker on RabbitMQ (own queue, deleted afterwards),
and a fake WhatsApp Graph API (:class:`RecordingGraph`) that records every read receipt
and reply. Every process leads its own process group (appcare.ops.processes) and logs
to ``<workdir>/<name>.log``.

Also here: Meta's webhook payloads (:func:`text_payload`, :func:`status_payload`) signed
with the run's app secret (:func:`signature`), and the test database helpers.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from appcare.ops import processes
from appcare.plugins import live_model
from appcare.ports import free_port
from tests.support.haproxy import HAProxy

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

APP_SECRET = "loadtest-app-secret-" + "0123456789abcdef"  # test values, long enough for production mode
VERIFY_TOKEN = "loadtest-verify-token"
ACCESS_TOKEN = "loadtest-access-token-0123456789"
PNID_TERNEUZEN = "1000000001"
PNID_LELYSTAD = "1000000002"
TENANTS = f"{PNID_TERNEUZEN}:terneuzen,{PNID_LELYSTAD}:lelystad"


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
        self.refused = 0  # cut-off or malformed requests, answered 400 and not recorded
        self.unattributed_details: List[str] = []  # why a reply had no inbound message (no personal data)
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
                    body = json.loads(raw.decode("utf-8")) if len(raw) == length else None
                except ValueError:
                    body = None
                if not isinstance(body, dict) or not body:
                    # A request cut off by a killed instance (or no JSON object): Meta
                    # refuses it and sends nothing, so it is not a reply either.
                    graph.refused += 1
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self.close_connection = True
                    return
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
                self.unattributed_details.append(
                    f"to={hashlib.sha256(to.encode()).hexdigest()[:8]} path={path.rsplit('/', 1)[-1]} "
                    f"type={body.get('type')} sent_before={len(self.texts.get(to, [])) - 1} "
                    f"receipts_for_recipient={sum(1 for w, r in self.sender_of.items() if r == to and w in self.receipts)}")
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
        self.model = model or live_model.required()
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
        """Until ``url`` answers 200; fails at once when ``name``'s process ends."""
        popen = self.procs[name].popen if name is not None else None
        processes.wait_ready(url, [popen] if popen is not None else [], seconds)

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
            timeout: float = 60.0) -> List[str]:
        """Sends one signed message through HAProxy; returns the reply texts once the
        channel is finished with the citizen (every part of the turn sent), so a reply
        that is absent is not merely late."""
        wamid = f"wamid.T{uuid.uuid4().hex}"
        self.graph.expect(wamid, wa_id)
        before = len(self.graph.replies_for(wa_id))
        status = self.post(text_payload(wa_id, text, wamid, pnid=pnid, name=name))
        if status != 200:
            raise RuntimeError(f"webhook answered {status}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.graph.answered(wamid):
            time.sleep(0.1)
        if not self.wait_settled([wa_id], timeout=max(10.0, deadline - time.monotonic())):
            raise RuntimeError("the channel did not finish the turn")
        return self.graph.replies_for(wa_id)[before:]
