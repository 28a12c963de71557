"""End-to-end tests of the KCC desk in a real headless Chromium (Selenium).

1. ``test_desk_flow_in_browser``: the desk (``python -m desk``) against a fake Rasa
   HTTP server: live queue, claim, standard answer, reply, failed delivery and
   retry, citizen message appearing without reload, note, close.
2. ``test_full_handoff_through_the_real_assistant``: the real assistant (action
   server + ``rasa run --enable-api`` with the trained model in models/) and the
   WhatsApp channel against a fake Graph API on 127.0.0.1 (the REST channel if the
   WhatsApp channel is not there): a citizen asks for a human, staff answer in the
   browser, the reply reaches the fake Graph API, the citizen's next message shows
   up in the ticket without reload, staff close it and the bot answers again.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.support.desk_helpers import FakeRasa, free_port, open_ticket
from tests.support.waiting import wait_for_state

from appcare.handoff_store import HandoffStore

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable

PASSWORD = "e2e-wachtwoord-123"


# ---------------------------------------------------------------------- helpers
def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)  # poll interval of a bounded wait, not a guess at how long the work takes
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def desk_env(db_url: str, rasa_url: str, port: int) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(
        APPCARE_DB_URL=db_url,
        RASA_URL=rasa_url,
        DESK_PORT=str(port),
        DESK_BCRYPT_ROUNDS="4",
        PYTHONUNBUFFERED="1",
    )
    env.pop("DESK_WEBHOOK_URL", None)
    return env


def create_user(env: Dict[str, str], username: str, role: str) -> None:
    run = subprocess.run(
        [PYTHON, "-m", "desk", "create-user", username, "--role", role, "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr


def start_desk(processes, env: Dict[str, str]) -> str:
    port = int(env["DESK_PORT"])
    processes.start("desk", [PYTHON, "-m", "desk"], env)
    url = f"http://127.0.0.1:{port}"
    processes.wait_http("desk", url + "/login", timeout=60, ok=lambda r: r.status_code == 200)
    return url


def login(driver, desk_url: str, username: str) -> None:
    driver.get(desk_url + "/")
    WebDriverWait(driver, 15).until(EC.presence_of_element_located((By.ID, "username")))
    assert "/login" in driver.current_url  # no session: the login page, no data
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-button").click()
    WebDriverWait(driver, 15).until(EC.presence_of_element_located((By.ID, "queue-body")))


def mark_page(driver) -> str:
    marker = uuid.uuid4().hex
    driver.execute_script("window.__deskE2E = arguments[0];", marker)
    return marker


def assert_not_reloaded(driver, marker: str) -> None:
    assert driver.execute_script("return window.__deskE2E || null;") == marker, "the page was reloaded"


def row(driver, ticket_id: int):
    found = driver.find_elements(By.CSS_SELECTOR, f'tr[data-ticket-id="{ticket_id}"]')
    return found[0] if found else None


def messages_text(driver) -> str:
    return driver.find_element(By.ID, "messages").text


# ---------------------------------------------------------------------- 1. desk + fake Rasa
def test_desk_flow_in_browser(processes, browser, tmp_path):
    db_url = f"sqlite:///{tmp_path}/appcare.db"
    handoff = HandoffStore(db_url)
    rasa = FakeRasa(handoff)
    try:
        env = desk_env(db_url, rasa.url, free_port())
        create_user(env, "anna", "staff")
        from desk.store import DeskStore

        DeskStore(db_url).save_answer("Openingstijden", "Het stadhuis is open van 9 tot 17 uur.", "test")
        desk_url = start_desk(processes, env)
        login(browser, desk_url, "anna")
        assert "Er wachten geen gesprekken." in browser.find_element(By.ID, "queue-body").text

        # A new handoff appears in the open queue without reloading it.
        marker = mark_page(browser)
        ticket = open_ticket(handoff, conversation_id="31612340000", reason="complaint", summary="Reden: klacht.")
        wait_until(lambda: row(browser, ticket.id), what="the new ticket in the queue")
        assert_not_reloaded(browser, marker)
        queue_row = row(browser, ticket.id)
        assert "klacht" in queue_row.text and "WhatsApp" in queue_row.text and "lelystad" in queue_row.text

        queue_row.find_element(By.CSS_SELECTOR, "a.ticket-link").click()
        WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "claim-button")))
        assert "ik wil een medewerker spreken" in browser.find_element(By.ID, "transcript").text
        browser.find_element(By.ID, "claim-button").click()
        WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "release-button")))
        assert "Je hebt dit gesprek opgepakt." in browser.find_element(By.ID, "notice").text
        assert "anna" in browser.find_element(By.ID, "ticket-status-label").text

        # Reply with a standard answer.
        Select(browser.find_element(By.ID, "standard-answer")).select_by_visible_text("Openingstijden")
        reply = browser.find_element(By.ID, "reply-text")
        assert reply.get_attribute("value") == "Het stadhuis is open van 9 tot 17 uur."
        reply.send_keys(" Groet, Anna")
        browser.find_element(By.ID, "reply-button").click()
        WebDriverWait(browser, 15).until(EC.text_to_be_present_in_element((By.ID, "notice"), "verstuurd"))
        sent = rasa.intents("EXTERNAL_kcc_reply")
        assert sent and sent[-1]["json"]["entities"]["kcc_text"] == "Het stadhuis is open van 9 tot 17 uur. Groet, Anna"
        assert sent[-1]["conversation_id"] == "31612340000"
        assert sent[-1]["query"]["output_channel"] == "latest"
        assert "verzonden" in messages_text(browser)

        # A reply Rasa does not take is shown as failed, and can be sent again.
        rasa.status = 500
        browser.find_element(By.ID, "reply-text").send_keys("Komt dit aan?")
        browser.find_element(By.ID, "reply-button").click()
        WebDriverWait(browser, 15).until(EC.text_to_be_present_in_element((By.ID, "messages"), "niet afgeleverd"))
        rasa.status = 200
        browser.find_element(By.CSS_SELECTOR, ".msg-failed .retry-button").click()
        WebDriverWait(browser, 15).until(EC.text_to_be_present_in_element((By.ID, "notice"), "verstuurd"))
        assert "niet afgeleverd" not in messages_text(browser)
        assert rasa.intents("EXTERNAL_kcc_reply")[-1]["json"]["entities"]["kcc_text"] == "Komt dit aan?"

        # The citizen writes again: it appears without a reload.
        marker = mark_page(browser)
        handoff.append_citizen_message("31612340000", "Dank u! En op zaterdag?")
        wait_until(lambda: "Dank u! En op zaterdag?" in messages_text(browser), what="the citizen message")
        assert_not_reloaded(browser, marker)

        # Internal note.
        browser.find_element(By.ID, "note-text").send_keys("Inwoner wil terugbellen")
        browser.find_element(By.ID, "note-button").click()
        WebDriverWait(browser, 15).until(EC.text_to_be_present_in_element((By.ID, "messages"), "Inwoner wil terugbellen"))
        assert "Interne notitie" in messages_text(browser)

        # Close with an outcome: back to the queue, the ticket is gone.
        Select(browser.find_element(By.ID, "close-outcome")).select_by_value("beantwoord")
        browser.find_element(By.ID, "close-confirm").click()  # "Ja, sluiten": closing is confirmed
        browser.find_element(By.ID, "close-button").click()
        WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "queue-body")))
        assert "gesloten" in browser.find_element(By.ID, "notice").text
        assert row(browser, ticket.id) is None
        assert rasa.intents("EXTERNAL_kcc_close")[-1]["json"]["entities"] == {"kcc_outcome": "beantwoord"}
        closed = handoff.get(ticket.id)
        assert closed.status == "closed" and closed.outcome == "beantwoord"

        # Logging out ends the session: the queue is no longer reachable.
        browser.find_element(By.ID, "logout-button").click()
        WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "login-button")))
        browser.get(desk_url + "/api/queue")
        assert "niet ingelogd" in browser.page_source
    finally:
        rasa.stop()


# ---------------------------------------------------------------------- 2. the real assistant
PNID = "100200300400500"
APP_SECRET = "e2e-app-secret"


def _whatsapp_ready() -> bool:
    if os.environ.get("DESK_E2E_CHANNEL") == "rest":  # force the REST channel
        return False
    return (ROOT / "channels" / "whatsapp" / "__init__.py").exists() and (ROOT / "tests" / "fake_graph_api.py").exists()


def _graph_text(record: Dict[str, Any]) -> str:
    body = record.get("json") or {}
    if body.get("type") == "text":
        return (body.get("text") or {}).get("body", "")
    if body.get("type") == "interactive":
        return ((body.get("interactive") or {}).get("body") or {}).get("text", "")
    if body.get("type") == "template":
        return json.dumps(body.get("template"), ensure_ascii=False)
    return json.dumps(body, ensure_ascii=False)


class Citizen:
    """Writes to the assistant as a citizen: WhatsApp (signed webhook) or REST."""

    def __init__(self, rasa_url: str, graph=None):
        self.rasa_url = rasa_url
        self.graph = graph
        self.id = "316" + "".join(random.choice("0123456789") for _ in range(8))
        self.rest_answers: List[str] = []

    def say(self, text: str) -> None:
        if self.graph is None:
            response = requests.post(
                f"{self.rasa_url}/webhooks/rest/webhook", json={"sender": self.id, "message": text}, timeout=60
            )
            assert response.status_code == 200, response.text
            self.rest_answers.extend(m.get("text", "") for m in response.json())
            return
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
                                "contacts": [{"profile": {"name": "E2E Inwoner"}, "wa_id": self.id}],
                                "messages": [
                                    {
                                        "from": self.id,
                                        "id": "wamid.E2E" + uuid.uuid4().hex,
                                        "timestamp": str(int(time.time())),
                                        "type": "text",
                                        "text": {"body": text},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
        response = requests.post(
            f"{self.rasa_url}/webhooks/whatsapp/webhook",
            data=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
            timeout=30,
        )
        assert response.status_code == 200, response.text

    def wait_turn_finished(self, timeout: float = 60.0) -> None:
        """Waits until the assistant is done with everything the citizen wrote, so that
        "the bot sent nothing" is a conclusion. REST: ``say`` returns only after Rasa
        finished the turn (its answers are in the tracker), nothing to wait for.
        WhatsApp: the channel's health says no message is open (every inbox message has
        a final status; one being answered counts as open) and no sender worker runs
        (sends are made by the worker)."""
        if self.graph is None:
            return

        def health() -> Any:
            try:
                response = requests.get(f"{self.rasa_url}/webhooks/whatsapp/health", timeout=5)
                return response.status_code, response.json()
            except (requests.RequestException, ValueError) as exc:
                return None, type(exc).__name__

        wait_for_state(
            "the WhatsApp channel to finish the citizen's message (no open message, no worker)",
            health,
            lambda h: h[0] == 200 and h[1].get("open_messages") == 0 and h[1].get("active_senders") == 0,
            timeout,
        )

    def received(self) -> List[str]:
        """Everything the citizen got: Graph API sends, or bot texts (REST answers and tracker)."""
        if self.graph is not None:
            return [_graph_text(r) for r in self.graph.delivered(self.id)]
        tracker = requests.get(f"{self.rasa_url}/conversations/{self.id}/tracker", timeout=30).json()
        return [e.get("text") or "" for e in tracker.get("events", []) if e.get("event") == "bot"]


def latest_model() -> Optional[Path]:
    """The model `make run` would serve (``DESK_E2E_MODEL`` may name another model file)."""
    override = os.environ.get("DESK_E2E_MODEL")
    if override:
        return Path(override) if Path(override).exists() else None
    from appcare.plugins.live_model import served

    return served()


def test_full_handoff_through_the_real_assistant(processes, browser, tmp_path):
    model = latest_model()
    if model is None:
        pytest.fail(
            "no trained model in models/*.tar.gz: train the assistant first (rasa train); "
            "this end-to-end test runs the real assistant and is never skipped",
            pytrace=False,
        )
    db_url = f"sqlite:///{tmp_path}/appcare.db"
    action_port, rasa_port, desk_port = free_port(), free_port(), free_port()
    rasa_url = f"http://127.0.0.1:{rasa_port}"

    graph = None
    if _whatsapp_ready():
        from tests.fake_graph_api import FakeGraphAPI

        graph = FakeGraphAPI().start()
    try:
        env = dict(os.environ)
        env.update(APPCARE_DB_URL=db_url, PYTHONUNBUFFERED="1", SQLALCHEMY_SILENCE_UBER_WARNING="1")
        if graph is not None:
            env.update(
                WHATSAPP_ACCESS_TOKEN="e2e-access-token",
                WHATSAPP_PHONE_NUMBER_ID=PNID,
                WHATSAPP_APP_SECRET=APP_SECRET,
                WHATSAPP_VERIFY_TOKEN="e2e-verify-token",
                WHATSAPP_GRAPH_URL=graph.url,
                WHATSAPP_TENANTS=f"{PNID}:lelystad",
            )
        endpoints = tmp_path / "endpoints.yml"
        endpoints.write_text(
            f'action_endpoint:\n  url: "http://127.0.0.1:{action_port}/webhook"\n'
            f'tracker_store:\n  type: SQL\n  dialect: "sqlite"\n  db: "{tmp_path}/tracker.db"\n',
            encoding="utf-8",
        )
        credentials = tmp_path / "credentials.yml"
        credentials.write_text(
            "rest:\n" + ("channels.whatsapp.WhatsAppInput:\n  send_interval: 0.05\n  shutdown_grace: 0.5\n" if graph is not None else ""),
            encoding="utf-8",
        )
        rasa_bin = str(VENV_BIN / "rasa")
        processes.start("actions", [rasa_bin, "run", "actions", "--port", str(action_port)], env)
        processes.start(
            "rasa",
            [
                rasa_bin, "run", "--enable-api", "--port", str(rasa_port), "--model", str(model),
                "--endpoints", str(endpoints), "--credentials", str(credentials),
            ],
            env,
        )
        desk_url = start_desk(processes, desk_env(db_url, rasa_url, desk_port))
        create_user(desk_env(db_url, rasa_url, desk_port), "anna", "staff")
        processes.wait_http("actions", f"http://127.0.0.1:{action_port}/health", timeout=120,
                            ok=lambda r: r.status_code == 200)
        processes.wait_http("rasa", f"{rasa_url}/status", timeout=600, ok=lambda r: r.status_code == 200)

        login(browser, desk_url, "anna")
        handoff = HandoffStore(db_url)
        citizen = Citizen(rasa_url, graph)

        # The citizen asks for a human: a ticket appears in the open queue.
        citizen.say("ik wil een medewerker spreken")
        ticket = wait_until(lambda: handoff.open_ticket_for(citizen.id), timeout=60, what="a handoff ticket")
        wait_until(lambda: citizen.received(), timeout=30, what="the handoff message to the citizen")
        wait_until(lambda: row(browser, ticket.id), timeout=15, what="the ticket in the queue")
        assert ticket.channel == ("whatsapp" if graph is not None else "rest")
        row(browser, ticket.id).find_element(By.CSS_SELECTOR, "a.ticket-link").click()
        WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "claim-button")))
        assert "ik wil een medewerker spreken" in browser.find_element(By.ID, "transcript").text
        browser.find_element(By.ID, "claim-button").click()
        WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "release-button")))

        # Staff reply: it reaches the citizen through Rasa (WhatsApp: the fake Graph API).
        reply_text = "Goedemiddag, u spreekt met Anna van het KCC. Waarmee kan ik u helpen?"
        before = len(citizen.received())
        browser.find_element(By.ID, "reply-text").send_keys(reply_text)
        browser.find_element(By.ID, "reply-button").click()
        WebDriverWait(browser, 30).until(EC.text_to_be_present_in_element((By.ID, "notice"), "verstuurd"))
        wait_until(lambda: reply_text in citizen.received()[before:], timeout=30, what="the reply at the citizen")
        assert "verzonden" in messages_text(browser)

        # The citizen's next message shows up in the ticket without a reload; the bot stays silent.
        marker = mark_page(browser)
        before = len(citizen.received())
        citizen.say("Ik wil graag weten wanneer mijn paspoort klaar is")
        wait_until(lambda: "wanneer mijn paspoort klaar is" in messages_text(browser), timeout=30,
                   what="the citizen's message in the ticket view")
        assert_not_reloaded(browser, marker)
        citizen.wait_turn_finished()
        assert citizen.received()[before:] == [], "the bot answered while a human has the conversation"

        # Staff close: the citizen gets a short closing message and the bot is back.
        Select(browser.find_element(By.ID, "close-outcome")).select_by_value("beantwoord")
        browser.find_element(By.ID, "close-confirm").click()  # "Ja, sluiten": closing is confirmed
        browser.find_element(By.ID, "close-button").click()
        WebDriverWait(browser, 30).until(EC.presence_of_element_located((By.ID, "queue-body")))
        assert "gesloten" in browser.find_element(By.ID, "notice").text
        closed = handoff.get(ticket.id)
        assert closed.status == "closed" and closed.outcome == "beantwoord"
        wait_until(lambda: len(citizen.received()) > before, timeout=30, what="the closing message")
        after_close = len(citizen.received())
        messages_in_ticket = len(handoff.get(ticket.id).messages)

        citizen.say("Wat zijn de openingstijden van het stadhuis?")
        wait_until(lambda: len(citizen.received()) > after_close, timeout=60, what="a bot answer after closing")
        assert len(handoff.get(ticket.id).messages) == messages_in_ticket  # no longer relayed
        assert handoff.open_ticket_for(citizen.id) is None
    finally:
        if graph is not None:
            graph.stop()
