"""Short follow-ups in a conversation: days relative to the day just answered, a bare day
part, "no" that is really a question, the remembered roadworks area, other languages,
a bare number as an age, feedback after a clarifying question and the police question
after a lost passport. Real actions on real trackers; entities from the library
extractor where the NLU pipeline would give them."""
from __future__ import annotations

import datetime as dt

import pytest

from actions.conversation import (
    ActionClarify,
    ActionGoodbye,
    ActionHandleInform,
    ActionHandleYesNo,
    ActionRecordFeedback,
    is_short_question,
)
from actions.handoff import ActionHandoffToKcc
from actions.opening_hours import ActionOpeningHours
from actions.passport_id import ActionPassportId
from actions.roadworks import ActionRoadworks, followup_intent
from appcare import clock
from appcare.handoff_store import default_store
from tests.conftest import run_action, run_followup

TERNEUZEN = {"municipality": "terneuzen"}
LELYSTAD = {"municipality": "lelystad"}
BALIE = "de publieksbalie in het stadhuis"
# Facts (hours, fees, the roadworks on the Larserdreef) from tests/fixtures/content, not from
# the editors' content/ whose roadworks are example data (tests/conftest.py fixture_content).
pytestmark = pytest.mark.usefixtures("fixture_content")
TZ = clock.TZ


@pytest.fixture(scope="module")
def extractor():
    from appcare.plugins.nlu.entities import LibraryEntityExtractor

    return LibraryEntityExtractor({})


def dates_in(extractor, text):
    return [e["value"] for e in extractor.extract(text) if e["entity"] == "date_expr"]


def hours_context(day: str, **extra):
    return {**TERNEUZEN, "topic": "opening_hours", "last_day": day, **extra}


# ------------------------------------------------------------------ 1. relative to the day answered
def test_a_day_answer_remembers_the_day(frozen_now):
    frozen_now(2026, 12, 20, 10, 0)
    result = run_action(ActionOpeningHours(), "hoe laat open op 24 december?", "opening_hours",
                        [("date_expr", "24 december")], slots=TERNEUZEN)
    assert "Donderdag 24 december" in result.text
    assert result.slot("last_day") == "2026-12-24"
    now = run_action(ActionOpeningHours(), "nu open?", "opening_hours_now", slots=hours_context("2026-12-24"))
    assert now.slot("last_day") == "2026-12-20"  # "open now?" is about today
    week = run_action(ActionOpeningHours(), "openingstijden", "opening_hours", slots=hours_context("2026-12-24"))
    assert "last_day" in [e.get("name") for e in week.events] and week.slot("last_day") is None


@pytest.mark.parametrize("text", ["en de dag erna?", "de dag daarna", "en de volgende dag", "En de dag erop?",
                                  "and the next day?", "und am nächsten Tag?"])
def test_the_day_after_the_day_answered(frozen_now, extractor, text):
    frozen_now(2026, 12, 20, 10, 0)
    entities = extractor.extract(text)
    assert len(dates_in(extractor, text)) == 1, text
    result = run_action(ActionHandleInform(), text, "inform", entities, slots=hours_context("2026-12-24"))
    assert f"Vrijdag 25 december is {BALIE} gesloten (Eerste Kerstdag)" in result.text, result.text
    assert result.slot("last_day") == "2026-12-25"


@pytest.mark.parametrize("text", ["en een dag eerder?", "de dag ervoor", "en de dag daarvoor dan?",
                                  "the day before?"])
def test_the_day_before_the_day_answered(frozen_now, extractor, text):
    frozen_now(2026, 12, 20, 10, 0)
    result = run_action(ActionOpeningHours(), text, "opening_hours", extractor.extract(text),
                        slots=hours_context("2026-12-24"))
    assert f"Woensdag 23 december is {BALIE} open van 8:30 tot 16:30." in result.text, result.text


def test_two_days_later_and_without_an_earlier_day(frozen_now, extractor):
    frozen_now(2026, 11, 25, 10, 0)  # Wednesday
    text = "en twee dagen later?"
    later = run_action(ActionHandleInform(), text, "inform", extractor.extract(text),
                       slots=hours_context("2026-11-25"))
    assert f"Vrijdag 27 november is {BALIE} open" in later.text
    text = "en de dag erna?"
    today_based = run_action(ActionHandleInform(), text, "inform", extractor.extract(text),
                             slots={**TERNEUZEN, "topic": "opening_hours"})
    assert f"Donderdag 26 november is {BALIE} open" in today_based.text
    # a day left over from an earlier conversation (in the past) is not used
    stale = run_action(ActionHandleInform(), text, "inform", extractor.extract(text),
                       slots=hours_context("2026-10-01"))
    assert f"Donderdag 26 november is {BALIE} open" in stale.text


@pytest.mark.parametrize("text,expected", [
    ("ook 's avonds?", f"Donderdagavond 24 december is {BALIE} open van 8:30 tot 16:30 en 18:00 tot 20:00."),
    ("en savonds", f"Donderdagavond 24 december is {BALIE} open van 8:30 tot 16:30 en 18:00 tot 20:00."),
    ("en ’s ochtends?", f"Donderdagochtend 24 december is {BALIE} open van 8:30 tot 16:30 en 18:00 tot 20:00."),
])
def test_bare_day_part_is_about_the_day_answered(frozen_now, extractor, text, expected):
    frozen_now(2026, 12, 20, 10, 0)
    result = run_action(ActionHandleInform(), text, "inform", extractor.extract(text),
                        slots=hours_context("2026-12-24"))
    assert expected in result.text, result.text


def test_bare_day_part_without_an_evening_opening(frozen_now, extractor):
    frozen_now(2026, 12, 20, 10, 0)
    text = "kan dat ook 's avonds"
    result = run_action(ActionOpeningHours(), text, "opening_hours", extractor.extract(text),
                        slots=hours_context("2026-12-23"))
    assert f"Woensdag 23 december is {BALIE} open van 8:30 tot 16:30, 's avonds niet." in result.text
    text = "en in de middag"
    afternoon = run_action(ActionHandleInform(), text, "inform", extractor.extract(text),
                           slots=hours_context("2026-12-23"))
    assert f"Woensdagmiddag 23 december is {BALIE} open van 8:30 tot 16:30." in afternoon.text
    closed = run_action(ActionHandleInform(), "en 's ochtends?", "inform", [("date_expr", "'s ochtends")],
                        slots=hours_context("2026-12-25"))
    assert "gesloten" in closed.text and "maandag 28 december om 8:30" in closed.text


def test_bare_day_part_without_a_day_shows_the_week(frozen_now, extractor):
    frozen_now(2026, 12, 1, 10, 0)
    text = "zijn jullie 's avonds open?"
    assert dates_in(extractor, text) == ["'s avonds"]
    result = run_action(ActionOpeningHours(), text, "opening_hours", extractor.extract(text), slots=TERNEUZEN)
    assert result.responses[0] == "utter_hours_week" and "donderdag: 08:30 - 16:30 en 18:00 - 20:00" in result.text


def test_question_without_a_day_after_a_day_answer(frozen_now):
    frozen_now(2026, 12, 20, 10, 0)
    result = run_action(ActionHandleInform(), "en tot hoe laat?", "inform", slots=hours_context("2026-12-24"))
    assert f"Donderdag 24 december is {BALIE} open" in result.text


def test_other_desk_after_a_day_answer_is_about_that_day(frozen_now):
    frozen_now(2026, 12, 20, 10, 0)
    result = run_action(ActionHandleInform(), "en telefonisch?", "inform", [("desk", "telefonisch")],
                        slots=hours_context("2026-12-23"))
    assert result.responses[0] == "utter_hours_day" and result.text.startswith("Woensdag 23 december is ")


def test_relative_day_expressions_in_clock():
    base = dt.datetime(2026, 11, 25, 10, tzinfo=TZ)
    anchor = dt.date(2026, 12, 24)
    assert clock.parse_day("de dag erna", base, anchor) == (dt.date(2026, 12, 25), "vrijdag 25 december")
    assert clock.parse_day("een dag eerder", base, anchor)[0] == dt.date(2026, 12, 23)
    assert clock.parse_day("drie dagen later", base, anchor)[0] == dt.date(2026, 12, 27)
    assert clock.parse_day("de dag erna", base)[0] == dt.date(2026, 11, 26)  # no anchor: today
    assert clock.parse_day("'s avonds", base, anchor) == (anchor, "donderdagavond 24 december")
    assert clock.parse_day("in de middag", base) == (dt.date(2026, 11, 25), "vanmiddag")
    assert clock.is_bare_day_part("ook 's avonds") and not clock.is_bare_day_part("vanavond")
    assert clock.parse_day("de dag erna 's avonds", base, anchor) == (dt.date(2026, 12, 25), "vrijdagavond 25 december")


# ------------------------------------------------------------------ 2. "no" that is a follow-up
def test_deny_with_a_day_is_answered_in_the_topic(frozen_now, extractor):
    frozen_now(2026, 12, 20, 10, 0)
    text = "en de dag erna?"
    result = run_action(ActionHandleYesNo(), text, "deny", extractor.extract(text), slots=hours_context("2026-12-24"))
    assert "utter_goodbye" not in result.responses
    assert f"Vrijdag 25 december is {BALIE} gesloten" in result.text


def test_deny_question_after_roadworks_gives_the_duration(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    context = {**LELYSTAD, "topic": "roadworks_status", "street": "Larserdreef"}
    for text, intent in (("en tot wanneer", "deny"), ("hoe lang nog", "deny"), ("en tot wanneer?", "inform"),
                         ("hoe lang nog?", "inform")):
        action = ActionHandleYesNo() if intent == "deny" else ActionHandleInform()
        result = run_action(action, text, intent, slots=context)
        assert result.responses == ["utter_roadworks_found"], (text, result.text)
        assert "tot 11 december" in result.text and result.slot("topic") == "roadworks_duration"


def test_deny_with_feedback_pending_still_answers_the_follow_up(frozen_now, extractor):
    frozen_now(2026, 12, 20, 10, 0)
    text = "en een dag eerder?"
    result = run_action(ActionHandleYesNo(), text, "deny", extractor.extract(text),
                        slots=hours_context("2026-12-24", pending_question="feedback"))
    assert "utter_feedback_negative" not in result.responses and "Woensdag 23 december" in result.text
    assert result.slot("pending_question") is None


def test_deny_correction_stays_in_the_passport_topic(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionHandleYesNo(), "nee een id-kaart", "deny", [("document_type", "id_kaart")],
                        slots={**TERNEUZEN, "topic": "passport_validity", "document_type": "paspoort"})
    assert result.responses[0] == "utter_passport_validity" and "ID-kaart" in result.text


def test_goodbye_that_is_a_follow_up_question_is_answered(frozen_now, extractor):
    """'dag' and 'tot' make the classifier think of a farewell; the context decides."""
    frozen_now(2026, 12, 20, 10, 0)
    text = "en de dag erna?"
    result = run_action(ActionGoodbye(), text, "goodbye", extractor.extract(text), slots=hours_context("2026-12-24"))
    assert "utter_goodbye" not in result.responses and "Vrijdag 25 december" in result.text
    frozen_now(2026, 11, 25, 10, 0)
    works = run_action(ActionGoodbye(), "en tot wanneer", "goodbye",
                       slots={**LELYSTAD, "topic": "roadworks_status", "street": "Larserdreef"})
    assert works.responses == ["utter_roadworks_found"] and "tot 11 december" in works.text


@pytest.mark.parametrize("text", ["doei", "tot ziens!", "fijne dag nog", "dag hoor"])
def test_a_real_goodbye_says_goodbye(text):
    result = run_action(ActionGoodbye(), text, "goodbye", slots={**TERNEUZEN, "topic": "opening_hours",
                                                                 "last_day": "2026-12-24"})
    assert result.responses == ["utter_goodbye"]


@pytest.mark.parametrize("text", ["nee dank je", "dat was het", "nee hoor, bedankt"])
def test_a_real_no_says_goodbye(text):
    result = run_action(ActionHandleYesNo(), text, "deny", slots={**LELYSTAD, "topic": "roadworks_status",
                                                                  "street": "Larserdreef"})
    assert result.responses == ["utter_goodbye"]


def test_no_to_an_open_question_is_no_goodbye():
    result = run_action(ActionHandleYesNo(), "nee", "deny", slots={**LELYSTAD, "pending_question": "street"})
    assert result.responses == ["utter_anything_else"] and result.slot("pending_question") is None


def test_deny_question_without_a_topic_asks_to_rephrase():
    result = run_action(ActionHandleYesNo(), "en wanneer dan?", "deny", slots=LELYSTAD)
    assert result.responses == ["utter_ask_rephrase_text"]


@pytest.mark.parametrize("text,question", [
    ("en tot wanneer", True), ("hoe lang nog", True), ("and when?", True), ("en ook op zaterdag?", True),
    ("en de omleiding?", True), ("nee", False), ("nee dank je", False), ("dat was het", False), ("en verder niks", False),
])
def test_short_questions(text, question):
    assert is_short_question(text) is question


def test_followup_intent_of_roadworks_questions():
    assert followup_intent("en tot wanneer") == "roadworks_duration"
    assert followup_intent("how long will it take?") == "roadworks_duration"
    assert followup_intent("is er een omleiding?") == "roadworks_detour"
    assert followup_intent("en nu?") is None


def test_day_follow_up_goes_to_the_topic_that_uses_days(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    # after a fee answer a day is about the opening hours ...
    hours = run_action(ActionHandleInform(), "en morgen?", "inform", [("date_expr", "morgen")],
                       slots={**TERNEUZEN, "topic": "passport_fees", "document_type": "paspoort"})
    assert hours.responses[0] == "utter_hours_day" and hours.slot("topic") == "opening_hours"
    # ... after the marriage costs it stays with marriage (Saturday has its own price)
    marriage = run_action(ActionHandleInform(), "en op zaterdag?", "inform", [("date_expr", "zaterdag")],
                          slots={**TERNEUZEN, "topic": "marriage_costs"})
    assert marriage.responses[0] == "utter_marriage_costs"


# ------------------------------------------------------------------ 3. the area is remembered
def test_area_is_remembered_for_follow_ups(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    first = run_action(ActionRoadworks(), "werkzaamheden in lelystad-oost?", "roadworks_status",
                       [("area", "Lelystad-Oost")], slots=LELYSTAD)
    assert "Larserdreef: Nieuw asfalt" in first.text
    context = {**LELYSTAD, "topic": "roadworks_status", "area": "Lelystad-Oost"}
    detour = run_action(ActionRoadworks(), "is er een omleiding", "roadworks_detour", slots=context)
    assert "Omleiding: via de Oostranddreef" in detour.text
    duration = run_action(ActionRoadworks(), "hoe lang duurt dat nog", "roadworks_duration", slots=context)
    assert "tot 11 december" in duration.text
    status = run_action(ActionHandleInform(), "en volgende week?", "inform", [("date_expr", "volgende week")],
                        slots=context)
    assert "Larserdreef: Nieuw asfalt" in status.text and "overzicht" not in status.text
    question = run_action(ActionHandleYesNo(), "en tot wanneer", "deny", slots=context)
    assert "Larserdreef" in question.text and "tot 11 december" in question.text


def test_a_new_street_or_area_replaces_the_remembered_one(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    context = {**LELYSTAD, "topic": "roadworks_status", "area": "Lelystad-Oost"}
    street = run_action(ActionRoadworks(), "en de Stationsdreef?", "roadworks_status",
                        [("street", "Stationsdreef")], slots=context)
    assert "Stationsdreef" in street.text and "Larserdreef" not in street.text
    assert "area" in [e.get("name") for e in street.events] and street.slot("area") is None
    context = {**LELYSTAD, "topic": "roadworks_status", "street": "Larserdreef"}
    area = run_action(ActionHandleInform(), "en in het stadshart?", "inform", [("area", "Stadshart")], slots=context)
    assert "Stationsdreef" in area.text and "Larserdreef" not in area.text
    assert "street" in [e.get("name") for e in area.events] and area.slot("street") is None


def test_a_fresh_status_question_does_not_reuse_the_street(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionRoadworks(), "zijn er wegwerkzaamheden", "roadworks_status",
                        slots={**LELYSTAD, "street": "Larserdreef", "area": "Lelystad-Oost"})
    assert result.responses[-1] == "utter_roadworks_ask_street"


def test_a_bare_day_part_is_no_day_for_roadworks(frozen_now, extractor):
    frozen_now(2026, 11, 25, 10, 0)
    text = "wordt er 's nachts gewerkt?"
    ask = run_action(ActionRoadworks(), text, "roadworks_status", extractor.extract(text), slots=LELYSTAD)
    assert ask.responses[-1] == "utter_roadworks_ask_street"


# ------------------------------------------------------------------ 4. other languages
@pytest.mark.parametrize("text,value", [
    ("and on Saturday?", "Saturday"), ("am Samstag?", "Samstag"), ("w sobotę?", "sobotę"),
    ("et samedi ?", "samedi"), ("cumartesi günü açık mı?", "cumartesi"), ("and tomorrow?", "tomorrow"),
    ("und morgen?", "morgen"), ("yarın?", "yarın"), ("a w środę?", "środę"),
])
def test_other_languages_give_a_day(extractor, text, value):
    assert dates_in(extractor, text) == [value]


@pytest.mark.parametrize("text", ["and on Saturday?", "am Samstag?", "w sobotę?", "cumartesi?"])
def test_other_language_follow_up_is_answered(frozen_now, extractor, text):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionHandleInform(), text, "inform", extractor.extract(text),
                        slots={**TERNEUZEN, "topic": "opening_hours"})
    assert f"Zaterdag 28 november is {BALIE} gesloten" in result.text, result.text


def test_other_language_tomorrow(frozen_now, extractor):
    frozen_now(2026, 11, 25, 10, 0)
    text = "and tomorrow?"
    result = run_action(ActionHandleInform(), text, "inform", extractor.extract(text),
                        slots={**TERNEUZEN, "topic": "opening_hours"})
    assert f"Morgen is {BALIE} open van 8:30 tot 16:30 en 18:00 tot 20:00." in result.text


@pytest.mark.parametrize("text", ["ik ben hier morgen", "is het hier open", "goedemorgen, ik heb een vraag"])
def test_foreign_words_do_not_mislead_dutch(extractor, text):
    assert "hier" not in dates_in(extractor, text)


@pytest.mark.parametrize("text,group", [("ma 5 lat", "jonger dan 18"), ("he is 7", "jonger dan 18"),
                                        ("er ist 9", "jonger dan 18"), ("o 45 yaşında", "van 18 jaar of ouder")])
def test_bare_number_after_a_fee_answer_is_the_age(frozen_now, extractor, text, group):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionHandleInform(), text, "inform", extractor.extract(text),
                        slots={**TERNEUZEN, "topic": "passport_fees", "pending_question": "age",
                               "document_type": "paspoort"})
    assert f"Een paspoort voor iemand {group} kost" in result.text, result.text
    assert result.slot("age") == "".join(c for c in text if c.isdigit())


@pytest.mark.parametrize("text", ["bel 0612345678", "is het 70 euro?", "he is 7 or 8", "over 5 dagen",
                                  "is het open op 24-12"])
def test_numbers_that_are_no_age(frozen_now, text):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionHandleInform(), text, "inform", [],
                        slots={**TERNEUZEN, "topic": "passport_fees", "document_type": "paspoort"})
    assert "utter_passport_fee" not in result.responses, text


def test_bare_number_outside_the_fee_topic_is_ignored(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionHandleInform(), "he is 7", "inform", slots={**TERNEUZEN, "topic": "marriage_how"})
    assert result.responses == ["utter_ask_rephrase_text"]


# ------------------------------------------------------------------ 5. feedback after a clarifying question
def test_thumbs_down_to_a_clarifying_question_is_a_second_miss(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionRecordFeedback(), "👎", "feedback_negative",
                        slots={**TERNEUZEN, "failed_attempts": 1}, sender="fb-1")
    assert result.followup() == "action_handoff_to_kcc" and result.slot("failed_attempts") == 0
    handoff = run_followup(result, "👎", "feedback_negative", {**TERNEUZEN, "failed_attempts": 1}, "fb-1")
    assert handoff.responses[0] == "utter_handoff_not_understood" and handoff.slot("handoff_active") is True
    assert default_store().open_ticket_for("fb-1").reason == "not_understood"


def test_feedback_to_the_feedback_question_is_recorded(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    asked = run_action(ActionRecordFeedback(), "👎", "feedback_negative",
                       slots={**TERNEUZEN, "failed_attempts": 1, "pending_question": "feedback"}, sender="fb-2")
    assert asked.responses == ["utter_feedback_negative"] and default_store().open_ticket_for("fb-2") is None
    plain = run_action(ActionRecordFeedback(), "top", "feedback_positive", slots=TERNEUZEN, sender="fb-3")
    assert plain.responses == ["utter_feedback_positive"]


# ------------------------------------------------------------------ 6. police question after a lost passport
@pytest.mark.parametrize("intent", ["personal_case", "out_of_scope_municipal"])
def test_police_question_after_lost_passport_gets_the_steps(frozen_now, intent):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionHandoffToKcc(), "moet ik dan naar de politie?", intent,
                        slots={**TERNEUZEN, "topic": "passport_lost"}, sender="lost-1")
    assert result.responses[0] == "utter_passport_lost" and "Aangifte bij de politie is niet nodig" in result.text
    assert result.slot("handoff_active") is None and default_store().open_ticket_for("lost-1") is None


def test_police_question_in_the_fallback_and_inform(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    clarify = run_action(ActionClarify(), "moet ik aangifte doen", "nlu_fallback",
                         slots={**TERNEUZEN, "topic": "passport_lost", "failed_attempts": 1})
    assert clarify.responses[0] == "utter_passport_lost" and clarify.slot("failed_attempts") == 0
    inform = run_action(ActionHandleInform(), "en een proces-verbaal?", "inform",
                        slots={**TERNEUZEN, "topic": "passport_lost"})
    assert inform.responses[0] == "utter_passport_lost"


def test_police_question_without_lost_context_is_handed_off(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    other = run_action(ActionHandoffToKcc(), "moet ik naar de politie?", "personal_case",
                       slots={**TERNEUZEN, "topic": "opening_hours"}, sender="lost-2")
    assert other.slot("handoff_active") is True
    human = run_action(ActionHandoffToKcc(), "ik wil iemand spreken over de aangifte", "request_human",
                       slots={**TERNEUZEN, "topic": "passport_lost"}, sender="lost-3")
    assert human.slot("handoff_active") is True


def test_lost_answer_then_follow_up_end_to_end(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    lost = run_action(ActionPassportId(), "paspoort gestolen", "passport_lost", [("document_type", "paspoort")],
                      slots=TERNEUZEN)
    assert lost.slot("topic") == "passport_lost"
    again = run_action(ActionHandoffToKcc(), "moet ik dan aangifte doen bij de politie?", "personal_case",
                       slots={**TERNEUZEN, "topic": lost.slot("topic"), "document_type": "paspoort"}, sender="lost-4")
    assert again.responses[0] == "utter_passport_lost" and "paspoort" in again.text
