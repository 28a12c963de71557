"""One rule for every reply (issue 17): a fact marked ``verified: false`` reaches a
citizen only together with the caveat ("Let op: ... nog bevestigen"), and never in
strict mode (``APPCARE_STRICT_FACTS=1``), where the citizen gets the municipality's
verified website and phone number, or a colleague, instead.

The main tests copy content/*.yml, mark EVERY fact unverified, and run every action of
the action server on representative conversations (first message with the privacy
notice, fees, opening hours, passport, marriage, roadworks, small talk, clarifying
questions, every kind of handoff at several times of the week, failures). They collect
every value of that content as a citizen would read it (links, phone numbers, e-mail
addresses, amounts, sentences, list items, numbers with their unit, clock times) and
look for them in every reply:

* strict mode: no reply contains one;
* normal mode: every reply that contains one is followed by the caveat in the same turn.

The crisis numbers (112, 113, Veilig Thuis) are the one exception, by design: a citizen
in danger gets them at once in every mode (appcare.content.SAFETY_PREFIXES).

The tests after those show single answers a citizen notices: the handoff promise
without a clock time while the KCC hours are placeholders, the privacy link, facts
that moved from the reply texts to content, and the fee wording.
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
from ruamel.yaml import YAML

from tests.conftest import ROOT, ActionResult, run_action, run_followup

SHIPPED_CONTENT = ROOT / "content"
CAVEATS = {"utter_unverified_notice", "utter_privacy_link_unverified"}
MUNICIPALITIES = ("terneuzen", "lelystad")
UNITS = r"(?:jaar|jaren|dagen|werkdagen|maanden|weken|years|days|working days|months|weeks|uur)"


# ------------------------------------------------------------------ content copies
def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.width = 4096
    yaml.preserve_quotes = True
    return yaml


def _is_fact(node: Any) -> bool:
    return isinstance(node, dict) and "value" in node and "source" in node and "checked" in node


def _walk_facts(node: Any, visit: Callable[[Dict[str, Any]], None]) -> None:
    if isinstance(node, dict):
        if _is_fact(node) or {"date", "reason", "source"} <= set(node):  # a fact or a closure exception
            visit(node)
        for value in list(node.values()):
            _walk_facts(value, visit)
    elif isinstance(node, list):
        for item in node:
            _walk_facts(item, visit)


def _node(doc: Dict[str, Any], dotted: str) -> Dict[str, Any]:
    node = doc
    for key in dotted.split("."):
        node = node[key]
    return node


def make_content(target: Path, edit: Optional[Callable[[str, Dict[str, Any]], None]] = None,
                 all_unverified: bool = False) -> Path:
    """A copy of content/ in ``target`` (the roadworks example feeds included); with
    ``all_unverified`` every fact gets ``verified: false``; ``edit(file stem, doc)`` may
    change a file's YAML before it is written."""
    shutil.copytree(SHIPPED_CONTENT, target)
    yaml = _yaml()
    for path in sorted(target.glob("*.yml")):
        doc = yaml.load(path.read_text(encoding="utf-8"))
        if all_unverified:
            _walk_facts(doc, lambda fact: fact.__setitem__("verified", False))
        if edit:
            edit(path.stem, doc)
        with path.open("w", encoding="utf-8") as handle:
            yaml.dump(doc, handle)
    return target


@pytest.fixture
def use_content(tmp_path, monkeypatch):
    """Call with the keyword arguments of :func:`make_content`; points the loader (and the
    local roadworks feed) at the copy for this test."""
    from appcare import content, roadworks_feed

    previous = content.CONTENT_DIR
    monkeypatch.setattr(roadworks_feed, "_client", None)
    for name in ("APPCARE_ENV", "ROADWORKS_URL_TERNEUZEN", "ROADWORKS_URL_LELYSTAD"):
        monkeypatch.delenv(name, raising=False)
    count = {"n": 0}

    def _use(**kwargs: Any) -> Path:
        count["n"] += 1
        target = make_content(tmp_path / f"content{count['n']}", **kwargs)
        content.use_content_dir(target)
        return target

    yield _use
    content.use_content_dir(previous)


# ------------------------------------------------------------------ what a citizen would read
@dataclass
class Needle:
    path: str
    pattern: "re.Pattern[str]"
    shown: str


def _time_patterns(text: str) -> List[str]:
    hour, minute = text.split(":")
    forms = {f"{int(hour)}:{minute}", f"{int(hour):02d}:{minute}", f"{int(hour)}.{minute}"}
    return [rf"(?<![\d:.]){re.escape(form)}(?![\d])" for form in forms]


def needles(municipality: str) -> List[Needle]:
    """Every value of the municipality's content as it can show up in a reply."""
    from appcare import content
    from appcare.content import (FeeFact, HoursFact, IntFact, LocationsFact, TextFact, TextListFact,
                                 is_safety_fact, iter_facts, money)

    found: List[Needle] = []

    def add(path: str, pattern: str, shown: str) -> None:
        found.append(Needle(path, re.compile(pattern), shown))

    loaded = content.load(municipality)
    for path, fact in iter_facts(loaded):
        if is_safety_fact(path):
            continue
        value = fact.value
        if isinstance(fact, FeeFact):
            add(path, re.escape(money(value)), money(value))
        elif isinstance(fact, IntFact):
            add(path, rf"(?<![\d,.:€]){value}\s+{UNITS}\b", f"{value} <unit>")
        elif isinstance(fact, HoursFact):
            for ranges in value.values():
                for item in ranges:
                    for moment in item.split("-"):
                        for pattern in _time_patterns(moment):
                            add(path, pattern, moment)
        elif isinstance(fact, TextFact):
            if re.fullmatch(r"\d{1,2}:\d{2}", value):
                for pattern in _time_patterns(value):
                    add(path, pattern, value)
            else:
                add(path, rf"(?<![\w/]){re.escape(value)}(?![\w/-]|\.\w)", value)
        elif isinstance(fact, (TextListFact, LocationsFact)):
            for item in value:
                text = item.name if hasattr(item, "name") else str(item)
                add(path, re.escape(text), text)
    for exception in loaded.closures.exceptions:
        add("closures.exceptions", re.escape(exception.reason), exception.reason)
    return found


def quoted(text: str, found: List[Needle]) -> List[str]:
    return sorted({f"{n.path}={n.shown!r}" for n in found if n.pattern.search(text)})


# ------------------------------------------------------------------ every response path
@dataclass
class Scenario:
    label: str
    action: str  # the action's name
    text: str = ""
    intent: Optional[str] = None
    entities: List[Any] = field(default_factory=list)
    slots: Dict[str, Any] = field(default_factory=dict)
    when: Tuple[int, ...] = (2026, 11, 25, 10, 0)  # a Wednesday morning
    ranking: List[Dict[str, Any]] = field(default_factory=list)
    patch: Optional[str] = None  # "store_down": the handoff store cannot be reached


PASSPORT_INTENTS = ("passport_apply", "passport_fees", "passport_bring", "passport_processing_time",
                    "passport_validity", "passport_express", "passport_lost", "passport_pickup", "passport_child")
MARRIAGE_INTENTS = ("marriage_how", "marriage_notice", "marriage_costs", "marriage_free", "marriage_witnesses",
                    "marriage_location", "marriage_vs_partnership")
HANDOFF_INTENTS = ("request_human", "request_callback", "urgent", "personal_case", "complaint",
                   "out_of_scope_municipal")
HANDOFF_TIMES = {
    "wednesday 10:00": (2026, 11, 25, 10, 0),
    "wednesday 07:00": (2026, 11, 25, 7, 0),
    "wednesday 20:00": (2026, 11, 25, 20, 0),
    "saturday 22:00": (2026, 11, 28, 22, 0),
    "christmas day": (2026, 12, 25, 10, 0),
}
STREETS = {"terneuzen": "Noordstraat", "lelystad": "Stationsdreef"}
AREAS = {"terneuzen": "Axel", "lelystad": "Stadshart"}


def scenarios(municipality: str) -> List[Scenario]:
    street, area = STREETS[municipality], AREAS[municipality]
    items: List[Scenario] = [
        Scenario("greeting", "action_greet", "hallo", "greet"),
        Scenario("goodbye", "action_goodbye", "doei", "goodbye"),
        Scenario("feedback up", "action_record_feedback", "👍", "feedback_positive",
                 slots={"pending_question": "feedback"}),
        Scenario("feedback down", "action_record_feedback", "👎", "feedback_negative",
                 slots={"pending_question": "feedback"}),
        Scenario("yes to a colleague", "action_handle_yes_no", "ja", "affirm", slots={"pending_question": "colleague"}),
        Scenario("no after feedback", "action_handle_yes_no", "nee", "deny", slots={"pending_question": "feedback"}),
        Scenario("yes", "action_handle_yes_no", "ja", "affirm"),
        Scenario("age after fees", "action_handle_inform", "ik ben 34", "inform", [("age", "34")],
                 slots={"pending_question": "age", "topic": "passport_fees", "document_type": "paspoort"}),
        Scenario("day after hours", "action_handle_inform", "en zaterdag?", "inform", [("date_expr", "zaterdag")],
                 slots={"topic": "opening_hours"}),
        Scenario("street asked", "action_handle_inform", street, "inform", [("street", street)],
                 slots={"pending_question": "street", "topic": "roadworks_status"}),
        Scenario("bare document", "action_handle_inform", "id kaart", "inform", [("document_type", "id_kaart")]),
        Scenario("clarify", "action_clarify", "hoe zit dat met die dingen", "nlu_fallback",
                 ranking=[{"name": "passport_fees", "confidence": 0.4}, {"name": "marriage_costs", "confidence": 0.3}]),
        Scenario("second miss", "action_clarify", "blabla bla", "nlu_fallback", slots={"failed_attempts": 1}),
        Scenario("hours this week", "action_opening_hours", "openingstijden", "opening_hours"),
        Scenario("phone hours tomorrow", "action_opening_hours", "morgen bellen", "opening_hours",
                 [("date_expr", "morgen"), ("desk", "telefonisch")]),
        Scenario("hours saturday", "action_opening_hours", "zaterdag open?", "opening_hours", [("date_expr", "zaterdag")]),
        Scenario("hours holiday", "action_opening_hours", "open op 2e kerstdag?", "opening_hours",
                 [("date_expr", "2e kerstdag")]),
        Scenario("hours evening", "action_opening_hours", "donderdagavond open?", "opening_hours",
                 [("date_expr", "donderdagavond")]),
        Scenario("hours next week", "action_opening_hours", "volgende week", "opening_hours",
                 [("date_expr", "volgende week")]),
        Scenario("open now", "action_opening_hours", "nu open?", "opening_hours_now"),
        Scenario("open now, sunday", "action_opening_hours", "nu open?", "opening_hours_now", when=(2026, 11, 29, 12, 0)),
        Scenario("roadworks street", "action_roadworks", f"werk in de {street}?", "roadworks_status",
                 [("street", street)]),
        Scenario("roadworks area", "action_roadworks", f"werkzaamheden in {area}", "roadworks_status", [("area", area)]),
        Scenario("roadworks anywhere", "action_roadworks", "zijn er wegwerkzaamheden", "roadworks_status"),
        Scenario("roadworks duration", "action_roadworks", "tot wanneer?", "roadworks_duration", [("street", street)]),
        Scenario("roadworks detour", "action_roadworks", "omleiding?", "roadworks_detour", [("street", street)]),
        Scenario("relay", "action_relay_to_kcc", "nog een vraag", "greet", slots={"handoff_active": True}),
        Scenario("back to bot", "action_return_to_bot", "stop", "return_to_bot", slots={"handoff_active": True}),
        Scenario("staff reply", "action_deliver_staff_reply", "", "EXTERNAL_kcc_reply", [("kcc_text", "Hallo!")]),
        Scenario("staff close", "action_close_handoff", "", "EXTERNAL_kcc_close", [("kcc_outcome", "solved")]),
        Scenario("store down", "action_handoff_to_kcc", "medewerker", "request_human", patch="store_down"),
        Scenario("broken action", "broken", "paspoort", "passport_fees"),
    ]
    for small_talk in ("thanks", "bot_challenge", "out_of_scope_other", "non_text_message"):
        items.append(Scenario(f"small talk {small_talk}", "action_small_talk", "tja", small_talk))
    for intent in PASSPORT_INTENTS:
        items.append(Scenario(intent, "action_passport_id", "paspoort", intent, [("document_type", "paspoort")]))
        items.append(Scenario(f"{intent} id 12", "action_passport_id", "id kaart 12", intent,
                              [("document_type", "id_kaart"), ("age", "12")]))
    items.append(Scenario("fees overview", "action_passport_id", "wat kost dat", "passport_fees"))
    for intent in MARRIAGE_INTENTS:
        items.append(Scenario(intent, "action_marriage", "trouwen", intent))
    for intent in HANDOFF_INTENTS:
        for label, when in HANDOFF_TIMES.items():
            text = "bel me terug op 0612345678" if intent == "request_callback" else "ik wil een medewerker"
            items.append(Scenario(f"{intent} {label}", "action_handoff_to_kcc", text, intent, when=when))
    items.append(Scenario("not understood twice", "action_handoff_to_kcc", "???", "nlu_fallback",
                          slots={"handoff_reason": "not_understood"}))
    return items


def _actions() -> Dict[str, Any]:
    """Every action the action server serves, by name (rasa-sdk's own registry)."""
    from rasa_sdk.executor import ActionExecutor

    executor = ActionExecutor()
    executor.register_package("actions")
    return {name: run.__self__ for name, run in executor.actions.items()
            if name and name != "action_broken"}  # not the abstract base, nor the test's own


class _Broken:
    """An action whose answer fails: the citizen gets the technical-problem reply."""

    def __new__(cls):
        from actions.base import AppcareAction

        class Broken(AppcareAction):
            NAME = "action_broken"

            def answer(self, turn):
                raise RuntimeError("broken on purpose")

        return Broken()


def run_scenario(scenario: Scenario, municipality: str, language: str, monkeypatch, frozen_now) -> List[ActionResult]:
    """The replies of one turn: the action's, and those of the handoff it asked for."""
    frozen_now(*scenario.when)
    action = _Broken() if scenario.action == "broken" else _actions()[scenario.action]
    slots = {"municipality": municipality, "privacy_notice_shown": None, "language": language,
             "feedback_asked": None, **scenario.slots}
    sender = f"{municipality}-{language}-{re.sub(r'[^a-z0-9]+', '-', scenario.label)}"
    with monkeypatch.context() as patched:
        if scenario.patch == "store_down":
            import actions.handoff as handoff

            def down():
                raise ConnectionError("store down")

            patched.setattr(handoff, "default_store", down)
        result = run_action(action, scenario.text, scenario.intent, scenario.entities, slots=slots,
                            intent_ranking=scenario.ranking, sender=sender)
    results = [result]
    if result.followup() == "action_handoff_to_kcc":
        results.append(run_followup(result, scenario.text, scenario.intent, slots=slots, sender=sender + "-f"))
    return results


def every_turn(municipality: str, monkeypatch, frozen_now, languages=("nl", "en")):
    for language in languages:
        for scenario in scenarios(municipality):
            for result in run_scenario(scenario, municipality, language, monkeypatch, frozen_now):
                yield f"{municipality}/{language}/{scenario.label}", scenario, result
    for scenario in scenarios(municipality)[:1] + [s for s in scenarios(municipality) if s.intent in (
            "passport_fees", "urgent", "request_human")][:4]:
        for result in run_scenario(scenario, municipality, "de", monkeypatch, frozen_now):
            yield f"{municipality}/de/{scenario.label}", scenario, result


def test_every_action_of_the_action_server_has_scenarios():
    covered = {s.action for m in MUNICIPALITIES for s in scenarios(m)}
    missing = set(_actions()) - covered
    assert not missing, f"add scenarios for {sorted(missing)}"


# ------------------------------------------------------------------ the rule, on every path
@pytest.mark.parametrize("municipality", MUNICIPALITIES)
def test_strict_mode_quotes_no_unverified_fact_on_any_path(municipality, use_content, monkeypatch, frozen_now):
    use_content(all_unverified=True)
    monkeypatch.setenv("APPCARE_STRICT_FACTS", "1")
    found = needles(municipality)
    assert len(found) > 40  # links, phones, amounts, texts, times: the search has something to find
    leaks, turns, urgent = {}, 0, []
    for label, scenario, result in every_turn(municipality, monkeypatch, frozen_now):
        turns += 1
        assert result.messages or scenario.action in ("action_relay_to_kcc",), f"{label}: no reply"
        for response, text in zip(result.responses, result.texts):
            hits = quoted(text, found)
            if hits:
                leaks[f"{label} {response}"] = hits
            assert response not in CAVEATS, f"{label}: a caveat in strict mode means a fact was quoted"
        if scenario.intent == "urgent":
            urgent.append(result.text)
    assert turns > 150
    assert not leaks, f"unverified facts quoted in strict mode: {leaks}"
    # the one exception: a citizen in danger gets the crisis numbers anyway
    assert urgent and all("112" in text and "113" in text for text in urgent)


@pytest.mark.parametrize("municipality", MUNICIPALITIES)
def test_outside_strict_mode_every_unverified_fact_comes_with_the_caveat(municipality, use_content, monkeypatch,
                                                                         frozen_now):
    use_content(all_unverified=True)
    found = needles(municipality)
    missing, quoting = {}, 0
    for label, scenario, result in every_turn(municipality, monkeypatch, frozen_now):
        for i, (response, text) in enumerate(zip(result.responses, result.texts)):
            if response in CAVEATS or not quoted(text, found):
                continue
            quoting += 1
            later = result.responses[i + 1:]
            # the privacy link has its own caveat right after it; an answer the general one
            if response == "utter_privacy_notice":
                ok = later[:1] == ["utter_privacy_link_unverified"]
            else:
                ok = "utter_unverified_notice" in later
            if not ok:
                missing[f"{label} {response}"] = quoted(text, found)
    assert quoting > 150  # most answers quote a fact: the check has something to check
    assert not missing, f"unverified facts without the caveat: {missing}"


# ------------------------------------------------------------------ the handoff promise
def _kcc_verified(stem: str, doc: Dict[str, Any]) -> None:
    if stem != "national":
        _node(doc, "kcc.hours")["verified"] = True
        _node(doc, "closures.closed_on_public_holidays")["verified"] = True


CLOCK = re.compile(r"\b\d{1,2}[:.]\d{2}\b")


@pytest.mark.parametrize("strict", ["", "1"])
def test_placeholder_kcc_hours_promise_no_clock_time(strict, use_content, monkeypatch, frozen_now):
    """KCC hours marked unverified: "zo snel mogelijk" while the KCC is presumably open,
    "zo snel mogelijk op de eerstvolgende werkdag" after hours; never "vóór 17:00"."""
    from actions.handoff import ActionHandoffToKcc

    use_content(all_unverified=True)
    monkeypatch.setenv("APPCARE_STRICT_FACTS", strict)
    frozen_now(2026, 11, 25, 10, 0)  # Wednesday morning
    day = run_action(ActionHandoffToKcc(), "ik wil een medewerker", "request_human", slots={"municipality": "terneuzen"})
    assert "Je krijgt hier in WhatsApp zo snel mogelijk antwoord." in day.text
    assert "vandaag" not in day.text and not CLOCK.search(day.text)
    frozen_now(2026, 11, 28, 22, 0)  # Saturday night
    night = run_action(ActionHandoffToKcc(), "ik wil een medewerker", "request_human", slots={"municipality": "lelystad"})
    assert "zo snel mogelijk antwoord op de eerstvolgende werkdag" in night.text
    assert "maandag" not in night.text and not CLOCK.search(night.text)
    callback = run_action(ActionHandoffToKcc(), "bel me terug op 0612345678", "request_callback",
                          slots={"municipality": "terneuzen"})
    assert "belt je zo snel mogelijk op de eerstvolgende werkdag" in callback.text and not CLOCK.search(callback.text)
    urgent = run_action(ActionHandoffToKcc(), "ik ben bang", "urgent", slots={"municipality": "terneuzen",
                                                                               "language": "en"})
    assert "as soon as possible on the next working day" in urgent.text and "112" in urgent.text
    assert "closed right now" not in urgent.text


def test_verified_kcc_hours_keep_the_clock_time(use_content, frozen_now):
    from actions.handoff import ActionHandoffToKcc

    use_content(edit=_kcc_verified)
    frozen_now(2026, 11, 25, 10, 0)
    day = run_action(ActionHandoffToKcc(), "ik wil een medewerker", "request_human", slots={"municipality": "terneuzen"})
    assert "vandaag vóór 17:00" in day.text
    frozen_now(2026, 11, 28, 22, 0)
    night = run_action(ActionHandoffToKcc(), "ik wil een medewerker", "request_human", slots={"municipality": "terneuzen"})
    assert "vanaf maandag 30 november om 8:30" in night.text
    # a verified week, but an unconfirmed holiday rule on the way: no clock time
    def _holidays_unverified(stem, doc):
        _kcc_verified(stem, doc)
        if stem != "national":
            _node(doc, "closures.closed_on_public_holidays")["verified"] = False

    use_content(edit=_holidays_unverified)
    frozen_now(2026, 12, 24, 20, 0)  # Christmas Eve: the next days are holidays
    xmas = run_action(ActionHandoffToKcc(), "ik wil een medewerker", "request_human", slots={"municipality": "terneuzen"})
    assert "eerstvolgende werkdag" in xmas.text and not CLOCK.search(xmas.text)


# ------------------------------------------------------------------ the privacy notice
def _privacy_unverified(website_verified: bool = True):
    def edit(stem: str, doc: Dict[str, Any]) -> None:
        if stem != "national":
            _node(doc, "contact.privacy_url")["verified"] = False
            _node(doc, "contact.website")["verified"] = website_verified
    return edit


def test_unverified_privacy_link_comes_with_its_caveat(use_content):
    from actions.conversation import ActionGreet

    use_content(edit=_privacy_unverified())
    first = run_action(ActionGreet(), "hallo", "greet", slots={"municipality": "terneuzen", "privacy_notice_shown": None})
    assert first.responses[:2] == ["utter_privacy_notice", "utter_privacy_link_unverified"]
    assert "https://www.terneuzen.nl/privacy" in first.texts[0] and "geen mens" in first.texts[0]
    assert "de gemeente moet deze privacylink nog bevestigen" in first.texts[1]


def test_strict_mode_gives_the_website_instead_of_an_unverified_privacy_link(use_content, monkeypatch):
    from actions.conversation import ActionGreet

    monkeypatch.setenv("APPCARE_STRICT_FACTS", "1")
    use_content(edit=_privacy_unverified())
    first = run_action(ActionGreet(), "hallo", "greet", slots={"municipality": "lelystad", "privacy_notice_shown": None})
    assert first.responses[0] == "utter_privacy_notice" and "utter_privacy_link_unverified" not in first.responses
    assert "Zo gaan we met je gegevens om: https://www.lelystad.nl" in first.texts[0]
    assert "/privacy" not in first.text
    use_content(edit=_privacy_unverified(website_verified=False))
    polish = run_action(ActionGreet(), "dzień dobry", "greet",
                        slots={"municipality": "lelystad", "privacy_notice_shown": None, "language": "pl"})
    assert polish.responses[0] == "utter_privacy_notice_no_link"
    assert "not a person" in polish.texts[0] and "lelystad.nl" not in polish.text


# ------------------------------------------------------------------ facts moved to content
def test_shipped_content_marks_what_the_reference_does_not_confirm():
    from appcare import content

    national = (SHIPPED_CONTENT / "national.yml").read_text(encoding="utf-8")
    assert "processing_working_days:" not in national and "express_cutoff:" not in national
    for name in MUNICIPALITIES:
        unverified = content.load_uncached(name).unverified_facts()
        for path in ("passport.processing_working_days", "passport.express_cutoff", "passport.apply_in_person",
                     "desks.balie.by_appointment", "contact.privacy_url", "kcc.hours"):
            assert path in unverified, (name, path)
        loaded = content.load_uncached(name)
        assert loaded.passport.pickup_notification is None and loaded.passport.pickup_bring_old_document is None


def test_the_validator_accepts_the_new_facts(tmp_path):
    target = make_content(tmp_path / "content")
    import os

    run = subprocess.run([sys.executable, "-m", "tools.validate_content"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "APPCARE_CONTENT_DIR": str(target)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "passport.express_cutoff" in run.stdout and "desks.balie.by_appointment" in run.stdout


PASSPORT = {"municipality": "terneuzen"}


def test_passport_answers_say_only_what_the_content_says(use_content, frozen_now, monkeypatch):
    from actions.passport_id import ActionPassportId

    use_content()
    frozen_now(2026, 11, 25, 10, 0)
    doc = [("document_type", "paspoort")]
    processing = run_action(ActionPassportId(), "wanneer klaar", "passport_processing_time", doc, slots=PASSPORT)
    assert "5 werkdagen" in processing.text and "Je krijgt bericht" not in processing.text
    assert processing.responses[-1] == "utter_unverified_notice"  # 5 working days is a placeholder
    pickup = run_action(ActionPassportId(), "ophalen", "passport_pickup", doc, slots=PASSPORT)
    assert "binnen 3 maanden" in pickup.text and "oude document" not in pickup.text
    apply = run_action(ActionPassportId(), "aanvragen", "passport_apply", doc, slots=PASSPORT)
    assert "Je komt zelf langs, meestal op afspraak." in apply.text
    assert apply.responses[-1] == "utter_unverified_notice"
    express = run_action(ActionPassportId(), "spoed", "passport_express", doc, slots=PASSPORT)
    assert "vóór 15:00 uur" in express.text and express.responses[-1] == "utter_unverified_notice"

    monkeypatch.setenv("APPCARE_STRICT_FACTS", "1")
    apply = run_action(ActionPassportId(), "aanvragen", "passport_apply", doc, slots=PASSPORT)
    assert "afspraak" not in apply.text and "langs" not in apply.text
    assert "Hoe dat gaat, lees je op https://www.terneuzen.nl. Je kunt ook bellen met 14 0115." in apply.text
    express = run_action(ActionPassportId(), "spoed", "passport_express", doc, slots=PASSPORT)
    assert "15:00" not in express.text and "volgende werkdag" not in express.text
    assert "Spoed kost € 53,01 extra" in express.text
    processing = run_action(ActionPassportId(), "wanneer klaar", "passport_processing_time", doc, slots=PASSPORT)
    assert "werkdagen" not in processing.text and "https://www.terneuzen.nl" in processing.text


def test_pickup_facts_are_said_once_the_content_has_them(use_content, frozen_now):
    from actions.passport_id import ActionPassportId

    def add(stem: str, doc: Dict[str, Any]) -> None:
        if stem == "national":
            for key in ("pickup_notification", "pickup_bring_old_document"):
                doc["passport"][key] = {"value": True, "source": "https://www.terneuzen.nl",
                                        "checked": dt.date(2026, 11, 25)}

    use_content(edit=add)
    frozen_now(2026, 11, 25, 10, 0)
    doc = [("document_type", "paspoort")]
    processing = run_action(ActionPassportId(), "wanneer klaar", "passport_processing_time", doc, slots=PASSPORT)
    assert "Je krijgt bericht als je je paspoort kunt ophalen." in processing.text
    pickup = run_action(ActionPassportId(), "ophalen", "passport_pickup", doc, slots=PASSPORT)
    assert "Neem je oude document mee als je het nieuwe ophaalt." in pickup.text


def test_old_maximum_fees_are_higher_now_also_for_express(use_content, frozen_now):
    from actions.passport_id import ActionPassportId

    use_content()
    frozen_now(2026, 11, 25, 10, 0)
    fee = run_action(ActionPassportId(), "wat kost een paspoort, ik ben 30", "passport_fees",
                     [("document_type", "paspoort"), ("age", "30")], slots=PASSPORT)
    line = "De maximumbedragen gaan elk jaar omhoog. In 2026 zijn ze dus hoger dan in 2023."
    table = "https://www.rvig.nl/reisdocumenten/tarieven-reisdocumenten"
    assert line in fee.text and table in fee.text and "kunnen hoger zijn" not in fee.text
    express = run_action(ActionPassportId(), "spoed paspoort", "passport_express", [("document_type", "paspoort")],
                         slots=PASSPORT)
    assert "€ 53,01 extra (maximumbedrag 2023)" in express.text and line in express.text and table in express.text
    english = run_action(ActionPassportId(), "express passport", "passport_express", [("document_type", "paspoort")],
                         slots={**PASSPORT, "language": "en"})
    assert "so in 2026 they are higher than in 2023" in english.text


def test_marriage_costs_name_every_location_with_the_saturday_fee(use_content):
    from actions.marriage import ActionMarriage

    use_content()
    costs = run_action(ActionMarriage(), "wat kost trouwen", "marriage_costs", slots={"municipality": "terneuzen"})
    assert "€ 1.069,00 op zaterdag" in costs.text
    assert "Industrieel Museum Zeeland" in costs.text and "en op zaterdag" in costs.text
    assert "Trouwen in het stadhuis kost" not in costs.text
    lelystad = run_action(ActionMarriage(), "waar kan ik trouwen", "marriage_location", slots={"municipality": "lelystad"})
    assert "De vaste trouwlocaties staan op" not in lelystad.text
    assert "Welke vaste trouwlocaties er zijn, weet ik niet zeker." in lelystad.text and "14 0320" in lelystad.text
