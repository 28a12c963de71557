"""deploy/haproxy.cfg as it runs in production: Debian's HAProxy (installed with apt-get
when missing, tools/debian.py) with this file, in front of real HTTP servers that stand
in for the Rasa instances and the action servers.

What an operator relies on: only Meta's webhook is public; Rasa's API for the desk is on
the internal listener; an instance whose health check fails gets no traffic; a request
that could not reach an instance is retried on the other one, a request that did reach
one is never repeated; drain through the runtime API lets running requests finish and
sends new ones elsewhere; the verify token in Meta's verification request stays out of
the log.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, List

import pytest
import requests

from appcare.ports import free_port
from tests.support.fake_instance import FakeInstance
from tests.support.waiting import wait_for_state
from tests.support.haproxy import HAProxy

pytestmark = pytest.mark.timeout(180)
WEBHOOK = "/webhooks/whatsapp/webhook"


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.rasa = {name: FakeInstance(name) for name in ("rasa-1", "rasa-2")}
        self.actions = {name: FakeInstance(name) for name in ("actions-1", "actions-2")}
        self.ports = {key: free_port() for key in ("public", "internal", "actions", "stats")}
        addresses = {
            "APPCARE_PUBLIC_BIND": f"127.0.0.1:{self.ports['public']}",
            "APPCARE_INTERNAL_BIND": f"127.0.0.1:{self.ports['internal']}",
            "APPCARE_ACTIONS_BIND": f"127.0.0.1:{self.ports['actions']}",
            "APPCARE_STATS_BIND": f"127.0.0.1:{self.ports['stats']}",
            "APPCARE_RASA_1": self.rasa["rasa-1"].address, "APPCARE_RASA_2": self.rasa["rasa-2"].address,
            "APPCARE_ACTIONS_1": self.actions["actions-1"].address,
            "APPCARE_ACTIONS_2": self.actions["actions-2"].address,
        }
        self.log = tmp / "haproxy.log"
        self.haproxy = HAProxy(addresses, tmp / "haproxy.sock", self.log).start()
        for name in self.rasa:
            self.haproxy.wait_status("rasa", name, "UP", 20)
        for name in self.actions:
            self.haproxy.wait_status("actions", name, "UP", 20)

    def url(self, listener: str) -> str:
        return f"http://127.0.0.1:{self.ports[listener]}"

    def post_webhook(self, body: bytes = b'{"object":"whatsapp_business_account"}') -> requests.Response:
        return requests.post(self.url("public") + WEBHOOK, data=body, timeout=30,
                             headers={"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=00"})

    def close(self) -> None:
        self.haproxy.stop()
        for fake in [*self.rasa.values(), *self.actions.values()]:
            fake.close()


@pytest.fixture
def rig(tmp_path: Path) -> Any:
    instance = Rig(tmp_path)
    try:
        yield instance
    finally:
        instance.close()


def test_only_the_webhook_is_public_and_the_desk_api_is_internal(rig: Rig) -> None:
    public = rig.url("public")
    assert rig.post_webhook().status_code == 200
    verify = requests.get(public + WEBHOOK, params={"hub.mode": "subscribe", "hub.verify_token": "VerifyTokenXYZ123",
                                                    "hub.challenge": "42"}, timeout=10)
    assert verify.status_code == 200
    for path in ("/conversations/31612345678/tracker", "/model", "/webhooks/rest/webhook", "/webhooks/whatsapp/metrics",
                 "/webhooks/whatsapp/health", "/", "/stats"):
        assert requests.get(public + path, timeout=10).status_code == 404, path
    assert requests.post(public + "/conversations/x/trigger_intent", json={}, timeout=10).status_code == 404
    assert requests.delete(public + WEBHOOK, timeout=10).status_code == 404
    # /health of the public listener: HAProxy itself, 200 while an instance is up
    assert requests.get(public + "/health", timeout=10).status_code == 200
    reached = sum(len(f.received) for f in rig.rasa.values())
    assert reached == 2  # the webhook POST and the verification GET; nothing else got through
    # The desk's listener passes Rasa's API on.
    internal = requests.get(rig.url("internal") + "/conversations/31687654321/tracker", timeout=10)
    assert internal.status_code == 200 and internal.json()["instance"] in rig.rasa
    # HAProxy's own metrics for Prometheus on the stats listener
    assert "haproxy_backend_active_servers" in requests.get(rig.url("stats") + "/metrics", timeout=10).text
    # The verification request was logged without its query string (the verify token).
    log = wait_for_state("HAProxy to log the verification request and the desk's API call",
                         lambda: rig.log.read_text(errors="replace"),
                         lambda text: f"GET {WEBHOOK}" in text and "GET /conversations/-/tracker" in text)
    assert "VerifyTokenXYZ123" not in log and "hub.verify_token" not in log
    assert "31687654321" not in log  # the conversation id (a phone number) in Rasa's API paths


def test_webhooks_are_spread_over_both_instances(rig: Rig) -> None:
    for _ in range(10):
        assert rig.post_webhook().status_code == 200
    assert rig.rasa["rasa-1"].posts() == 5 and rig.rasa["rasa-2"].posts() == 5  # round robin


def test_an_unhealthy_instance_gets_no_webhooks_until_it_recovers(rig: Rig) -> None:
    rig.rasa["rasa-1"].health = 503  # e.g. its database is unreachable or no model is loaded
    rig.haproxy.wait_status("rasa", "rasa-1", "DOWN", 20)
    for _ in range(6):
        assert rig.post_webhook().status_code == 200
    assert rig.rasa["rasa-1"].posts() == 0 and rig.rasa["rasa-2"].posts() == 6
    rig.rasa["rasa-1"].health = 200
    rig.haproxy.wait_status("rasa", "rasa-1", "UP", 20)
    _traffic_reaches(rig, "rasa-1")  # (its share grows over the 5 s slowstart)


def _traffic_reaches(rig: Rig, name: str) -> None:
    """Posts webhooks until one reaches ``name`` (fails after 20 s)."""
    before = rig.rasa[name].posts()

    def post_and_count() -> int:
        assert rig.post_webhook().status_code == 200
        return rig.rasa[name].posts()

    wait_for_state(f"webhooks to reach {name} again", post_and_count, lambda n: n > before, timeout=20, interval=0.2)


def test_no_instance_up_answers_503_so_meta_retries(rig: Rig) -> None:
    for fake in rig.rasa.values():
        fake.health = 503
    for name in rig.rasa:
        rig.haproxy.wait_status("rasa", name, "DOWN", 20)
    assert rig.post_webhook().status_code == 503
    assert requests.get(rig.url("public") + "/health", timeout=10).status_code == 503


def test_a_request_that_cannot_reach_an_instance_is_retried_on_the_other(rig: Rig) -> None:
    # rasa-2 crashed a moment ago: its port refuses connections, and its health check
    # has not noticed yet (checks are disabled here to hold that moment still).
    rig.haproxy.runtime("disable health rasa/rasa-2")
    rig.rasa["rasa-2"].close()
    for _ in range(8):
        assert rig.post_webhook().status_code == 200
    assert rig.rasa["rasa-1"].posts() == 8


def test_a_webhook_held_by_a_stuck_instance_is_answered_by_the_other(rig: Rig) -> None:
    # rasa-1 accepts the connection but never answers (restarted, still loading its model)
    rig.haproxy.runtime("disable health rasa/rasa-1")
    rig.rasa["rasa-1"].hold.clear()
    answers = [rig.post_webhook().status_code for _ in range(2)]  # round robin: rasa-1 gets its turn
    assert answers == [200, 200]
    assert rig.rasa["rasa-1"].posts() >= 1  # held there for 10 s ...
    assert rig.rasa["rasa-2"].posts() == 2  # ... then tried on rasa-2, which answered both


def test_a_desk_api_call_that_reached_an_instance_is_not_repeated(rig: Rig) -> None:
    for fake in rig.rasa.values():
        fake.status = 500
    url = rig.url("internal") + "/conversations/31687654321/trigger_intent"
    answers = [requests.post(url, json={"name": "EXTERNAL_kcc_reply"}, timeout=30).status_code for _ in range(4)]
    assert answers == [500] * 4
    assert sum(f.posts() for f in rig.rasa.values()) == 0  # (posts() counts webhooks only)
    assert sum(len(f.received) for f in rig.rasa.values()) == 4  # once each: a staff reply is never sent twice


def test_an_action_call_that_reached_a_server_is_not_repeated(rig: Rig) -> None:
    url = rig.url("actions") + "/webhook"
    for fake in rig.actions.values():
        fake.status = 500  # the action server got the call and failed
    answers = [requests.post(url, json={"next_action": "action_x"}, timeout=30).status_code for _ in range(6)]
    assert answers == [500] * 6
    assert sum(f.posts() for f in rig.actions.values()) == 6  # once each: a call may have had effects


def test_an_action_call_is_retried_when_the_server_is_unreachable(rig: Rig) -> None:
    rig.haproxy.runtime("disable health actions/actions-2")
    rig.actions["actions-2"].close()  # restarting: connection refused
    url = rig.url("actions") + "/webhook"
    answers = [requests.post(url, json={"next_action": "action_x"}, timeout=30).status_code for _ in range(6)]
    assert answers == [200] * 6
    assert rig.actions["actions-1"].posts() == 6


def test_drain_lets_running_requests_finish_and_sends_new_ones_elsewhere(rig: Rig) -> None:
    slow = rig.rasa["rasa-1"]
    slow.hold.clear()  # rasa-1 is in the middle of a request
    statuses: List[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(rig.post_webhook().status_code)) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_for_state("a request in progress on rasa-1 and the other one received",
                   lambda: (slow.in_progress, sum(f.posts() for f in rig.rasa.values())), lambda v: v == (1, 2))
    rig.haproxy.set_state("rasa", "rasa-1", "drain")
    rig.haproxy.wait_status("rasa", "rasa-1", "DRAIN", 10)
    rig.haproxy.wait_status("rasa_api", "rasa-1", "DRAIN", 10)  # the desk's backend follows (track)
    before = {name: fake.posts() for name, fake in rig.rasa.items()}
    for _ in range(6):
        assert rig.post_webhook().status_code == 200
    assert rig.rasa["rasa-1"].posts() == before["rasa-1"]
    assert rig.rasa["rasa-2"].posts() == before["rasa-2"] + 6
    assert int(rig.haproxy.server("rasa", "rasa-1")["scur"]) == 1  # still running, not cut off
    slow.hold.set()
    for thread in threads:
        thread.join(30)
    assert statuses == [200, 200]
    rig.haproxy.wait_idle("rasa", "rasa-1", 10)
    rig.haproxy.set_state("rasa", "rasa-1", "ready")
    rig.haproxy.wait_status("rasa", "rasa-1", "UP", 10)
    _traffic_reaches(rig, "rasa-1")


def test_a_body_larger_than_metas_maximum_is_refused(rig: Rig) -> None:
    big = b"x" * (3 * 1024 * 1024 + 1)
    assert rig.post_webhook(big).status_code == 413
    assert sum(f.posts() for f in rig.rasa.values()) == 0


def test_the_runtime_api_refuses_an_unknown_server_with_a_clear_error(rig: Rig) -> None:
    with pytest.raises(RuntimeError, match="rasa/rasa-9"):
        rig.haproxy.set_state("rasa", "rasa-9", "drain")
