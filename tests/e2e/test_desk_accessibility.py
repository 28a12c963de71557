"""Accessibility of the KCC desk in headless Chromium (issue 18).

1. ``test_axe_and_phone_layout_on_every_page``: every page a staff member, a
   coordinator and an editor see passes an axe-core audit (WCAG 2.0/2.1 A and AA),
   and at phone size (390x844) no page scrolls sideways; the queue's 'Openen' and the
   top bar's 'Uitloggen', 'Redactie' and 'Accounts' stay within the screen.
2. ``test_notification_after_permission``: the permission is asked only after
   'Meldingen aan'; with it granted, a new ticket shows a browser notification; the
   choice and 'Live bijwerken pauzeren' are remembered per colleague.
3. ``test_keyboard_only_claim_reply_close``: with 50 tickets in the queue and live
   updates running, a colleague finds a ticket, claims it, replies and closes it with
   the keyboard only; live updates keep the focus on the row.

axe-core comes from npm (``npm install --no-save`` into tests/e2e/.npm, once; not committed).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from test_desk_e2e import PASSWORD, create_user, desk_env, start_desk
from tests.support.desk_helpers import FakeRasa, free_port, open_ticket
from tests.support.editor_helpers import make_project
from tests.support.waiting import wait_for_state

from appcare.handoff_store import HandoffStore

E2E = Path(__file__).resolve().parent
NPM_DIR = E2E / ".npm"
AXE_JS = NPM_DIR / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_source() -> str:
    if not AXE_JS.exists():
        npm = shutil.which("npm")
        if not npm:
            pytest.fail("npm is required to install axe-core for the accessibility audit", pytrace=False)
        NPM_DIR.mkdir(exist_ok=True)
        run = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(NPM_DIR),
                              "axe-core@4"], capture_output=True, text=True, timeout=300)
        if run.returncode != 0 or not AXE_JS.exists():
            pytest.fail(f"npm install axe-core failed:\n{run.stdout}\n{run.stderr}", pytrace=False)
    return AXE_JS.read_text(encoding="utf-8")


def axe_violations(driver, source: str) -> List[Dict]:
    driver.execute_script(source)
    driver.set_script_timeout(60)
    result = driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}})"
        ".then(function (r) { done({passes: r.passes.length, violations: r.violations.map(function (v) {"
        "  return {id: v.id, impact: v.impact, help: v.help,"
        "          nodes: v.nodes.slice(0, 5).map(function (n) { return n.target.join(' ') + ': ' + n.failureSummary; })};"
        "})}); }, function (e) { done({passes: 0, violations: [{id: 'axe-error', impact: '', help: String(e), nodes: []}]}); });",
        WCAG_TAGS,
    )
    assert result["passes"] > 0 or result["violations"], f"axe checked nothing on {driver.current_url}"
    return result["violations"]


def login(driver, desk_url: str, username: str) -> None:
    driver.get(desk_url + "/login")
    WebDriverWait(driver, 15).until(EC.presence_of_element_located((By.ID, "username")))
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-button").click()
    WebDriverWait(driver, 15).until(EC.presence_of_element_located((By.ID, "logout-button")))


def logout(driver) -> None:
    driver.find_element(By.ID, "logout-button").click()
    WebDriverWait(driver, 15).until(EC.presence_of_element_located((By.ID, "login-button")))


def first_link(driver, prefix: str) -> str:
    links = driver.execute_script(
        "return Array.from(document.querySelectorAll('main a[href]')).map(a => a.getAttribute('href'))"
        ".filter(h => h.startsWith(arguments[0]) && h.length > arguments[0].length);", prefix)
    assert links, f"no link to {prefix}... on {driver.current_url}"
    return links[0]


def phone(driver) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})


def desktop(driver) -> None:
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def assert_fits_phone(driver, page: str) -> None:
    widths = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth];")
    assert widths[0] <= widths[1], f"{page} scrolls sideways on a phone: scrollWidth {widths[0]} > {widths[1]}"
    outside = driver.execute_script(
        "var sel = ['#logout-button', '#nav-editor', '#nav-users', 'a.ticket-link'];"
        "var bad = [];"
        "sel.forEach(function (s) { document.querySelectorAll(s).forEach(function (el) {"
        "  var r = el.getBoundingClientRect();"
        "  if (r.width === 0 || r.left < 0 || r.right > window.innerWidth) { bad.push(s + ' ' + JSON.stringify([r.left, r.right])); }"
        "}); });"
        "return bad;")
    assert not outside, f"{page}: not reachable within the phone's width: {outside}"


@pytest.fixture
def desk(processes, tmp_path):
    db_url = f"sqlite:///{tmp_path}/appcare.db"
    handoff = HandoffStore(db_url)
    rasa = FakeRasa(handoff)
    project = make_project(tmp_path / "project")
    env = desk_env(db_url, rasa.url, free_port())
    env.update(APPCARE_PROJECT_DIR=str(project), APPCARE_CONTENT_DIR=str(project / "content"))
    for name, role in (("anna", "staff"), ("carla", "coordinator"), ("eddy", "editor")):
        create_user(env, name, role)
    try:
        yield {"url": start_desk(processes, env), "handoff": handoff, "rasa": rasa}
    finally:
        rasa.stop()


# ---------------------------------------------------------------------- 1. axe + phone
def test_axe_and_phone_layout_on_every_page(desk, browser):
    source = axe_source()
    url, handoff = desk["url"], desk["handoff"]
    ticket = open_ticket(handoff, reason="complaint", summary="Reden: klacht over de afvalinzameling.", urgent=True)
    open_ticket(handoff, minutes_ago=45)
    failures: List[str] = []

    def audit(page: str) -> None:
        browser.get(url + page)
        WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.TAG_NAME, "main")))
        for violation in axe_violations(browser, source):
            failures.append(f"{page}: {violation['id']} ({violation['impact']}): {violation['help']}\n    "
                            + "\n    ".join(violation["nodes"]))
        phone(browser)
        try:
            browser.get(url + page)
            WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.TAG_NAME, "main")))
            assert_fits_phone(browser, page)
        finally:
            desktop(browser)

    audit("/login")
    login(browser, url, "anna")
    for page in ("/", f"/tickets/{ticket.id}", "/overview"):  # /overview: the 'no access' page
        audit(page)
    logout(browser)

    login(browser, url, "carla")
    for page in ("/", "/?tab=closed", f"/tickets/{ticket.id}", "/overview", "/answers", "/users"):
        audit(page)
    logout(browser)

    login(browser, url, "eddy")
    browser.get(url + "/editor/facts")
    fact_page = first_link(browser, "/editor/facts/")
    browser.get(url + "/editor/intents")
    intent_page = first_link(browser, "/editor/intents/")
    for page in ("/editor", "/editor/facts", fact_page, "/editor/intents", intent_page,
                 "/editor/inbox", "/editor/publish", "/"):
        audit(page)

    assert not failures, "WCAG 2.1 A/AA violations:\n" + "\n".join(failures)


# ---------------------------------------------------------------------- 2. notifications
WRAP_NOTIFICATION = """
var Original = window.Notification;
window.__shown = []; window.__asked = 0;
function Wrapped(title, options) { window.__shown.push(title + ' | ' + ((options || {}).body || '')); return new Original(title, options); }
Object.defineProperty(Wrapped, 'permission', { get: function () { return Original.permission; } });
Wrapped.requestPermission = function () { window.__asked += 1; return Original.requestPermission(); };
window.Notification = Wrapped;
"""


def rounds(driver) -> int:
    return int(driver.execute_script("return document.body.getAttribute('data-live-rounds') || '0';"))


def test_notification_after_permission(desk, browser):
    url, handoff = desk["url"], desk["handoff"]
    browser.execute_cdp_cmd("Browser.grantPermissions", {"origin": url, "permissions": ["notifications"]})
    login(browser, url, "anna")
    browser.execute_script(WRAP_NOTIFICATION)
    toggle = browser.find_element(By.ID, "notify-toggle")
    assert toggle.text == "Meldingen aan" and toggle.get_attribute("aria-pressed") == "false"

    # Without 'Meldingen aan' no permission is asked and no notification shown.
    first = open_ticket(handoff, reason="complaint")
    wait_for_state("the first ticket in the queue",
                   lambda: browser.find_elements(By.CSS_SELECTOR, f'tr[data-ticket-id="{first.id}"]'))
    assert browser.execute_script("return [window.__asked, window.__shown.length];") == [0, 0]

    toggle.click()
    wait_for_state("notifications switched on", lambda: toggle.get_attribute("aria-pressed"), lambda v: v == "true")
    assert toggle.text == "Meldingen uit"
    assert browser.execute_script("return window.__asked;") == 1
    assert "Meldingen staan aan" in browser.find_element(By.ID, "live-state").text
    assert browser.execute_script("return localStorage.getItem('desk:anna:notify');") == "1"

    second = open_ticket(handoff, reason="request_human")
    shown = wait_for_state("a notification for the new ticket", lambda: browser.execute_script("return window.__shown;"),
                           lambda v: any(f"#{second.id}" in t for t in v))
    assert len(shown) == 1, shown  # only the new ticket, not the one already in the queue
    assert browser.execute_script("return document.body.getAttribute('data-last-notified');") == str(second.id)

    # Pausing is remembered for this colleague; while paused the queue does not poll.
    live = browser.find_element(By.ID, "live-toggle")
    live.click()
    assert live.get_attribute("aria-pressed") == "true" and live.text == "Live bijwerken hervatten"
    browser.refresh()
    live = WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "live-toggle")))
    assert live.get_attribute("aria-pressed") == "true"
    assert browser.find_element(By.ID, "notify-toggle").text == "Meldingen uit"  # still on after the reload
    browser.execute_script(WRAP_NOTIFICATION)
    live.click()
    third = open_ticket(handoff, reason="complaint")
    wait_for_state("the queue live again with the third ticket",
                   lambda: browser.find_elements(By.CSS_SELECTOR, f'tr[data-ticket-id="{third.id}"]'))
    wait_for_state("a notification for the third ticket", lambda: browser.execute_script("return window.__shown;"),
                   lambda v: any(f"#{third.id}" in t for t in v))

    # Another colleague on this browser has their own settings.
    logout(browser)
    login(browser, url, "carla")
    assert browser.find_element(By.ID, "live-toggle").get_attribute("aria-pressed") == "false"
    assert browser.find_element(By.ID, "notify-toggle").text == "Meldingen aan"


# ---------------------------------------------------------------------- 3. keyboard only
def press(driver, key: str) -> None:
    ActionChains(driver).send_keys(key).perform()


def active(driver) -> Dict:
    return driver.execute_script(
        "var a = document.activeElement; var tr = a && a.closest ? a.closest('tr') : null;"
        "return {id: a ? a.id : '', tag: a ? a.tagName : '', text: a ? (a.textContent || '').trim() : '',"
        " row: tr ? tr.getAttribute('data-ticket-id') : null,"
        " cls: a ? a.className : ''};")


def tab_to(driver, found, what: str, limit: int = 250) -> List[Dict]:
    """Presses TAB until ``found(active element)``; returns the elements passed."""
    passed = []
    for _ in range(limit):
        press(driver, Keys.TAB)
        now = active(driver)
        if found(now):
            return passed
        passed.append(now)
    pytest.fail(f"{what} not reached with {limit} TABs; last: {passed[-5:]}")


def test_keyboard_only_claim_reply_close(desk, browser):
    url, handoff, rasa = desk["url"], desk["handoff"], desk["rasa"]
    tickets = [open_ticket(handoff, minutes_ago=60 - i, summary=f"Reden: vraag nummer {i}.") for i in range(50)]
    target = tickets[30]
    login(browser, url, "anna")
    wait_for_state("live updates running", lambda: rounds(browser), lambda n: n >= 1)

    passed = tab_to(browser, lambda a: a["row"] == str(target.id) and "ticket-link" in a["cls"], "the target's 'Openen'")
    assert passed[0]["text"] == "Naar de inhoud"  # the skip link comes first
    ring = browser.execute_script(
        "var s = getComputedStyle(document.activeElement); return [s.outlineStyle, parseFloat(s.outlineWidth), s.outlineColor];")
    assert ring[0] == "solid" and ring[1] >= 2 and ring[2] == "rgb(11, 58, 111)", ring  # #0b3a6f: 11:1 on white
    scroll_y = browser.execute_script("return window.scrollY;")

    # Live updates change the queue around the focused row: a new ticket comes in, the
    # one below is claimed and moves to the end (page 2 of 50 rows: off this page).
    newcomer = open_ticket(handoff, summary="Reden: nieuw binnen.")
    handoff.claim(tickets[31].id, "bert")
    start = rounds(browser)
    wait_for_state("the new ticket in the queue",
                   lambda: browser.find_elements(By.CSS_SELECTOR, f'tr[data-ticket-id="{newcomer.id}"]'))
    wait_for_state("the claimed ticket updated (or moved off the first page)",
                   lambda: browser.execute_script(
                       "var tr = document.querySelector('tr[data-ticket-id=\"' + arguments[0] + '\"]');"
                       "return tr ? tr.textContent : 'gone';", tickets[31].id),
                   lambda text: text == "gone" or "opgepakt door bert" in text)
    wait_for_state("two more live rounds", lambda: rounds(browser), lambda n: n >= start + 2)
    now = active(browser)
    assert now["row"] == str(target.id) and "ticket-link" in now["cls"], f"focus moved to {now}"
    assert browser.execute_script("return window.scrollY;") == scroll_y

    press(browser, Keys.ENTER)
    WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "claim-button")))
    passed = tab_to(browser, lambda a: a["id"] == "claim-button", "'Oppakken'")
    assert "reply-text" not in [p["id"] for p in passed]  # Oppakken before the reply form
    press(browser, Keys.ENTER)
    WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "release-button")))
    assert active(browser)["id"] == "release-button"  # focus back where the action was

    tab_to(browser, lambda a: a["id"] == "reply-text", "the reply field", limit=10)
    ActionChains(browser).send_keys("Dat regel ik voor je.").perform()
    tab_to(browser, lambda a: a["id"] == "reply-button", "'Versturen'", limit=5)
    press(browser, Keys.ENTER)
    WebDriverWait(browser, 15).until(EC.text_to_be_present_in_element((By.ID, "notice"), "verstuurd"))
    assert active(browser)["id"] == "reply-text"
    assert rasa.intents("EXTERNAL_kcc_reply")[-1]["json"]["entities"]["kcc_text"] == "Dat regel ik voor je."

    tab_to(browser, lambda a: a["id"] == "close-outcome", "the outcome list", limit=20)
    press(browser, Keys.ARROW_DOWN)  # a closed select changes its value with the arrow keys
    assert browser.find_element(By.ID, "close-outcome").get_attribute("value")
    if browser.find_elements(By.ID, "close-confirm"):
        tab_to(browser, lambda a: a["id"] == "close-confirm", "'Ja, sluiten'", limit=5)
        press(browser, Keys.SPACE)
    tab_to(browser, lambda a: a["id"] == "close-button", "'Gesprek sluiten'", limit=5)
    asks = bool(browser.find_element(By.ID, "close-button").get_attribute("onclick"))
    press(browser, Keys.ENTER)
    if asks:  # the page asks for confirmation in a dialog
        WebDriverWait(browser, 15).until(EC.alert_is_present()).accept()
    WebDriverWait(browser, 15).until(EC.presence_of_element_located((By.ID, "queue-body")))
    assert "gesloten" in browser.find_element(By.ID, "notice").text
    assert handoff.get(target.id).status == "closed"
