"""Security of the front (tools/front.py), the public entry of a production set-up.

Only Meta's webhook is public; Rasa's HTTP API, metrics and the admin endpoints
are on the internal listener and the admin endpoints need the token; a webhook
body is read whole; only signed bodies reach the disk; a request that keeps
failing while others get through no longer blocks a citizen; set-aside files do
not stay for ever; a production front does not start with weak secrets.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from tests.support.waiting import wait_for_state
from tests.test_production_units import FakeInstance, FrontRunner, signed_post, wa_payload

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "front-admin-" + "k" * 24


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Any]:
    from tools.front import Front

    a, b = FakeInstance(), FakeInstance()
    runner = FrontRunner(Front([("rasa-1", a.url), ("rasa-2", b.url)], tmp_path / "spool", health_interval=0.2,
                               admin_token=ADMIN_TOKEN, app_secret="s3cret"))
    wait_for_state("first health check", lambda: all(u.checked for u in runner.front.instances), timeout=10)
    yield runner, a, b
    runner.stop()
    a.close()
    b.close()


def _spooled(runner: Any) -> int:
    return requests.get(runner.url + "/health", timeout=5).json()["spooled"]


def test_public_listener_serves_only_the_webhook_and_health(front: Any) -> None:
    runner, a, b = front
    for method, path in [("GET", "/conversations/31612345678/tracker"), ("POST", "/conversations/x/trigger_intent"),
                         ("GET", "/metrics"), ("POST", "/front/instances/rasa-1/drain"), ("GET", "/status"),
                         ("POST", "/webhooks/rest/webhook"), ("PUT", "/model")]:
        assert requests.request(method, runner.url + path, timeout=5).status_code in (404, 405), path
    assert a.received == [] and b.received == []  # nothing was forwarded
    assert requests.get(runner.url + "/health", timeout=5).status_code == 200
    # Meta's verification GET still reaches an instance
    assert requests.get(runner.url + "/webhooks/whatsapp/webhook?hub.mode=subscribe", timeout=5).status_code == 200
    # the internal listener has the rest
    assert "appcare_front" in requests.get(runner.internal_url + "/metrics", timeout=5).text


def test_admin_needs_the_token_even_from_localhost(front: Any) -> None:
    runner, _, _ = front
    drain = runner.internal_url + "/front/instances/rasa-1/drain"
    assert requests.post(drain, timeout=5).status_code == 403  # from 127.0.0.1, no token
    assert requests.post(drain, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 403
    assert requests.post(drain, headers={"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}, timeout=5).status_code == 403
    assert not runner.front.instances[0].drained
    ok = requests.post(drain, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=5)
    assert ok.status_code == 200 and runner.front.instances[0].drained


def test_admin_is_disabled_without_a_token(tmp_path: Path) -> None:
    from tools.front import Front

    inst = FakeInstance()
    runner = FrontRunner(Front([("rasa-1", inst.url)], tmp_path / "spool", health_interval=0.2))
    try:
        answer = requests.post(runner.internal_url + "/front/instances/rasa-1/drain", timeout=5)
        assert answer.status_code == 403 and "FRONT_ADMIN_TOKEN" in answer.text
        assert not runner.front.instances[0].drained
    finally:
        runner.stop()
        inst.close()


def test_a_large_webhook_is_forwarded_whole(front: Any) -> None:
    runner, a, b = front
    body = wa_payload(("31655500011", "lang bericht " * 20000))  # ~260 KB, arrives in many TCP segments
    assert 200_000 < len(body) < 1024 * 1024

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    import hashlib
    import hmac

    sig = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    answer = requests.post(runner.url + "/webhooks/whatsapp/webhook", data=chunks(), timeout=20,
                           headers={"Content-Type": "application/json", "X-Hub-Signature-256": sig})
    assert answer.status_code == 200
    received = [raw for _, _, raw in a.received + b.received]
    assert received == [body]  # not cut short at what happened to be buffered


def test_unsigned_bodies_are_never_spooled(front: Any) -> None:
    runner, a, b = front
    a.status = b.status = 503  # an outage: signed requests go to the spool
    unsigned = requests.post(runner.url + "/webhooks/whatsapp/webhook", data=wa_payload(("31655500022", "x")),
                             headers={"Content-Type": "application/json"}, timeout=10)
    forged = signed_post(runner.url, wa_payload(("31655500022", "y")), secret="not-the-app-secret")
    assert unsigned.status_code == 503 and forged.status_code == 503  # Meta would retry; nothing on disk
    assert _spooled(runner) == 0 and not list(runner.front.spool.directory.glob("*.json"))
    assert signed_post(runner.url, wa_payload(("31655500022", "z"))).status_code == 200  # a real one is kept
    assert _spooled(runner) == 1


def test_a_poison_request_no_longer_blocks_the_citizen(front: Any) -> None:
    runner, a, b = front
    a.poison = b.poison = b"VERGIFTIGD"  # every instance fails on this one body, not on others
    sender = "31655500033"
    assert signed_post(runner.url, wa_payload((sender, "VERGIFTIGD"))).status_code == 200  # spooled
    assert signed_post(runner.url, wa_payload((sender, "tweede bericht"))).status_code == 200  # queued behind it
    # other citizens' messages keep getting through, so this is no outage
    for i in range(8):
        assert signed_post(runner.url, wa_payload((f"3165550010{i}", "hallo"))).status_code == 200
    wait_for_state("the poison request set aside and the citizen's next message delivered",
                   lambda: (any(b"tweede bericht" in raw for _, _, raw in a.received + b.received), _spooled(runner)),
                   lambda state: state == (True, 0), timeout=60)
    assert len(list(runner.front.spool.directory.glob("*.bad"))) == 1
    assert "spool_poison" in requests.get(runner.internal_url + "/metrics", timeout=5).text


def test_an_outage_is_not_mistaken_for_poison(front: Any) -> None:
    runner, a, b = front
    a.status = b.status = 503
    assert signed_post(runner.url, wa_payload(("31655500044", "tijdens storing"))).status_code == 200
    wait_for_state("several failed replays", lambda: runner.front.metrics.forwards.labels("rasa-1", "503")._value.get(),
                   lambda n: n >= 8, timeout=60)
    assert _spooled(runner) == 1 and not list(runner.front.spool.directory.glob("*.bad"))
    a.status = b.status = 200
    wait_for_state("the spooled request delivered", lambda: _spooled(runner), lambda n: n == 0, timeout=30)
    assert any(b"tijdens storing" in raw for _, _, raw in a.received + b.received)


def test_old_bad_files_are_deleted(tmp_path: Path) -> None:
    from tools.front import BAD_KEPT_SECONDS, Spool

    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    old, recent = spool_dir / "old.bad", spool_dir / "recent.bad"
    for path in (old, recent):
        path.write_text('{"body": "bWVzc2FnZQ=="}')
    past = time.time() - BAD_KEPT_SECONDS - 60
    os.utime(old, (past, past))
    Spool(spool_dir)  # a (re)started front cleans up
    assert not old.exists() and recent.exists()


@pytest.mark.parametrize("admin, secret", [("", "a" * 32), ("CHANGE-ME", "a" * 32), ("Kort-9x", "a" * 32),
                                           ("b" * 32, "")])
def test_production_front_refuses_weak_secrets(tmp_path: Path, admin: str, secret: str) -> None:
    env = {**os.environ, "APPCARE_ENV": "production", "FRONT_ADMIN_TOKEN": admin, "WHATSAPP_APP_SECRET": secret}
    done = subprocess.run([sys.executable, "-m", "tools.front", "--listen", "127.0.0.1:0", "--internal-listen",
                           "127.0.0.1:0", "--instance", "rasa-1=http://127.0.0.1:9", "--spool-dir",
                           str(tmp_path / "spool")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "refuses to start in production" in done.stderr
    weak = "FRONT_ADMIN_TOKEN" if admin != "b" * 32 else "WHATSAPP_APP_SECRET"
    assert weak in done.stderr and (not admin or admin not in done.stderr.replace(weak, ""))


def test_signed_bodies_of_any_shape_are_routed_not_failed(front: Any) -> None:
    """Meta retries every non-200 for days: the front must never answer 5xx to a
    signed body because of its shape (the instance judges the content)."""
    import hashlib
    import hmac
    import json as _json

    runner, a, b = front
    shapes = [
        {"entry": 5}, {"entry": [{"changes": 5}]}, {"entry": [{"changes": [{"value": {"messages": 7}}]}]},
        {"entry": [{"changes": [{"value": {"messages": [{"from": ["x"]}], "statuses": {"a": 1}}}]}]},
        {"entry": [{"changes": [{"value": {"messages": [{"from": "3" * 5000}]}}]}]},
    ]
    bodies = [_json.dumps(shape).encode() for shape in shapes]
    bodies.append(b"[" * 5000 + b"]" * 5000)  # deeper than the JSON parser's recursion limit
    bodies.append(b'{"entry": ' + b"9" * 5000 + b"}")  # an integer Python refuses to parse
    for body in bodies:
        sig = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        answer = requests.post(runner.url + "/webhooks/whatsapp/webhook", data=body, timeout=10,
                               headers={"Content-Type": "application/json", "X-Hub-Signature-256": sig})
        assert answer.status_code == 200, (body[:60], answer.status_code)
    assert len(a.received) + len(b.received) == len(bodies)  # each went to an instance, unchanged
