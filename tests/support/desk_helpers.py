"""Shared helpers for the KCC desk tests (no tests in here).

* ``ServerThread``: serves a desk app (``desk.app.create_app``) on 127.0.0.1 in a
  thread with its own event loop, so the tests speak real HTTP to it.
* ``FakeRasa``: records ``trigger_intent`` calls; can answer 500; on
  ``EXTERNAL_kcc_close`` it closes the ticket like the bot's action_close_handoff.
* ``WebhookReceiver``: a webcare tool that records signed webhook posts.
* ``DeskClient``: a logged-in ``requests`` session with the CSRF token.
* fixtures ``sqlite_url``, ``pg_url`` and ``any_db_url`` (SQLite and PostgreSQL).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import requests

import desk.app  # noqa: F401 - early, so Sanic's touchup originals are kept
from appcare.ports import free_port  # also imported from here by the desk tests

PG_URL = os.environ.get("DESK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PASSWORD = "correct-horse-battery"
os.environ.setdefault("DESK_BCRYPT_ROUNDS", "4")  # fast hashes in tests only


# ---------------------------------------------------------------------- desk server
class ServerThread(threading.Thread):
    """Runs a Sanic app with ``create_server`` in a background thread."""

    def __init__(self, app, port: Optional[int] = None):
        super().__init__(name=f"desk-{app.name}", daemon=True)
        self.app = app
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready = threading.Event()
        self.error: Optional[BaseException] = None
        self.loop: Optional[asyncio.AbstractEventLoop] = None

    def run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            server = loop.run_until_complete(
                self.app.create_server(
                    host="127.0.0.1", port=self.port, return_asyncio_server=True, access_log=False
                )
            )
            loop.run_until_complete(server.startup())
            loop.run_until_complete(server.after_start())
        except BaseException as exc:  # noqa: BLE001
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            loop.run_forever()
        finally:
            # Like Sanic's own shutdown: close idle keep-alive connections, give busy
            # ones a moment, then abort them, so no connection task is left for the
            # garbage collector (its error logging would run at a random moment).
            loop.run_until_complete(server.before_stop())
            server.close()
            loop.run_until_complete(server.wait_closed())
            for connection in list(server.connections):
                connection.close_if_idle()
            for _ in range(20):
                if not server.connections:
                    break
                loop.run_until_complete(asyncio.sleep(0.05))
            for connection in list(server.connections):
                connection.abort()
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(server.after_stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def start_and_wait(self) -> "ServerThread":
        self.start()
        self.ready.wait(20)
        if self.error:
            raise self.error
        return self

    def stop(self) -> None:
        if self.loop and self.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.join(15)


def start_desk(db_url: str, rasa_url: str = "http://127.0.0.1:9", **overrides) -> ServerThread:
    from desk.app import create_app

    overrides.setdefault("background_interval", 0)  # tests call the periodic tasks themselves
    overrides.setdefault("bcrypt_rounds", 4)
    overrides.setdefault("rasa_timeout", 3.0)
    app = create_app(db_url=db_url, rasa_url=rasa_url, **overrides)
    return ServerThread(app).start_and_wait()


# ---------------------------------------------------------------------- fake Rasa
class FakeRasa:
    """Stands in for ``rasa run --enable-api``: records trigger_intent calls."""

    def __init__(self, handoff_store=None, db_url: Optional[str] = None):
        self.calls: List[Dict[str, Any]] = []
        self.status = 200
        self.handoff_store = handoff_store
        self.db_url = db_url
        # "failed" / "deferred": act like the WhatsApp channel, which records (never
        # raises) what happened to a reply in its outbox under the reply's kcc_ref.
        self.whatsapp_outcome: Optional[str] = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                parsed = urlparse(self.path)
                match = re.fullmatch(r"/conversations/(.+)/trigger_intent", parsed.path)
                body = json.loads(raw or b"{}")
                call = {
                    "path": parsed.path,
                    "conversation_id": unquote(match.group(1)) if match else None,
                    "query": {k: v[0] for k, v in parse_qs(parsed.query).items()},
                    "json": body,
                }
                fake.calls.append(call)
                status = fake.status
                if status == 200 and body.get("name") == "EXTERNAL_kcc_close" and fake.handoff_store:
                    fake.handoff_store.close_for_conversation(
                        call["conversation_id"], (body.get("entities") or {}).get("kcc_outcome", "closed")
                    )
                if status == 200 and body.get("name") == "EXTERNAL_kcc_reply" and fake.whatsapp_outcome:
                    fake.record_whatsapp(call["conversation_id"], body.get("entities") or {})
                payload = (
                    {"tracker": {"sender_id": call["conversation_id"]}, "messages": []}
                    if status == 200
                    else {"status": "failure", "message": "An unexpected error occurred."}
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def record_whatsapp(self, recipient: str, entities: Dict[str, Any]) -> None:
        from channels.inbox import InboxStore

        inbox = InboxStore(self.db_url)
        payload = {"messaging_product": "whatsapp", "to": recipient, "type": "text", "text": {"body": entities.get("kcc_text")}}
        (outbox_id,) = inbox.add_outgoing("100200300", recipient, [payload], ["text"], ref=entities.get("kcc_ref"))
        if self.whatsapp_outcome == "failed":
            inbox.mark_failed(outbox_id, 131026, "Message undeliverable")
        elif self.whatsapp_outcome == "deferred":
            inbox.mark_deferred(outbox_id, None, "outside the 24h window")
        else:
            inbox.mark_sent(outbox_id, "wamid.FAKE")

    def intents(self, name: str) -> List[Dict[str, Any]]:
        return [c for c in self.calls if c["json"].get("name") == name]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------- webcare tool
class WebhookReceiver:
    def __init__(self, fail_first: int = 0):
        self.received: List[Dict[str, Any]] = []
        self.fail_first = fail_first
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                receiver.received.append({"raw": raw, "headers": dict(self.headers.items())})
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------- HTTP client
class DeskClient:
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = requests.Session()
        self.csrf: Optional[str] = None

    def url(self, path: str) -> str:
        return self.base_url + path

    def login(self, username: str, password: str = PASSWORD) -> requests.Response:
        page = self.http.get(self.url("/login"), timeout=10)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        response = self.http.post(
            self.url("/login"),
            data={"username": username, "password": password, "csrf_token": token, "next": "/"},
            allow_redirects=False,
            timeout=10,
        )
        if response.status_code == 302:
            self.csrf = self.http.get(self.url("/api/me"), timeout=10).json()["csrf_token"]
        return response

    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 15)
        return self.http.get(self.url(path), **kwargs)

    def post(self, path: str, json_body: Optional[Dict[str, Any]] = None, csrf: Any = True, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if csrf is True and self.csrf:
            headers["X-CSRF-Token"] = self.csrf
        elif isinstance(csrf, str):
            headers["X-CSRF-Token"] = csrf
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 20)
        if json_body is not None:
            kwargs["json"] = json_body
        return self.http.post(self.url(path), headers=headers, **kwargs)

    def form(self, path: str, data: Dict[str, Any], with_csrf: bool = True) -> requests.Response:
        data = dict(data)
        if with_csrf and self.csrf:
            data["csrf_token"] = self.csrf
        return self.http.post(self.url(path), data=data, allow_redirects=False, timeout=20)


def make_user(db_url: str, username: str, role: str = "staff") -> None:
    from desk.auth import Auth
    from desk.settings import Settings
    from desk.store import DeskStore

    settings = Settings.from_env(db_url=db_url, bcrypt_rounds=4)
    Auth(DeskStore(db_url), settings).create_user(username, PASSWORD, role)


def open_ticket(store, conversation_id: Optional[str] = None, minutes_ago: float = 0, **kwargs):
    """Opens a ticket like action_handoff_to_kcc does; optionally backdated."""
    from sqlalchemy import update

    from appcare.handoff_store import TicketRow, utcnow

    kwargs.setdefault("reason", "request_human")
    kwargs.setdefault("summary", "Reden: vraagt om een medewerker.")
    kwargs.setdefault(
        "transcript",
        [
            {"sender": "citizen", "text": "ik wil een medewerker spreken", "time": 1700000000.0},
            {"sender": "bot", "text": "Ik geef je vraag door.", "time": 1700000001.0},
        ],
    )
    kwargs.setdefault("municipality", "lelystad")
    kwargs.setdefault("channel", "whatsapp")
    ticket = store.open_ticket(conversation_id or f"3161{uuid.uuid4().int % 10**7:07d}", **kwargs)
    if minutes_ago:
        with store.engine.begin() as conn:
            conn.execute(
                update(TicketRow)
                .where(TicketRow.id == ticket.id)
                .values(created_at=utcnow() - dt.timedelta(minutes=minutes_ago))
            )
    return ticket


def dispose(url: str) -> None:
    from appcare import db
    from appcare import handoff_store

    engine = db._engines.pop(url, None)  # noqa: SLF001 - test cleanup
    if engine is not None:
        engine.dispose()
    handoff_store._stores.pop(url, None)  # noqa: SLF001


# ---------------------------------------------------------------------- fixtures
@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path}/desk.db"
    yield url
    dispose(url)


def _pg_available() -> Optional[str]:
    try:
        import psycopg2

        conn = psycopg2.connect(PG_URL, connect_timeout=3)
        conn.close()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}: {str(exc).strip()[:200]}"


@pytest.fixture
def pg_url():
    """A fresh schema in the test database, dropped afterwards (parallel runs don't clash)."""
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    import psycopg2

    schema = f"desk_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(PG_URL)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        dispose(url)
        with conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request, tmp_path):
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
    else:
        yield request.getfixturevalue("pg_url")
