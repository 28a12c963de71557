"""Security of the KCC desk (issue 16), over real HTTP against the desk app:

* login: back-off per address and per account instead of a hard lock, one bcrypt
  check per attempt, a bounded audit of rejected attempts;
* the Secure flag of the session cookie and clear errors for bad settings;
* start-up refusal of missing or weak secrets in production (``python -m desk serve``);
* the Rasa HTTP API is called with a JWT in a header, never a token in the URL;
* every route of the desk's router: login required, role checks, CSRF checks.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List
from urllib.parse import urlparse

import bcrypt
import jwt
import pytest
import requests
from sqlalchemy import inspect, select, text, update

from tests.support.waiting import wait_for_state
from tests.support.desk_helpers import (  # noqa: F401
    PASSWORD,
    DeskClient,
    any_db_url,
    free_port,
    make_user,
    open_ticket,
    pg_url,
    sqlite_url,
    start_desk,
)

from appcare.handoff_store import HandoffStore
from appcare.ops import processes
from desk.auth import ACCOUNT_THROTTLE, ADDRESS_THROTTLE, SESSION_COOKIE
from desk.settings import Settings, SettingsError
from desk.store import DeskStore, LoginThrottleRow

ROOT = Path(__file__).resolve().parents[1]

ATTACKER = "203.0.113.7"
COLLEAGUE = "198.51.100.4"
JWT_SECRET = "rasa-jwt-secret-for-the-tests-0123456789"
GOOD_WEBHOOK_SECRET = "webcare-shared-secret-0123456789"


def client_from(url: str, address: str) -> DeskClient:
    """A browser at ``address`` behind the reverse proxy (X-Forwarded-For)."""
    client = DeskClient(url)
    client.http.headers["X-Forwarded-For"] = address
    return client


@pytest.fixture
def desk(any_db_url):
    for name, role in (("anna", "staff"), ("carla", "coordinator"), ("dora", "staff")):
        make_user(any_db_url, name, role)
    DeskStore(any_db_url).set_active("dora", False)
    server = start_desk(any_db_url, proxies_count=1)
    server.db_url = any_db_url
    yield server
    server.stop()


# ---------------------------------------------------------------------- login throttling
def test_wrong_passwords_from_one_address_do_not_lock_a_colleague_out(desk):
    attacker = client_from(desk.url, ATTACKER)
    answers = [attacker.login("anna", f"guess-{i:02d}-wrong").status_code for i in range(20)]
    assert answers[:ACCOUNT_THROTTLE.free] == [401] * ACCOUNT_THROTTLE.free
    assert set(answers[ACCOUNT_THROTTLE.free:]) == {429}  # back-off, not another guess

    anna = client_from(desk.url, COLLEAGUE)
    first = anna.login("anna")
    if first.status_code == 429:  # still inside the short per-account back-off
        wait = int(first.headers["Retry-After"])
        assert 1 <= wait <= ACCOUNT_THROTTLE.cap
        time.sleep(wait)
        first = anna.login("anna")
    assert first.status_code == 302
    assert anna.get("/api/me").json()["username"] == "anna"
    # A colleague who did nothing wrong, on another address, was never held up.
    assert client_from(desk.url, "198.51.100.9").login("carla").status_code == 302


def test_parallel_guesses_do_not_slip_past_the_backoff(desk):
    from concurrent.futures import ThreadPoolExecutor

    clients = [client_from(desk.url, f"203.0.113.{100 + i}") for i in range(16)]
    for client in clients:  # the login forms first, so the guesses arrive together
        client.http.get(client.url("/login"), timeout=10)

    def guess(i):
        return clients[i].login("anna", f"parallel-guess-{i:02d}").status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(guess, range(16)))
    assert set(answers) <= {401, 429}, answers
    assert answers.count(401) <= ACCOUNT_THROTTLE.free  # only these ran a password check


def test_backoff_is_short_per_account_and_long_per_address():
    assert ACCOUNT_THROTTLE.backoff(ACCOUNT_THROTTLE.free - 1) is None
    assert ACCOUNT_THROTTLE.backoff(ACCOUNT_THROTTLE.free + 1) == 2 * ACCOUNT_THROTTLE.backoff(ACCOUNT_THROTTLE.free)
    assert ACCOUNT_THROTTLE.backoff(10_000).total_seconds() <= 60
    assert ADDRESS_THROTTLE.backoff(10_000).total_seconds() == 15 * 60


def test_throttled_login_answers_429_in_dutch_and_does_not_check_the_password(desk, monkeypatch):
    attacker = client_from(desk.url, ATTACKER)
    for i in range(ACCOUNT_THROTTLE.free):
        assert attacker.login("anna", f"guess-{i}-wrong").status_code == 401
    calls = _count_bcrypt(monkeypatch)
    throttled = client_from(desk.url, COLLEAGUE).login("anna")  # even the right password waits
    assert throttled.status_code == 429
    assert "Te veel pogingen. Probeer het over 1 minuut opnieuw." in throttled.text
    assert 1 <= int(throttled.headers["Retry-After"]) <= ACCOUNT_THROTTLE.cap
    assert SESSION_COOKIE not in throttled.cookies
    assert calls == []  # no bcrypt work for an attacker while throttled

    # The address that keeps failing on many names is held up far longer than an account.
    spray = client_from(desk.url, "203.0.113.99")
    for i in range(ADDRESS_THROTTLE.free):
        assert spray.login(f"naam{i}", "guess-wrong-pw").status_code == 401
    held = spray.login("carla")
    assert held.status_code == 429
    assert client_from(desk.url, "198.51.100.10").login("carla").status_code == 302


def _count_bcrypt(monkeypatch) -> List[bytes]:
    """Records the hash of every bcrypt check (the real check still runs)."""
    calls: List[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


def test_every_login_attempt_runs_exactly_one_bcrypt_check(desk, monkeypatch):
    dummy = desk.app.ctx.auth._dummy_hash.encode("ascii")  # noqa: SLF001
    anna_hash = DeskStore(desk.db_url).user_with_hash("anna")["password_hash"].encode("ascii")
    calls = _count_bcrypt(monkeypatch)
    cases = [
        ("anna", "wrong-password-1", anna_hash, 401),
        ("anna", "", anna_hash, 401),  # empty password
        ("anna", PASSWORD + "x" * 200, anna_hash, 401),  # over-long: bcrypt 5 would raise
        ("anna", "é" * 100, anna_hash, 401),  # over-long in bytes only
        ("nobody-here", "wrong-password-1", dummy, 401),  # unknown name
        ("nobody-here", "", dummy, 401),
        ("dora", PASSWORD, dummy, 401),  # disabled account, right password
        ("anna", PASSWORD, anna_hash, 302),
    ]
    for i, (name, password, expected_hash, status) in enumerate(cases):
        calls.clear()
        response = client_from(desk.url, f"198.51.100.{20 + i}").login(name, password)
        assert response.status_code == status, (name, response.status_code)
        assert calls == [expected_hash], name


def test_audit_of_rejected_logins_is_bounded(desk):
    store = DeskStore(desk.db_url)
    attacker = client_from(desk.url, ATTACKER)
    for i in range(40):
        attacker.login("anna", f"guess-{i:02d}-wrong")
    rows = store.audit_log(action="login_failed")
    # One row for the wrong passwords and one for the throttled attempts, this minute.
    assert len(rows) <= 2 and {r["actor"] for r in rows} == {"anna"}
    assert sum(r["detail"]["count"] for r in rows) <= 40

    # A minute later the next row carries the count of everything held back.
    _age_audit_marks(store)
    attacker.login("anna", "guess-41-wrong")
    later = store.audit_log(action="login_failed")
    assert len(later) == len(rows) + 1
    assert later[0]["detail"]["count"] > 1  # the attempts held back since the previous row
    assert sum(r["detail"]["count"] for r in later) <= 41

    # Names sprayed from one address: bounded by the address back-off, and names that
    # are no account (maybe a password typed in the wrong field) are not stored.
    sprayer = client_from(desk.url, "203.0.113.50")
    names = [f"geheim-{uuid.uuid4().hex[:8]}" for _ in range(40)]
    for name in names:
        sprayer.login(name, "guess-wrong-pw")
    sprayed = [r for r in store.audit_log(action="login_failed", limit=500) if r["detail"].get("unknown_account")]
    assert len(sprayed) <= ADDRESS_THROTTLE.free + 1
    assert {r["actor"] for r in sprayed} == {"-"}
    assert not any(name in json.dumps(store.audit_log(limit=500), default=str) for name in names)


def _age_audit_marks(store: DeskStore) -> None:
    import datetime as dt

    with store.engine.begin() as conn:
        for key, audited in conn.execute(select(LoginThrottleRow.key, LoginThrottleRow.audited_at)).all():
            if audited is not None:
                conn.execute(update(LoginThrottleRow).where(LoginThrottleRow.key == key)
                             .values(audited_at=audited - dt.timedelta(minutes=2)))


# ---------------------------------------------------------------------- cookie and settings
def _settings(monkeypatch, env: Dict[str, str], **overrides) -> Settings:
    for name in ("APPCARE_ENV", "DESK_COOKIE_SECURE", "DESK_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env(**overrides)


def test_cookie_secure_is_on_unless_plain_http_on_this_machine(monkeypatch):
    assert _settings(monkeypatch, {}).cookie_secure is False  # make run: http://127.0.0.1:5080
    assert _settings(monkeypatch, {"DESK_HOST": "localhost"}).cookie_secure is False
    assert _settings(monkeypatch, {"DESK_HOST": "0.0.0.0"}).cookie_secure is True
    assert _settings(monkeypatch, {}, host="10.1.2.3").cookie_secure is True
    assert _settings(monkeypatch, {"DESK_HOST": "0.0.0.0", "DESK_COOKIE_SECURE": "0"}).cookie_secure is False
    assert _settings(monkeypatch, {"DESK_COOKIE_SECURE": "1"}).cookie_secure is True
    assert _settings(monkeypatch, {"APPCARE_ENV": "production"}).cookie_secure is True  # behind the TLS proxy
    with pytest.raises(SettingsError, match="DESK_COOKIE_SECURE=0 is refused in production"):
        _settings(monkeypatch, {"APPCARE_ENV": "production", "DESK_COOKIE_SECURE": "0"})
    with pytest.raises(SettingsError, match="DESK_COOKIE_SECURE must be 1 or 0"):
        _settings(monkeypatch, {"DESK_COOKIE_SECURE": "misschien"})
    with pytest.raises(SettingsError, match="DESK_SESSION_HOURS must be a number"):
        _settings(monkeypatch, {"DESK_SESSION_HOURS": "acht"})


def test_session_cookie_is_secure_when_not_served_on_localhost(sqlite_url):
    make_user(sqlite_url, "anna")
    server = start_desk(sqlite_url, host="desk.gemeente.internal")
    try:
        page = requests.get(server.url + "/login", timeout=10)
        form_cookie = page.raw.headers.getlist("Set-Cookie")[0]
        assert "secure" in form_cookie.lower()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        # A browser would not send a Secure cookie over plain http; the test sends it by hand.
        response = requests.post(server.url + "/login", allow_redirects=False, timeout=10,
                                 data={"username": "anna", "password": PASSWORD, "csrf_token": token},
                                 headers={"Cookie": form_cookie.split(";")[0]})
        assert response.status_code == 302
        cookie = [c for c in response.raw.headers.getlist("Set-Cookie") if c.startswith(SESSION_COOKIE + "=")][0]
        assert "secure" in cookie.lower() and "httponly" in cookie.lower()
    finally:
        server.stop()


# ---------------------------------------------------------------------- start-up (python -m desk serve)
def _serve(tmp_path, env: Dict[str, str], port: int) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("DESK_", "RASA_", "APPCARE_"))}
    base.update(APPCARE_DB_URL=f"sqlite:///{tmp_path}/desk.db", DESK_BCRYPT_ROUNDS="4", PYTHONUNBUFFERED="1")
    base.update(env)
    return processes.start([sys.executable, "-m", "desk", "serve", "--port", str(port)], cwd=ROOT, env=base,
                           new_group=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _refused(tmp_path, env: Dict[str, str]) -> str:
    proc = _serve(tmp_path, env, free_port())
    try:
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("desk: ")]
    assert len(lines) == 1, err
    return lines[0]


PRODUCTION_OK = {"APPCARE_ENV": "production", "RASA_JWT_SECRET": JWT_SECRET,
                 "APPCARE_PSEUDONYM_KEY": "pseudonym-key-for-the-tests-0123456789"}


@pytest.mark.parametrize("env, variable, hidden", [
    ({"RASA_JWT_SECRET": None}, "RASA_JWT_SECRET", None),
    ({"RASA_JWT_SECRET": "CHANGE-ME"}, "RASA_JWT_SECRET", "CHANGE-ME"),
    ({"RASA_JWT_SECRET": "kort-Xy9"}, "RASA_JWT_SECRET", "kort-Xy9"),
    ({"DESK_WEBHOOK_URL": "https://webcare.example/hook"}, "DESK_WEBHOOK_SECRET", None),
    ({"DESK_WEBHOOK_URL": "https://webcare.example/hook", "DESK_WEBHOOK_SECRET": "geheim12"},
     "DESK_WEBHOOK_SECRET", "geheim12"),
    ({"DESK_WEBHOOK_SECRET": "secret"}, "DESK_WEBHOOK_SECRET", None),  # inbound endpoint on
    ({"DESK_COOKIE_SECURE": "0"}, "DESK_COOKIE_SECURE", None),
    ({"DESK_PORT": "vijftig"}, "DESK_PORT", None),
])
def test_production_start_refuses_missing_or_weak_secrets(tmp_path, env, variable, hidden):
    merged = dict(PRODUCTION_OK)
    merged.update(env)
    message = _refused(tmp_path, {k: v for k, v in merged.items() if v is not None})
    assert variable in message
    if hidden:
        assert hidden not in message  # names the variable, never the value


def test_bad_setting_outside_production_is_one_clear_line(tmp_path):
    message = _refused(tmp_path, {"DESK_COOKIE_SECURE": "misschien"})
    assert "DESK_COOKIE_SECURE must be 1 or 0" in message


def test_production_start_with_good_secrets_serves(tmp_path):
    port = free_port()
    proc = _serve(tmp_path, dict(PRODUCTION_OK, DESK_WEBHOOK_URL="https://webcare.example/hook",
                                 DESK_WEBHOOK_SECRET=GOOD_WEBHOOK_SECRET), port)
    try:
        def health():
            if proc.poll() is not None:
                return f"exited {proc.returncode}: {proc.stderr.read()[-2000:]}"
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
            except requests.RequestException:
                return None

        assert wait_for_state("the desk to answer /health", health, lambda s: s is not None, timeout=120) == 200
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


# ---------------------------------------------------------------------- Rasa JWT
class RecordingRasa:
    """A real HTTP server standing in for Rasa's API: verifies the bearer JWT with
    PyJWT like Rasa (sanic-jwt, HS256) and records the query string."""

    def __init__(self, secret: str):
        self.calls: List[Dict[str, Any]] = []
        rasa = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                header = self.headers.get("Authorization") or ""
                call = {"query": urlparse(self.path).query, "authorization": header, "payload": None}
                try:
                    scheme, _, token = header.partition(" ")
                    assert scheme == "Bearer"
                    call["payload"] = jwt.decode(token, secret, algorithms=["HS256"])
                    status = 200
                except Exception:  # noqa: BLE001 - any invalid token is "not authenticated"
                    status = 401
                rasa.calls.append(call)
                data = json.dumps({"messages": []} if status == 200 else {"reason": "NotAuthenticated"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_staff_reply_reaches_rasa_with_a_jwt_header_and_no_token_in_the_url(sqlite_url, monkeypatch):
    monkeypatch.setenv("RASA_TOKEN", "old-style-token-0123456789")  # must not be sent any more
    rasa = RecordingRasa(JWT_SECRET)
    handoff = HandoffStore(sqlite_url)
    make_user(sqlite_url, "anna")
    server = start_desk(sqlite_url, rasa.url, rasa_jwt_secret=JWT_SECRET)
    try:
        ticket = open_ticket(handoff, channel="rest")
        anna = DeskClient(server.url)
        assert anna.login("anna").status_code == 302
        assert anna.post(f"/api/tickets/{ticket.id}/reply", {"text": "Goedemiddag"}).status_code == 200
        [call] = rasa.calls
        assert call["payload"] is not None, "Rasa would refuse the token"
        assert "token" not in call["query"] and "old-style-token" not in call["query"]
        assert call["query"] == "output_channel=latest"
        assert call["payload"]["user"] == {"username": "kcc-desk", "role": "admin"}
        assert 0 < call["payload"]["exp"] - time.time() <= 300
    finally:
        server.stop()
        rasa.stop()

    # A desk with another secret is refused by that Rasa: the reply is reported as not delivered.
    rasa2 = RecordingRasa(JWT_SECRET)
    server = start_desk(sqlite_url, rasa2.url, rasa_jwt_secret="a-different-secret-for-the-tests-0123456789")
    try:
        ticket = open_ticket(handoff, channel="rest")
        anna = DeskClient(server.url)
        assert anna.login("anna").status_code == 302
        refused = anna.post(f"/api/tickets/{ticket.id}/reply", {"text": "Goedemiddag"})
        assert refused.status_code == 502 and rasa2.calls[0]["payload"] is None
    finally:
        server.stop()
        rasa2.stop()


# ---------------------------------------------------------------------- every route of the router
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/health"), ("GET", "/favicon.ico"),
          # Prometheus cannot log in; aggregate numbers only (appcare.ops.metrics), the desk is internal.
          ("GET", "/metrics")}
SIGNED_PREFIX = "/api/integrations/"  # HMAC signature instead of a session (tests/test_security_integration.py)
SAMPLE_PARAMS = {"username": "anna", "scope": "lelystad", "path": "adres", "name": "greet", "action": "add",
                 "__file_uri__": "desk.js"}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


def _route_permission(method: str, path: str) -> str:
    """What a route needs, by its path. A route that matches no rule is taken to be
    for coordinators only: a new page open to staff or editors fails this test until
    it gets a rule here (a conscious decision)."""
    if path in ("/api/me", "/logout"):
        return "any"
    if path.startswith(("/editor", "/api/editor")):
        return "edit"
    if path == "/api/answers" and method == "GET":
        return "desk"
    if path == "/" or path.startswith(("/tickets/", "/api/tickets/")) or path == "/api/queue":
        return "desk"
    return "coordinator"


ALLOWED = {"staff": {"any", "desk"}, "editor": {"any", "edit"}, "coordinator": {"any", "desk", "edit", "coordinator"}}


def _routes(app, ids: Dict[str, int]):
    """(method, concrete path) of every route of the desk's router."""
    found = []
    for route in app.router.routes:
        def value(match):
            name = match.group(1)
            return str(ids.get(name, SAMPLE_PARAMS.get(name, "1")))

        path = "/" + re.sub(r"<([A-Za-z_]+)(?::[^>]+)?>", value, route.path)
        for method in sorted(route.methods):
            found.append((method, path))
    return found


@pytest.fixture
def locked_desk(tmp_path):
    from tests.support.editor_helpers import make_project

    project = make_project(tmp_path / "project")
    db_url = f"sqlite:///{tmp_path}/desk.db"
    handoff = HandoffStore(db_url)
    ticket = open_ticket(handoff)
    message_id = handoff.append_message(ticket.id, "staff", "Eerder antwoord", staff_user="carla")
    for name, role in (("anna", "staff"), ("carla", "coordinator"), ("eddy", "editor")):
        make_user(db_url, name, role)
    answer = DeskStore(db_url).save_answer("Openingstijden", "Wij zijn open van 9 tot 5.", "carla")
    server = start_desk(db_url, project_dir=str(project), endpoints=str(tmp_path / "endpoints.yml"))
    server.db_url = db_url
    server.project = project
    server.ids = {"ticket_id": ticket.id, "message_id": message_id if isinstance(message_id, int) else 1,
                  "answer_id": answer["id"], "item_id": 1, "index": 0}
    yield server
    server.stop()


REFUSAL_AUDITS = ("csrf_rejected", "login_failed", "integration_rejected")


def _state(server) -> Dict[str, str]:
    """Everything a request could change, per table and for the editors' files (the
    audit rows of refusals, the sessions' last-seen times and the login throttle aside)."""
    store = DeskStore(server.db_url)
    state = {}
    with store.engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            if table in ("desk_sessions", "desk_login_throttle"):
                continue
            rows = conn.execute(text(f'SELECT * FROM "{table}"')).mappings().all()
            if table == "desk_audit_log":
                rows = [r for r in rows if r["action"] not in REFUSAL_AUDITS]
            state[table] = json.dumps([dict(r) for r in rows], default=str, sort_keys=True)
    digest = hashlib.sha256()
    for path in sorted(server.project.rglob("*")):
        if path.is_file():
            digest.update(str(path).encode() + path.read_bytes())
    state["files"] = digest.hexdigest()
    return state


def _call(client: DeskClient, method: str, path: str, csrf, form: bool = False) -> requests.Response:
    headers = {}
    data = {"text": "Zomaar", "title": "T", "outcome": "beantwoord", "username": "mallory", "role": "coordinator",
            "password": "an-attackers-password", "value": "x"}
    if form:
        if csrf:
            data["csrf_token"] = csrf
        return client.http.request(method, client.url(path), data=data, allow_redirects=False, timeout=20)
    if csrf:
        headers["X-CSRF-Token"] = csrf
    return client.http.request(method, client.url(path), json=data, headers=headers, allow_redirects=False,
                               timeout=20)


def test_every_route_needs_a_session_a_role_and_a_csrf_token(locked_desk):
    server = locked_desk
    routes = _routes(server.app, server.ids)
    assert len(routes) > 40  # the whole router, not a hand-made list
    protected = [(m, p) for m, p in routes
                 if (m, p) not in PUBLIC and not p.startswith("/static/") and not p.startswith(SIGNED_PREFIX)]
    clients = {}
    for username in ("anna", "eddy", "carla"):
        clients[username] = DeskClient(server.url)
        assert clients[username].login(username).status_code == 302
    before = _state(server)

    # 1. Without a session: to the login page, or 401/403; never the page itself.
    stranger = DeskClient(server.url)
    for method, path in routes:
        if (method, path) in PUBLIC or path.startswith("/static/"):
            continue
        response = _call(stranger, method, path, csrf=None)
        ok = response.status_code in (401, 403) or (
            response.status_code == 302 and response.headers["Location"].startswith("/login"))
        assert ok, (method, path, response.status_code)
    assert _state(server) == before

    # 2. With a session of a role that may not use the route: 403 (with a valid CSRF token).
    for username, role in (("anna", "staff"), ("eddy", "editor")):
        client = clients[username]
        for method, path in protected:
            if _route_permission(method, path) in ALLOWED[role]:
                continue
            response = _call(client, method, path, csrf=client.csrf)
            assert response.status_code == 403, (role, method, path, response.status_code)
    assert _state(server) == before

    # 3. Every state-changing route with a missing or wrong CSRF token: refused, nothing changes.
    carla = clients["carla"]
    changing = [(m, p) for m, p in protected if m in STATE_CHANGING]
    assert changing
    for method, path in changing:
        for csrf in (None, "wrong-" + carla.csrf[6:], carla.csrf[:-1]):
            for form in (False, True):
                response = _call(carla, method, path, csrf=csrf, form=form)
                assert response.status_code == 403, (method, path, csrf, form, response.status_code)
    assert _state(server) == before
    assert carla.get("/api/me").status_code == 200  # the refused /logout did not end the session

    # The login form has its own CSRF token: without it even the right password logs nobody in.
    fresh = DeskClient(server.url)
    refused = fresh.http.post(fresh.url("/login"), data={"username": "carla", "password": PASSWORD},
                              allow_redirects=False, timeout=10)
    assert refused.status_code == 403 and SESSION_COOKIE not in refused.cookies
