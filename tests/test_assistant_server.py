"""The real assistant end to end through the REST channel: trained model, Rasa server,
action server. Checks what a citizen sees, bad input and that logs hold no personal data."""
from __future__ import annotations

import re

import pytest
import requests

from tests.conftest import FIXTURE_CONTENT
from tests.support.assistant import Assistant

BSN = "123456782"
PHONE = "0612345678"


@pytest.fixture(scope="module")
def assistant(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("assistant")
    # facts (fees, the test roadworks feed) from tests/fixtures/content, not the editors' content/
    running = Assistant(workdir, env={"APPCARE_MUNICIPALITY": "lelystad",
                                      "APPCARE_CONTENT_DIR": str(FIXTURE_CONTENT)}).start()
    yield running
    running.stop()


def texts(replies):
    return "\n".join(r.get("text", "") for r in replies)


def test_first_contact_privacy_notice_and_greeting(assistant):
    replies = texts(assistant.say("c-greet", "hallo"))
    assert "Deel geen BSN" in replies and "digitale assistent van de gemeente Lelystad" in replies


def test_issue_examples_are_answered(assistant):
    fee = texts(assistant.say("c-fee", "wat kost een id kaart voor mn dochter van 12"))
    assert "€ 37,99" in fee
    marriage = texts(assistant.say("c-marry", "we willen trouwen hoe gaat dat"))
    assert "melding voorgenomen" in marriage
    roadworks = texts(assistant.say("c-road", "is de Larserdreef nog afgesloten"))
    assert "Larserdreef" in roadworks
    hours = texts(assistant.say("c-hours", "hoe laat zijn jullie morgen open"))
    assert re.search(r"(open van|gesloten)", hours)


def test_follow_up_uses_context(assistant):
    assistant.say("c-follow", "wat moet ik meenemen voor een paspoort")
    follow = texts(assistant.say("c-follow", "en wat kost dat?"))
    assert "Hoe oud" in follow or "€" in follow


@pytest.mark.parametrize("text,intent,language", [
    ("At what time does the town hall close on Friday?", "opening_hours", "en"),
    ("Do której godziny jest czynny urząd w piątek?", "opening_hours", "pl"),
    ("Belediye ne zaman açık?", "opening_hours", "tr"),
    ("متى يغلق مكتب البلدية يوم الجمعة؟", "opening_hours", "ar"),
    ("Was muss ich für einen neuen Reisepass bezahlen?", "passport_fees", "de"),
])
def test_other_languages_land_on_the_right_intent_and_set_the_language(assistant, text, intent, language):
    """Only a few training examples are in these languages: the multilingual sentence vector
    carries them."""
    sender = f"c-lang-{language}"
    assistant.say(sender, text)
    tracker = requests.get(f"{assistant.url}/conversations/{sender}/tracker", timeout=30).json()
    assert tracker["latest_message"]["intent"]["name"] == intent, tracker["latest_message"]["intent_ranking"][:3]
    assert tracker["slots"]["language"] == language


def test_handoff_silence_and_return(assistant):
    handoff = texts(assistant.say("c-human", "ik wil een medewerker"))
    assert "collega van het klantcontactcentrum" in handoff
    assert assistant.say("c-human", "het gaat om mijn aanvraag") == []  # relayed, bot silent
    back = texts(assistant.say("c-human", "terug naar de bot"))
    assert "digitale assistent" in back


@pytest.mark.parametrize("text", [
    "", "👍", "😀😀😀🎉", "https://www.example.org/pagina", "x" * 5000,
    "\x00\x01ÿþ garbage \ufffd", "What time does the town hall open?", "?????",
])
def test_bad_input_always_gets_a_reply(assistant, text):
    replies = assistant.say(f"c-bad-{abs(hash(text)) % 10000}", text)
    assert replies and all(r.get("text") or r.get("buttons") for r in replies)


def test_logs_hold_no_personal_data(assistant):
    assistant.say("c-pii", f"mijn bsn is {BSN} en bel me op {PHONE}, mail jan@example.nl")
    assistant.say("c-pii", "ik wil een medewerker")
    logs = assistant.log_text()
    for secret in (BSN, PHONE, "jan@example.nl"):
        assert secret not in logs


def test_unreachable_action_server_still_gets_a_reply(tmp_path):
    """No action server at all: Rasa cannot run custom actions, the citizen still gets
    the default reply and the log explains it without the message text."""
    running = Assistant(tmp_path, start_actions=False).start()
    try:
        replies = running.say("c-noactions", f"wat kost een paspoort, mijn bsn is {BSN}")
        assert replies and "er ging iets mis" in texts(replies).lower()
        logs = running.log_text()
        assert "no reply produced" in logs and BSN not in logs
    finally:
        running.stop()


def test_not_understood_twice_hands_off_once_then_waits(assistant):
    """The handoff that the clarifying question asks for (FollowupAction) ends the turn:
    no second clarifying question, no second ticket message."""
    first = texts(assistant.say("c-miss", "blabla dinges"))
    assert "medewerker" in first.lower()
    second = texts(assistant.say("c-miss", "nee dat bedoel ik niet"))
    assert second.count("Ik geef je vraag door") == 1 and "Sorry, dan begreep ik je verkeerd" not in second
    events = requests.get(f"{assistant.url}/conversations/c-miss/tracker", timeout=30).json()["events"]
    actions = [e["name"] for e in events if e.get("event") == "action"]
    assert actions.count("action_handoff_to_kcc") == 1 and actions[-1] == "action_listen"


def test_urgent_message_gets_the_numbers_and_english_gets_english(assistant):
    urgent = texts(assistant.say("c-urgent", "mijn man bedreigt me, ik ben bang om thuis te slapen vannacht"))
    assert "112" in urgent and "0800-2000" in urgent and "voorrang" in urgent
    english = texts(assistant.say("c-en", "Hello, what does a passport cost?"))
    assert "computer program, not a person" in english and "€" in english and "kost" not in english
