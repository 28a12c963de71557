"""Triage: what the assistant does when a message is personal, urgent, a wish for a
person or a callback, or not understood; a bare "no"; another municipality; replies in
the citizen's language. Real actions on real trackers and the real ticket store."""
from __future__ import annotations

import logging

import pytest

from actions.conversation import (
    CLARIFY_MIN_CONFIDENCE,
    ActionClarify,
    ActionGreet,
    ActionHandleInform,
    ActionHandleYesNo,
)
from actions.handoff import ActionHandoffToKcc
from actions.marriage import ActionMarriage
from actions.opening_hours import ActionOpeningHours
from actions.passport_id import ActionPassportId
from appcare.handoff_store import default_store
from tests.conftest import run_action, run_followup

TERNEUZEN = {"municipality": "terneuzen"}
# Facts (fees, crisis numbers, hours) from tests/fixtures/content, not from the editors'
# content/ (tests/conftest.py fixture_content).
pytestmark = pytest.mark.usefixtures("fixture_content")


def bot_said(response: str):
    """A bot event as Rasa stores it (the response name in its metadata)."""
    return {"event": "bot", "text": "...", "metadata": {"utter_action": response}}


# ------------------------------------------------------------------ urgent and personal
def test_urgent_message_hands_off_flagged_with_the_numbers_at_once(frozen_now):
    frozen_now(2026, 12, 8, 11, 0)  # a Tuesday, KCC open
    result = run_action(ActionHandoffToKcc(), "ik durf niet meer naar huis, hij slaat me", "urgent",
                        slots=TERNEUZEN, sender="c-urgent")
    assert result.responses[:2] == ["utter_handoff_urgent", "utter_urgent_numbers"]
    assert "112" in result.texts[1] and "0800-0113" in result.texts[1] and "0800-2000" in result.texts[1]
    assert "zo snel mogelijk" in result.text and "17:00" not in result.text  # KCC hours not verified
    assert "Bedoel je" not in result.text and not result.buttons  # no topic buttons
    ticket = default_store().open_ticket_for("c-urgent")
    assert ticket.reason == "urgent" and ticket.urgent is True
    assert result.slot("handoff_active") is True


def test_urgent_at_night_still_gives_the_numbers_and_an_honest_moment(frozen_now):
    frozen_now(2026, 12, 5, 23, 30)  # Saturday night
    result = run_action(ActionHandoffToKcc(), "ik heb geen slaapplek vannacht", "urgent", slots=TERNEUZEN,
                        sender="c-night")
    assert "112" in result.text and "eerstvolgende werkdag" in result.text and "8:30" not in result.text
    assert "niet veilig" in result.text  # do not wait for us when it is not safe
    assert default_store().open_ticket_for("c-night").urgent is True


def test_urgent_numbers_come_from_content():
    from appcare import content

    crisis = content.load("terneuzen").crisis
    assert crisis.emergency.value == "112" and crisis.emergency.source.startswith("https://")
    assert "0800-0113" in crisis.suicide_line.value and crisis.domestic_violence_line.value == "0800-2000"


def test_life_event_is_handed_off_at_once_without_buttons(frozen_now):
    frozen_now(2026, 12, 8, 11, 0)
    result = run_action(ActionHandoffToKcc(), "mijn vader is gisteren overleden, wat moet ik regelen",
                        "personal_case", slots=TERNEUZEN, sender="c-life")
    assert result.responses[0] == "utter_handoff_personal" and not result.buttons
    ticket = default_store().open_ticket_for("c-life")
    assert ticket.reason == "personal_case" and ticket.urgent is False


def test_unsure_message_that_is_likely_urgent_is_not_met_with_topic_buttons(frozen_now):
    """Below the fallback threshold, a personal or urgent intent that is close enough still
    hands off at once."""
    frozen_now(2026, 12, 8, 11, 0)
    ranking = [{"name": "nlu_fallback", "confidence": 0.8}, {"name": "urgent", "confidence": 0.19},
               {"name": "passport_child", "confidence": 0.17}]
    text = "we zijn weg bij hem, ik en de kids, waar moeten we heen"
    result = run_action(ActionClarify(), text, "nlu_fallback", slots=TERNEUZEN, intent_ranking=ranking,
                        sender="c-unsure")
    assert "utter_ask_clarify" not in result.responses and not result.buttons
    handoff = run_followup(result, text, "nlu_fallback", TERNEUZEN, "c-unsure")
    assert "utter_urgent_numbers" in handoff.responses
    assert default_store().open_ticket_for("c-unsure").urgent is True


# ------------------------------------------------------------------ clarifying question
def test_clarify_offers_only_topics_that_are_close():
    ranking = [{"name": "nlu_fallback", "confidence": 0.8}, {"name": "marriage_location", "confidence": 0.15},
               {"name": "passport_express", "confidence": CLARIFY_MIN_CONFIDENCE / 2}]
    result = run_action(ActionClarify(), "kan het ook in de tuin", "nlu_fallback", slots=TERNEUZEN,
                        intent_ranking=ranking)
    assert result.buttons == ["Trouwlocaties", "Medewerker"]


def test_clarify_without_close_topic_asks_to_rephrase_and_offers_a_person():
    ranking = [{"name": "nlu_fallback", "confidence": 0.8}, {"name": "passport_express", "confidence": 0.05},
               {"name": "marriage_location", "confidence": 0.04}]
    result = run_action(ActionClarify(), "hoe zit het nou met dat gedoe", "nlu_fallback", slots=TERNEUZEN,
                        intent_ranking=ranking)
    assert result.responses == ["utter_ask_rephrase_or_human"] and result.buttons == ["Medewerker"]
    assert result.slot("pending_question") == "clarify" and result.slot("failed_attempts") == 1


@pytest.mark.parametrize("intent,text", [("deny", "nee"), ("wrong_answer", "nee dat bedoel ik niet")])
def test_no_after_a_clarifying_question_hands_off(frozen_now, intent, text):
    frozen_now(2026, 12, 8, 11, 0)
    slots = {**TERNEUZEN, "pending_question": "clarify", "failed_attempts": 1}
    action = ActionHandleYesNo() if intent == "deny" else ActionClarify()
    result = run_action(action, text, intent, slots=slots, sender="c-no")
    assert "utter_goodbye" not in result.responses
    handoff = run_followup(result, text, intent, slots, "c-no")
    assert "utter_handoff_not_understood" in handoff.responses
    assert default_store().open_ticket_for("c-no").reason == "not_understood"


def test_not_what_i_meant_after_an_answer_asks_again_once():
    result = run_action(ActionClarify(), "dat is niet wat ik vroeg", "wrong_answer",
                        slots={**TERNEUZEN, "topic": "passport_fees"})
    assert result.responses == ["utter_wrong_answer"] and result.buttons == ["Medewerker"]
    assert result.slot("failed_attempts") == 1


def test_yes_to_the_offer_of_a_colleague_hands_off(frozen_now):
    frozen_now(2026, 12, 8, 11, 0)
    result = run_action(ActionHandleYesNo(), "ja graag", "affirm", slots=TERNEUZEN, sender="c-yes",
                        events=[bot_said("utter_iamabot")])
    assert run_followup(result, "ja graag", "affirm", TERNEUZEN, "c-yes").slot("handoff_active") is True
    assert default_store().open_ticket_for("c-yes").reason == "request_human"


def test_yes_in_another_language_after_the_offer_and_an_answer_hands_off(frozen_now):
    """The offer of a colleague came before the answer and its feedback question."""
    frozen_now(2026, 12, 8, 11, 0)
    slots = {**TERNEUZEN, "language": "pl", "pending_question": "feedback"}
    events = [{"event": "user", "text": "..."}, bot_said("utter_other_language"), bot_said("utter_passport_fee"),
              bot_said("utter_ask_feedback")]
    result = run_action(ActionHandleYesNo(), "tak", "affirm", slots=slots, sender="c-tak", events=events)
    assert result.followup() == "action_handoff_to_kcc"


# ------------------------------------------------------------------ a bare "nee"
def test_bare_no_after_an_answer_is_no_goodbye():
    result = run_action(ActionHandleYesNo(), "nee", "deny", slots={**TERNEUZEN, "topic": "opening_hours"},
                        events=[bot_said("utter_hours_day")])
    assert result.responses == ["utter_deny_ok"]


def test_no_to_anything_else_is_goodbye():
    result = run_action(ActionHandleYesNo(), "nee", "deny", slots=TERNEUZEN,
                        events=[bot_said("utter_anything_else")])
    assert result.responses == ["utter_goodbye"]


def test_frustration_with_the_bot_hands_off_as_a_complaint_with_an_apology(frozen_now):
    frozen_now(2026, 12, 8, 11, 0)
    result = run_action(ActionHandoffToKcc(), "jij snapt er ook niks van, stomme bot", "complaint", slots=TERNEUZEN,
                        sender="c-angry")
    assert result.responses[0] == "utter_handoff_frustrated" and "utter_goodbye" not in result.responses
    assert default_store().open_ticket_for("c-angry").reason == "complaint"


def test_costs_on_saturday_after_a_marriage_answer_are_the_marriage_costs():
    result = run_action(ActionHandleInform(), "en de kosten op zaterdag?", "inform", [("date_expr", "zaterdag")],
                        slots={**TERNEUZEN, "topic": "marriage_notice"})
    assert result.responses[0] == "utter_marriage_costs" and result.slot("topic") == "marriage_costs"


# ------------------------------------------------------------------ callback
def test_callback_with_number_is_recorded_for_staff_and_masked_in_logs(frozen_now, caplog):
    frozen_now(2026, 12, 8, 11, 0)
    caplog.set_level(logging.INFO)
    result = run_action(ActionHandoffToKcc(), "kunnen jullie me terugbellen op 06-12345678", "request_callback",
                        slots=TERNEUZEN, sender="c-call")
    assert "teruggebeld" in result.text and "zo snel mogelijk" in result.text and "17:00" not in result.text
    ticket = default_store().open_ticket_for("c-call")
    assert ticket.callback_requested is True and ticket.callback_number == "06-12345678"
    assert "12345678" not in caplog.text
    assert all("12345678" not in item["text"] for item in ticket.transcript)


def test_callback_without_number_out_of_hours(frozen_now):
    frozen_now(2026, 12, 5, 10, 0)  # Saturday
    result = run_action(ActionHandoffToKcc(), "bel me even terug", "request_callback", slots=TERNEUZEN,
                        sender="c-call2")
    assert result.responses == ["utter_handoff_callback_next_working_day"]  # KCC hours not verified
    assert "eerstvolgende werkdag" in result.text and "8:30" not in result.text
    ticket = default_store().open_ticket_for("c-call2")
    assert ticket.callback_requested is True and ticket.callback_number is None


# ------------------------------------------------------------------ another municipality
def test_i_mean_another_municipality_answers_the_last_topic_there(frozen_now):
    frozen_now(2026, 12, 8, 11, 0)
    first = run_action(ActionOpeningHours(), "zijn jullie morgen open", "opening_hours",
                       [("date_expr", "morgen")], slots=TERNEUZEN)
    assert "stadhuis" in first.text
    result = run_action(ActionHandleInform(), "sorry ik bedoel lelystad", "inform",
                        slots={**TERNEUZEN, "topic": "opening_hours", "last_day": "2026-12-09"})
    assert result.slot("municipality") == "lelystad"
    assert "Woensdag 9 december" in result.text and result.text != first.text


def test_municipality_named_alone_is_no_roadworks_area(frozen_now):
    """The NLU may take "lelystad" for a roadworks area: the question is still the last one."""
    frozen_now(2026, 12, 8, 11, 0)
    from actions.roadworks import ActionRoadworks

    result = run_action(ActionRoadworks(), "sorry ik bedoel lelystad", "roadworks_status", [("area", "lelystad")],
                        slots={**TERNEUZEN, "topic": "opening_hours"})
    assert result.slot("municipality") == "lelystad" and result.responses[0] == "utter_hours_week"
    assert "wegwerkzaamheden" not in result.text


@pytest.mark.parametrize("intent", ["inform", "nlu_fallback"])
def test_can_it_be_done_online_after_the_marriage_notice(intent):
    action = ActionHandleInform() if intent == "inform" else ActionClarify()
    result = run_action(action, "kan het ook online?", intent, slots={**TERNEUZEN, "topic": "marriage_notice"},
                        intent_ranking=[{"name": "nlu_fallback", "confidence": 0.8}])
    assert result.responses[0] == "utter_marriage_notice" and "DigiD" in result.text


def test_child_with_an_age_right_after_a_fee_answer_gets_the_childs_fee():
    result = run_action(ActionPassportId(), "en voor mijn zoon van 10?", "passport_child",
                        [("relation", "zoon"), ("age", "10")],
                        slots={**TERNEUZEN, "topic": "passport_fees", "document_type": "paspoort"})
    assert result.responses[0] == "utter_passport_fee" and "58,89" in result.text


def test_municipality_name_is_never_a_street_or_area():
    result = run_action(ActionHandleInform(), "ik bedoel lelystad", "inform", [("area", "lelystad")],
                        slots={**TERNEUZEN, "topic": "passport_fees"})
    assert result.slot("municipality") == "lelystad" and result.responses[0].startswith("utter_passport_fee")


# ------------------------------------------------------------------ languages
def test_first_reply_says_it_is_a_computer_program_in_the_citizens_language():
    dutch = run_action(ActionGreet(), "hallo", "greet", slots={**TERNEUZEN, "privacy_notice_shown": False})
    assert dutch.responses[0] == "utter_privacy_notice" and "geen mens" in dutch.texts[0]
    english = run_action(ActionGreet(), "hello", "greet",
                         slots={**TERNEUZEN, "privacy_notice_shown": False, "language": "en"})
    assert "not a person" in english.texts[0] and "Hello" in " ".join(english.texts[1:])


def test_english_question_gets_an_english_answer(frozen_now):
    frozen_now(2026, 12, 8, 11, 0)
    result = run_action(ActionOpeningHours(), "when is the town hall open today", "opening_hours",
                        [("date_expr", "today")], slots={**TERNEUZEN, "language": "en"})
    assert "8:30" in result.text and " is open " in result.text and "vandaag" not in result.text


def test_english_fee_question_in_one_go():
    result = run_action(ActionPassportId(), "how much is a passport", "passport_fees",
                        [("document_type", "paspoort")], slots={**TERNEUZEN, "language": "en"})
    assert "77,87" in result.text and "58,89" in result.text and "2023" in result.text


@pytest.mark.parametrize("language,word", [("pl", "małżeńs"), ("tr", "evlilik"), ("ar", "الزواج")])
def test_other_language_gets_its_own_short_text_then_the_answer_in_english(language, word):
    result = run_action(ActionMarriage(), "...", "marriage_how", slots={**TERNEUZEN, "language": language})
    assert result.responses == ["utter_other_language", "utter_marriage_how"]
    assert "medewerker" in result.texts[0] and "Ik antwoord" not in result.texts[0]  # their own language
    assert result.buttons == ["Medewerker"] and result.slot("other_language_notice") == language
    assert "notice" in result.texts[1] and "melding" not in result.texts[1]  # the answer in English
    again = run_action(ActionMarriage(), "...", "marriage_costs",
                       slots={**TERNEUZEN, "language": language, "other_language_notice": language})
    assert again.responses[0] == "utter_marriage_costs"  # the short text only once


def test_not_understood_in_another_language_offers_a_colleague():
    result = run_action(ActionClarify(), "...", "nlu_fallback", slots={**TERNEUZEN, "language": "pl"},
                        intent_ranking=[{"name": "nlu_fallback", "confidence": 0.8}])
    assert result.responses == ["utter_other_language"] and result.slot("pending_question") == "colleague"


def test_handoff_from_another_language_records_the_language(frozen_now):
    frozen_now(2026, 12, 8, 11, 0)
    slots = {**TERNEUZEN, "language": "pl", "pending_question": "colleague"}
    result = run_action(ActionHandleYesNo(), "tak", "affirm", slots=slots, sender="c-pl")
    assert run_followup(result, "tak", "affirm", slots, "c-pl").responses == ["utter_handoff_other_language"]
    assert default_store().open_ticket_for("c-pl").language == "pl"


def test_a_photo_as_first_message_also_gets_the_notice_that_this_is_a_computer():
    from actions.conversation import ActionSmallTalk

    result = run_action(ActionSmallTalk(), "", "non_text_message", slots={**TERNEUZEN, "privacy_notice_shown": False})
    assert result.responses == ["utter_privacy_notice", "utter_privacy_link_unverified", "utter_text_only"]
    assert "geen mens" in result.texts[0]
