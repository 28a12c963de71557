"""The KCC desk queue in a real headless Chromium (Selenium), issue 18.

1. ``test_search_and_filters_with_the_keyboard``: 30 tickets of different reasons,
   municipalities, languages and channels; the search field and the filter form
   (submitted with Enter) show only the matching rows, 'Wissen' shows all again,
   and the 'Gesloten' tab finds a closed ticket by search.
2. ``test_urgent_ticket_created_last_comes_first``: an urgent ticket that arrives
   while the queue is open appears in 'Dringend' above older routine tickets, with
   its reason; a complaint is listed under 'Klachten'.
3. ``test_assignment_and_the_not_the_claimer_warning``: a coordinator assigns a
   ticket to a colleague on the ticket page; the colleague sees it as theirs; a
   second staff member sees 'Dit gesprek is opgepakt door ...', a reply without
   'Toch reageren' is refused (nothing sent), with the box ticked it is sent.

The desk runs in a thread (``tests.support.desk_helpers.start_desk``) against ``FakeRasa``;
every wait is for a state (WebDriverWait / ``wait_for_state``), never a fixed sleep.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.support.desk_helpers import PASSWORD, FakeRasa, dispose, make_user, open_ticket
from tests.support.desk_helpers import start_desk as start_desk_thread
from tests.support.waiting import wait_for_state

from appcare.handoff_store import HandoffStore

WAIT = 20  # seconds: upper bound of every wait for a state


# ---------------------------------------------------------------------- rig
class Rig:
    def __init__(self, db_url: str):
        self.db_url = db_url
        self.handoff = HandoffStore(db_url)
        self.rasa = FakeRasa(self.handoff, db_url)
        self.server = None

    def start(self) -> str:
        self.server = start_desk_thread(self.db_url, self.rasa.url)
        return self.server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.rasa.stop()


@pytest.fixture
def rig(tmp_path):
    db_url = f"sqlite:///{tmp_path}/desk-queue-e2e.db"
    rig = Rig(db_url)
    yield rig
    rig.stop()
    dispose(db_url)


# ---------------------------------------------------------------------- browser helpers
def login(driver, desk_url: str, username: str) -> None:
    """Logs in as ``username`` (any earlier session in this browser is dropped)."""
    driver.get(desk_url + "/login")
    driver.delete_all_cookies()
    driver.get(desk_url + "/login")
    WebDriverWait(driver, WAIT).until(EC.presence_of_element_located((By.ID, "username")))
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-button").click()
    WebDriverWait(driver, WAIT).until(EC.presence_of_element_located((By.ID, "queue-body")))
    WebDriverWait(driver, WAIT).until(
        EC.text_to_be_present_in_element((By.CSS_SELECTOR, "body"), username)
    )


ROW_IDS_JS = (
    "var b = document.getElementById('queue-body');"
    "if (!b || document.readyState !== 'complete') { return null; }"
    "return Array.prototype.map.call(b.querySelectorAll('tr[data-ticket-id]'),"
    " function (r) { return parseInt(r.getAttribute('data-ticket-id'), 10); });"
)


def row_ids(driver) -> Optional[List[int]]:
    """The ticket ids in the queue table, read in one go (live updates may swap rows)."""
    return driver.execute_script(ROW_IDS_JS)


def wait_rows(driver, expected, what: str, url_part: str = "") -> List[int]:
    """Waits until the page (its URL containing ``url_part``) lists exactly ``expected``."""
    want = sorted(expected)

    def probe():
        if url_part and url_part not in driver.current_url:
            return None
        ids = row_ids(driver)
        return sorted(ids) if ids is not None else None

    return wait_for_state(what, probe, lambda ids: ids == want, timeout=WAIT)


def row_text(driver, ticket_id: int) -> str:
    return driver.execute_script(
        "var r = document.getElementById('ticket-' + arguments[0]); return r ? r.innerText : null;", ticket_id
    ) or ""


def notice(driver, contains: str) -> str:
    WebDriverWait(driver, WAIT).until(EC.text_to_be_present_in_element((By.ID, "notice"), contains))
    return driver.find_element(By.ID, "notice").text


def search_field(driver):
    return WebDriverWait(driver, WAIT).until(EC.element_to_be_clickable((By.ID, "f-q")))


# ---------------------------------------------------------------------- 1. search and filters
TOPICS = ["paspoort", "afvalcontainer", "parkeervergunning", "rijbewijs", "bijstandsuitkering", "lantaarnpaal"]
REASONS = ["request_human", "personal_case", "out_of_scope", "not_understood", "complaint"]
MUNICIPALITIES = ["lelystad", "terneuzen", "almere"]
LANGUAGES = [None, "pl", "en", "nl"]
CHANNELS = ["whatsapp", "whatsapp", "rest", "socketio"]


def test_search_and_filters_with_the_keyboard(rig, browser):
    make_user(rig.db_url, "anna", "staff")
    specs: List[Dict] = []
    for i in range(30):
        spec = {
            "topic": TOPICS[i % 6],
            "reason": REASONS[i % 5],
            "municipality": MUNICIPALITIES[(i // 6 + i) % 3],
            "language": LANGUAGES[(i // 2) % 4],
            "channel": CHANNELS[(i // 3) % 4],
        }
        ticket = open_ticket(
            rig.handoff,
            summary=f"Reden: {spec['reason']}. Vraag over {spec['topic']}.",
            reason=spec["reason"],
            municipality=spec["municipality"],
            language=spec["language"],
            channel=spec["channel"],
            minutes_ago=60 - i,
        )
        spec["id"] = ticket.id
        specs.append(spec)
    closed = open_ticket(rig.handoff, summary="Reden: persoonlijke zaak. Omgevingsvergunning dakkapel.",
                         reason="personal_case", municipality="almere")
    rig.handoff.close(closed.id, "beantwoord")

    def ids(**match) -> List[int]:
        return [s["id"] for s in specs if all(s[k] == v for k, v in match.items())]

    everything = ids()
    assert len(everything) == 30
    desk_url = rig.start()
    login(browser, desk_url, "anna")
    wait_rows(browser, everything, "all 30 open tickets in the queue")
    assert closed.id not in row_ids(browser)

    # Typing in the search field and pressing Enter: only the matching rows.
    field = search_field(browser)
    field.send_keys("parkeervergunning", Keys.ENTER)
    parking = ids(topic="parkeervergunning")
    assert len(parking) == 5
    wait_rows(browser, parking, "only the 'parkeervergunning' tickets", "q=parkeervergunning")
    assert search_field(browser).get_attribute("value") == "parkeervergunning"  # the search is kept
    assert "5 gesprekken gevonden" in browser.find_element(By.ID, "queue-found").text
    for ticket_id in parking:
        assert "parkeervergunning" in row_text(browser, ticket_id)

    # Search and a municipality filter together, submitted with Enter in the form.
    Select(browser.find_element(By.ID, "f-municipality")).select_by_value("terneuzen")
    search_field(browser).send_keys(Keys.ENTER)
    both = ids(topic="parkeervergunning", municipality="terneuzen")
    assert 0 < len(both) < len(parking)
    wait_rows(browser, both, "parkeervergunning in terneuzen", "municipality=terneuzen")

    # 'Wissen': all tickets again, the form empty.
    browser.find_element(By.LINK_TEXT, "Wissen").send_keys(Keys.ENTER)
    wait_for_state("the queue without filters", lambda: "?" not in browser.current_url)
    wait_rows(browser, everything, "all 30 tickets after 'Wissen'")
    assert search_field(browser).get_attribute("value") == ""
    assert Select(browser.find_element(By.ID, "f-municipality")).first_selected_option.get_attribute("value") == ""

    # One filter at a time, chosen with the keyboard, submitted with Enter.
    for field_id, value, expected in (
        ("f-reason", "personal_case", ids(reason="personal_case")),
        ("f-language", "pl", ids(language="pl")),
        ("f-channel", "rest", ids(channel="rest")),
        ("f-municipality", "almere", ids(municipality="almere")),
    ):
        assert 0 < len(expected) < 30, (field_id, value)
        select = browser.find_element(By.ID, field_id)
        Select(select).select_by_value(value)
        # 'Toepassen' reached with the keyboard and pressed with Enter.
        browser.find_element(By.CSS_SELECTOR, "form.queue-filters button[type=submit]").send_keys(Keys.ENTER)
        wait_rows(browser, expected, f"only the tickets with {field_id}={value}", f"={value}")
        assert f"{len(expected)} gesprek" in browser.find_element(By.ID, "queue-found").text
        browser.find_element(By.LINK_TEXT, "Wissen").send_keys(Keys.ENTER)
        wait_for_state("the queue without filters", lambda: "?" not in browser.current_url)
        wait_rows(browser, everything, f"all tickets again after {field_id}")

    # The language and channel are visible in the rows they were filtered on.
    polish = ids(language="pl")[0]
    assert "Pools" in row_text(browser, polish)
    web = ids(channel="rest")[0]
    assert "Web (REST)" in row_text(browser, web)

    # A search that matches nothing says so.
    search_field(browser).send_keys("bestaatniet", Keys.ENTER)
    wait_rows(browser, [], "no rows for a search without matches", "q=bestaatniet")
    assert "Geen gesprekken gevonden" in browser.find_element(By.ID, "queue-body").text

    # The 'Gesloten' tab finds the closed ticket by search.
    browser.find_element(By.LINK_TEXT, "Wissen").send_keys(Keys.ENTER)
    wait_rows(browser, everything, "all tickets again")
    browser.find_element(By.LINK_TEXT, "Gesloten").send_keys(Keys.ENTER)
    wait_rows(browser, [closed.id], "the closed ticket in the 'Gesloten' tab", "tab=closed")
    search_field(browser).send_keys("dakkapel", Keys.ENTER)
    wait_rows(browser, [closed.id], "the closed ticket found by search", "q=dakkapel")
    assert "tab=closed" in browser.current_url
    assert "Beantwoord" in row_text(browser, closed.id)
    search_field(browser).clear()
    search_field(browser).send_keys("paspoort", Keys.ENTER)  # open tickets are not in this tab
    wait_rows(browser, [], "no open tickets in the 'Gesloten' tab", "q=paspoort")


# ---------------------------------------------------------------------- 2. urgent first
SECTIONS_JS = (
    "var b = document.getElementById('queue-body');"
    "if (!b) { return null; }"
    "return Array.prototype.map.call(b.querySelectorAll('tr'), function (r) {"
    "  return r.getAttribute('data-ticket-id') ? 'ticket-' + r.getAttribute('data-ticket-id')"
    "       : (r.id || r.className); });"
)


def test_urgent_ticket_created_last_comes_first(rig, browser):
    make_user(rig.db_url, "anna", "staff")
    routine = [
        open_ticket(rig.handoff, summary=f"Reden: vraagt om een medewerker. Vraag {n}.", minutes_ago=minutes)
        for n, minutes in enumerate((40, 30, 20))
    ]
    complaint = open_ticket(rig.handoff, reason="complaint", summary="Reden: klacht. Stoep niet geveegd.",
                            minutes_ago=10)
    desk_url = rig.start()
    login(browser, desk_url, "anna")
    wait_rows(browser, [t.id for t in routine] + [complaint.id], "the routine tickets and the complaint")

    # The urgent ticket arrives last, while the queue is open: it appears on top.
    urgent = open_ticket(rig.handoff, reason="urgent", urgent=True, summary="Reden: dringend. Gaslucht in huis.")
    expected = (
        ["section-urgent", f"ticket-{urgent.id}", "section-complaints", f"ticket-{complaint.id}", "section-main"]
        + [f"ticket-{t.id}" for t in routine]  # routine: waiting longest first
    )
    wait_for_state(
        "the urgent ticket on top of the live queue, the complaint under 'Klachten'",
        lambda: browser.execute_script(SECTIONS_JS),
        lambda rows: rows == expected,
        timeout=WAIT,
    )

    urgent_row = row_text(browser, urgent.id)
    assert "Dringend" in urgent_row  # a word, not only a colour
    assert "dringend (mogelijk gevaar of nood)" in urgent_row  # the reason is visible
    assert "Gaslucht in huis" in urgent_row
    assert "urgent" in browser.find_element(By.ID, f"ticket-{urgent.id}").get_attribute("class").split()
    assert browser.find_element(By.ID, "section-urgent").text.startswith("Dringend (1)")
    assert browser.find_element(By.ID, "section-complaints").text.startswith("Klachten (1)")
    assert "klacht" in row_text(browser, complaint.id)
    for ticket in routine:
        assert "Dringend" not in row_text(browser, ticket.id)

    # Also after a full reload the urgent ticket is the first row.
    browser.refresh()
    wait_for_state("the reloaded queue", lambda: browser.execute_script(SECTIONS_JS), lambda rows: rows == expected,
                   timeout=WAIT)


# ---------------------------------------------------------------------- 3. assignment and warning
def open_ticket_page(driver, desk_url: str, ticket_id: int) -> None:
    driver.get(f"{desk_url}/tickets/{ticket_id}")
    WebDriverWait(driver, WAIT).until(EC.presence_of_element_located((By.ID, "reply-form")))


def test_assignment_and_the_not_the_claimer_warning(rig, browser):
    make_user(rig.db_url, "cora", "coordinator")
    make_user(rig.db_url, "anna", "staff")
    make_user(rig.db_url, "bert", "staff")
    ticket = open_ticket(rig.handoff, conversation_id="31698765432", summary="Reden: persoonlijke zaak. Huurtoeslag.",
                         reason="personal_case", minutes_ago=3)
    other = open_ticket(rig.handoff, summary="Reden: vraagt om een medewerker. Iets anders.", minutes_ago=1)
    desk_url = rig.start()

    # The coordinator assigns the ticket to anna on the ticket page.
    login(browser, desk_url, "cora")
    open_ticket_page(browser, desk_url, ticket.id)
    Select(browser.find_element(By.ID, "assignee")).select_by_value("anna")
    browser.find_element(By.ID, "assign-button").click()
    assert "toegewezen" in notice(browser, "toegewezen")
    WebDriverWait(browser, WAIT).until(EC.text_to_be_present_in_element((By.ID, "ticket-status"), "anna"))
    assert rig.handoff.get(ticket.id).claimed_by == "anna"

    # anna sees it as hers: under 'Door mij', marked as picked up by her, no warning.
    login(browser, desk_url, "anna")
    Select(browser.find_element(By.ID, "f-claimed")).select_by_value("me")
    search_field(browser).send_keys(Keys.ENTER)
    wait_rows(browser, [ticket.id], "anna's own tickets", "claimed=me")
    assert "opgepakt door anna" in row_text(browser, ticket.id)
    open_ticket_page(browser, desk_url, ticket.id)
    assert browser.find_elements(By.ID, "release-button")
    assert not browser.find_elements(By.ID, "reply-warning")
    assert not browser.find_elements(By.ID, "reply-override")
    assert "anna" in browser.find_element(By.ID, "ticket-status").text

    # bert opens the same ticket: the warning names anna.
    login(browser, desk_url, "bert")
    wait_rows(browser, [ticket.id, other.id], "bert's queue")
    assert "opgepakt door anna" in row_text(browser, ticket.id)
    open_ticket_page(browser, desk_url, ticket.id)
    warning = browser.find_element(By.ID, "reply-warning").text
    assert "Dit gesprek is opgepakt door anna" in warning
    override = browser.find_element(By.ID, "reply-override")
    assert not override.is_selected()

    # Without 'Toch reageren' the browser does not send the form: a message at the box.
    browser.find_element(By.ID, "reply-text").send_keys("Ik help u verder.")
    page_marker = browser.execute_script("window.__queueE2E = 'not-sent'; return window.__queueE2E;")
    browser.find_element(By.ID, "reply-button").click()
    assert browser.execute_script("return window.__queueE2E || null;") == page_marker  # no navigation
    assert override.get_attribute("validationMessage")  # the browser says why
    assert browser.execute_script("return document.getElementById('reply-form').checkValidity();") is False
    assert rig.rasa.intents("EXTERNAL_kcc_reply") == []

    # The desk itself refuses it too (a submit that skips the browser's check).
    browser.execute_script("document.getElementById('reply-override').removeAttribute('required');")
    browser.find_element(By.ID, "reply-button").click()
    refused = notice(browser, "niet verstuurd")
    assert "Toch reageren" in refused
    assert rig.rasa.intents("EXTERNAL_kcc_reply") == []
    assert "Ik help u verder." not in browser.find_element(By.ID, "messages").text
    assert "Dit gesprek is opgepakt door anna" in browser.find_element(By.ID, "reply-warning").text
    assert rig.handoff.get(ticket.id).claimed_by == "anna"

    # With the box ticked the reply is sent.
    browser.find_element(By.ID, "reply-text").send_keys("Ik help u verder.")
    browser.find_element(By.ID, "reply-override").click()
    refused_notice = browser.find_element(By.ID, "notice")
    browser.find_element(By.ID, "reply-button").click()
    WebDriverWait(browser, WAIT).until(EC.staleness_of(refused_notice))  # the refusal's page is gone
    notice(browser, "Je antwoord is verstuurd.")
    sent = rig.rasa.intents("EXTERNAL_kcc_reply")
    assert len(sent) == 1
    assert sent[0]["conversation_id"] == "31698765432"
    assert sent[0]["json"]["entities"]["kcc_text"] == "Ik help u verder."
    WebDriverWait(browser, WAIT).until(EC.text_to_be_present_in_element((By.ID, "messages"), "Ik help u verder."))
