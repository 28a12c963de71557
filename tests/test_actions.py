"""Custom actions with real trackers and dispatchers; replies rendered from the domain.
Facts (fees, hours, roadworks) come from tests/fixtures/content, not from the editors'
content/ (see tests/conftest.py ``fixture_content``)."""
from __future__ import annotations

import pytest

from actions.conversation import ActionClarify, ActionHandleInform, ActionHandleYesNo
from actions.handoff import ActionHandoffToKcc, ActionRelayToKcc, ActionReturnToBot, ActionCloseHandoff
from actions.marriage import ActionMarriage
from actions.opening_hours import ActionOpeningHours
from actions.passport_id import ActionPassportId
from actions.roadworks import ActionRoadworks
from appcare.handoff_store import default_store
from tests.conftest import run_action, run_followup
from tests.support.http_server import ScriptedServer

TERNEUZEN = {"municipality": "terneuzen"}
LELYSTAD = {"municipality": "lelystad"}
pytestmark = pytest.mark.usefixtures("fixture_content")


def test_opening_hours_tomorrow(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)  # Wednesday
    result = run_action(ActionOpeningHours(), "hoe laat zijn jullie morgen open", "opening_hours",
                        [("date_expr", "morgen")], slots=TERNEUZEN)
    assert "Morgen is de publieksbalie in het stadhuis open van 8:30 tot 16:30 en 18:00 tot 20:00" in result.text
    assert "nog door de gemeente worden bevestigd" in result.text  # placeholder hours are flagged


def test_open_now_when_closed_gives_next_moment(frozen_now):
    frozen_now(2026, 11, 28, 11, 0)  # Saturday
    result = run_action(ActionOpeningHours(), "zijn jullie nu open", "opening_hours_now", slots=LELYSTAD)
    assert "nu gesloten" in result.text and "maandag 30 november om 9:00" in result.text


def test_follow_up_saturday_uses_context(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionHandleInform(), "en zaterdag?", "inform", [("date_expr", "zaterdag")],
                        slots={**TERNEUZEN, "topic": "opening_hours"})
    assert "Zaterdag 28 november is de publieksbalie in het stadhuis gesloten" in result.text


def test_holiday_closed(frozen_now):
    frozen_now(2026, 12, 20, 10, 0)
    result = run_action(ActionOpeningHours(), "open op 2e kerstdag?", "opening_hours",
                        [("date_expr", "2e kerstdag")], slots=LELYSTAD)
    assert "gesloten" in result.text and "maandag 28 december om 9:00" in result.text


def test_strict_mode_refers_instead_of_quoting_unverified_hours(frozen_now, monkeypatch):
    monkeypatch.setenv("APPCARE_STRICT_FACTS", "1")
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionOpeningHours(), "openingstijden", "opening_hours", slots=LELYSTAD)
    assert "https://www.lelystad.nl" in result.text and "9:00" not in result.text


def test_id_card_fee_for_daughter_of_12(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionPassportId(), "wat kost een id kaart voor mn dochter van 12", "passport_fees",
                        [("document_type", "id_kaart"), ("relation", "kind"), ("age", "12")], slots=TERNEUZEN)
    assert "ID-kaart voor iemand jonger dan 18 kost € 37,99 (maximumbedrag 2023)" in result.text
    assert "5 jaar geldig" in result.text
    assert "rvig.nl" in result.text  # an older fee links to the current table


def test_fee_without_age_answers_both_ages_then_the_follow_up(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    first = run_action(ActionPassportId(), "wat kost een paspoort", "passport_fees",
                       [("document_type", "paspoort")], slots=TERNEUZEN)
    assert first.responses[0] == "utter_passport_fee_by_age" and first.slot("pending_question") == "age"
    assert "€ 77,87" in first.text and "€ 58,89" in first.text and "?" not in first.text.split("\n")[0]
    second = run_action(ActionHandleInform(), "ik ben 34", "inform", [("age", "34")],
                        slots={**TERNEUZEN, "document_type": "paspoort", "pending_question": "age",
                               "topic": "passport_fees"})
    assert "€ 77,87" in second.text


def test_phone_number_is_not_taken_for_an_age(frozen_now):
    """DIET may tag the "06" of a phone number as an age; the bot must ask instead."""
    frozen_now(2026, 11, 25, 10, 0)
    text = "wat kost een paspoort? bel me op 06-12345678"
    start = text.index("06")
    result = run_action(ActionPassportId(), text, "passport_fees",
                        [("document_type", "paspoort"), {"entity": "age", "value": "06", "start": start, "end": start + 2}],
                        slots={**TERNEUZEN, "age": "06"})
    assert result.responses[0] == "utter_passport_fee_by_age", result.text
    assert "age" in [e.get("name") for e in result.events if e.get("event") == "slot"] and result.slot("age") is None
    real = run_action(ActionPassportId(), "wat kost een paspoort, ik ben 6", "passport_fees",
                      [("document_type", "paspoort"), {"entity": "age", "value": "6", "start": 30, "end": 31}],
                      slots={**TERNEUZEN, "age": "6"})
    assert "jonger dan 18" in real.text


def test_fee_without_document_or_age_lists_every_fee(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionPassportId(), "wat kost dat eigenlijk", "passport_fees", [], slots=TERNEUZEN)
    assert result.responses[0] == "utter_passport_fee_overview"
    for amount in ("€ 77,87", "€ 58,89", "€ 70,38", "€ 37,99"):
        assert amount in result.text


def test_correction_to_id_card(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionHandleInform(), "nee ik bedoel een id-kaart", "inform",
                        [("document_type", "id_kaart")],
                        slots={**TERNEUZEN, "document_type": "paspoort", "age": "40", "topic": "passport_fees"})
    assert "ID-kaart voor iemand van 18 jaar of ouder kost € 70,38" in result.text


def test_first_contact_gets_privacy_notice():
    result = run_action(ActionMarriage(), "hoeveel getuigen", "marriage_witnesses",
                        slots={**TERNEUZEN, "privacy_notice_shown": None})
    assert result.responses[0] == "utter_privacy_notice"
    assert "2, 3 of 4 getuigen" in result.text
    assert result.slot("privacy_notice_shown") is True


def test_marriage_costs_known_in_terneuzen_unknown_in_lelystad():
    terneuzen = run_action(ActionMarriage(), "wat kost trouwen", "marriage_costs", slots=TERNEUZEN)
    assert "€ 476,00" in terneuzen.text and "€ 1.069,00" in terneuzen.text and "dinsdag" in terneuzen.text
    lelystad = run_action(ActionMarriage(), "wat kost trouwen", "marriage_costs", slots=LELYSTAD)
    assert "weet ik niet zeker" in lelystad.text and "14 0320" in lelystad.text
    assert "476" not in lelystad.text  # never Terneuzen's facts for Lelystad


def test_roadworks_on_street(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionRoadworks(), "is de Larserdreef nog afgesloten", "roadworks_status",
                        [("street", "Larserdreef")], slots=LELYSTAD)
    assert "Larserdreef: Nieuw asfalt" in result.text and "Omleiding: via de Oostranddreef" in result.text


def test_roadworks_none_and_asks_street(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    none = run_action(ActionRoadworks(), "werk aan de Parlaan?", "roadworks_status", [("street", "Parlaan")],
                      slots=LELYSTAD)
    assert "geen wegwerkzaamheden op Parlaan" in none.text
    ask = run_action(ActionRoadworks(), "zijn er wegwerkzaamheden", "roadworks_status", slots=LELYSTAD)
    assert ask.responses[-1] == "utter_roadworks_ask_street"  # after the known works (in one go)


def test_roadworks_source_down(monkeypatch, frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    with ScriptedServer() as server:
        server.default = (500, {}, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        from appcare import roadworks_feed
        monkeypatch.setattr(roadworks_feed, "_client", None)
        result = run_action(ActionRoadworks(), "afsluiting Noordstraat?", "roadworks_status",
                            [("street", "Noordstraat")], slots=TERNEUZEN)
    assert "even niet opzoeken" in result.text and "terneuzen.nl" in result.text


def test_handoff_out_of_hours_creates_masked_ticket(frozen_now):
    frozen_now(2026, 11, 28, 22, 0)  # Saturday night
    events = [{"event": "user", "text": "mijn bsn is 123456782"}, {"event": "bot", "text": "Sorry?"}]
    result = run_action(ActionHandoffToKcc(), "ik wil een medewerker", "request_human", slots=TERNEUZEN,
                        events=events, sender="31612345678")
    # the KCC hours are not verified: no clock time is promised
    assert "op de eerstvolgende werkdag" in result.text and "8:30" not in result.text
    assert result.slot("handoff_active") is True
    ticket = default_store().open_ticket_for("31612345678")
    assert ticket.reason == "request_human" and not ticket.in_kcc_hours
    assert "123456782" not in str(ticket.transcript) and "[BSN]" in str(ticket.transcript)


def test_handoff_in_hours_and_relay_and_return(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionHandoffToKcc(), "ik heb een klacht", "complaint", slots=LELYSTAD, sender="c-2")
    assert result.responses[0] == "utter_handoff_complaint"
    assert "zo snel mogelijk" in result.text and "17:00" not in result.text  # unverified KCC hours: no time
    relay = run_action(ActionRelayToKcc(), "bel me op 0612345678", "greet",
                       slots={**LELYSTAD, "handoff_active": True}, sender="c-2")
    assert relay.messages == []  # the bot stays silent
    ticket = default_store().get(default_store().open_ticket_for("c-2").id)
    assert ticket.messages[-1]["text"] == "bel me op [telefoon]"
    back = run_action(ActionReturnToBot(), "stop", "return_to_bot", slots={**LELYSTAD, "handoff_active": True},
                      sender="c-2")
    assert back.slot("handoff_active") is False and default_store().open_ticket_for("c-2") is None


@pytest.fixture
def verified_kcc_hours(tmp_path, monkeypatch):
    """The test content with the KCC hours of both municipalities marked as verified."""
    import shutil

    from appcare import content
    from tests.conftest import FIXTURE_CONTENT

    target = tmp_path / "content"
    shutil.copytree(FIXTURE_CONTENT, target)
    for name in ("terneuzen", "lelystad"):
        path = target / f"{name}.yml"
        text = path.read_text(encoding="utf-8")
        marker = "    verified: false\n    note: KCC hours for WhatsApp NOT FOUND; placeholder.\n"
        assert text.count(marker) == 1
        path.write_text(text.replace(marker, ""), encoding="utf-8")
    monkeypatch.setattr(content, "CONTENT_DIR", target)
    content.clear_cache()
    yield target
    content.clear_cache()


def test_handoff_with_verified_kcc_hours_names_the_moment(frozen_now, verified_kcc_hours):
    frozen_now(2026, 11, 28, 22, 0)  # Saturday night
    night = run_action(ActionHandoffToKcc(), "ik wil een medewerker", "request_human", slots=TERNEUZEN,
                       sender="c-night")
    assert "maandag 30 november om 8:30" in night.text
    frozen_now(2026, 11, 25, 10, 0)
    day = run_action(ActionHandoffToKcc(), "ik heb een klacht", "complaint", slots=LELYSTAD, sender="c-day")
    assert "vandaag vóór 17:00" in day.text


def test_staff_close_returns_conversation_to_bot(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    run_action(ActionHandoffToKcc(), "medewerker", "request_human", slots=TERNEUZEN, sender="c-3")
    closed = run_action(ActionCloseHandoff(), "", "EXTERNAL_kcc_close", [("kcc_outcome", "beantwoord")],
                        slots={**TERNEUZEN, "handoff_active": True}, sender="c-3")
    assert closed.slot("handoff_active") is False and "afgerond" in closed.text
    assert default_store().list(status=["closed"])[0].outcome == "beantwoord"


def test_clarify_then_handoff_after_second_miss(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    ranking = [{"name": "nlu_fallback", "confidence": 0.8}, {"name": "passport_fees", "confidence": 0.18},
               {"name": "opening_hours", "confidence": 0.13}, {"name": "marriage_how", "confidence": 0.03}]
    first = run_action(ActionClarify(), "ik wil wat weten over dat ding", "nlu_fallback", slots=TERNEUZEN,
                       intent_ranking=ranking)
    titles = [b["title"] for b in first.messages[0]["buttons"]]
    assert titles == ["Kosten paspoort/ID", "Openingstijden", "Medewerker"]
    assert first.slot("failed_attempts") == 1
    second = run_action(ActionClarify(), "nou gewoon dat", "nlu_fallback",
                        slots={**TERNEUZEN, "failed_attempts": 1}, sender="c-4")
    assert second.followup() == "action_handoff_to_kcc" and second.slot("handoff_reason") == "not_understood"
    handoff = run_followup(second, "nou gewoon dat", "nlu_fallback", {**TERNEUZEN, "failed_attempts": 1}, "c-4")
    assert handoff.responses[0] == "utter_handoff_not_understood" and handoff.slot("handoff_active") is True
    assert default_store().open_ticket_for("c-4").reason == "not_understood"


@pytest.mark.parametrize("text,response", [
    ("", "utter_empty_message"),
    ("👍👍👍", "utter_ask_rephrase_text"),
    ("https://example.org/iets", "utter_ask_rephrase_text"),
    ("x" * 5000, "utter_too_long"),
    ("\x00\x01\x02 ÿþ", "utter_ask_rephrase_text"),
])
def test_bad_input_gets_a_sensible_reply(text, response):
    result = run_action(ActionClarify(), text, "nlu_fallback", slots=TERNEUZEN)
    assert result.responses == [response]
    assert all(t.strip() for t in result.texts)


def test_broken_content_still_replies(monkeypatch, tmp_path):
    from appcare import content
    (tmp_path / "national.yml").write_text("passport: [\n", encoding="utf-8")
    (tmp_path / "terneuzen.yml").write_text("x: 1\n", encoding="utf-8")
    monkeypatch.setattr(content, "CONTENT_DIR", tmp_path)
    content.clear_cache()
    result = run_action(ActionPassportId(), "wat kost een paspoort", "passport_fees", slots=TERNEUZEN)
    content.clear_cache()
    assert result.responses == ["utter_default"]


def test_late_message_gets_apology(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionOpeningHours(), "zijn jullie nu open", "opening_hours_now", slots=LELYSTAD,
                        metadata={"delay_seconds": 5 * 3600})
    assert result.responses[0] == "utter_sorry_late"
    assert "is nu open" in result.text  # computed for the real now, not the moment it was sent


def test_feedback_yes_no():
    result = run_action(ActionHandleYesNo(), "ja", "affirm", slots={**TERNEUZEN, "pending_question": "feedback"})
    assert result.responses == ["utter_feedback_positive"]


# ------------------------------------------------------------ entities from the library extractor
@pytest.fixture(scope="module")
def library_extractor():
    from appcare.plugins.nlu.entities import LibraryEntityExtractor

    return LibraryEntityExtractor({})


def entities_of(extractor, text):
    """The entities the NLU pipeline's LibraryEntityExtractor gives this text."""
    return extractor.extract(text)


def test_period_gets_one_line_per_day(frozen_now, library_extractor):
    frozen_now(2026, 12, 20, 10, 0)  # Sunday before Christmas
    text = "welke tijden gelden er tussen kerst en oud en nieuw?"
    result = run_action(ActionOpeningHours(), text, "opening_hours", entities_of(library_extractor, text),
                        slots=TERNEUZEN)
    lines = result.texts[0].splitlines()
    assert lines[0] == ("De openingstijden van de publieksbalie in het stadhuis tussen kerst en oud en nieuw "
                        "(25 t/m 31 december):")
    assert lines[1:] == [
        "vr 25 dec: gesloten (Eerste Kerstdag)",
        "za 26 dec: gesloten (Tweede Kerstdag)",
        "zo 27 dec: gesloten",
        "ma 28 dec: 8:30-16:30",
        "di 29 dec: 8:30-16:30",
        "wo 30 dec: 8:30-16:30",
        "do 31 dec: 8:30-16:30 en 18:00-20:00",
    ]


def test_next_week_in_lelystad(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionOpeningHours(), "wat zijn de tijden komende week in lelystad", "opening_hours",
                        [("date_expr", "komende week")], slots=LELYSTAD)
    assert "volgende week (30 november t/m 6 december):" in result.text
    assert "do 3 dec: 9:00-20:00" in result.text and "zo 6 dec: gesloten" in result.text


def test_evening_says_whether_there_is_an_evening_opening(frozen_now, library_extractor):
    frozen_now(2026, 11, 23, 10, 0)  # Monday
    text = "kan ik woensdagavond bij jullie terecht"
    wednesday = run_action(ActionOpeningHours(), text, "opening_hours", entities_of(library_extractor, text),
                           slots=TERNEUZEN)
    assert ("Woensdag 25 november is de publieksbalie in het stadhuis open van 8:30 tot 16:30, 's avonds niet."
            in wednesday.text)
    text = "en als ik donderdagavond na het eten kom?"
    thursday = run_action(ActionOpeningHours(), text, "opening_hours", entities_of(library_extractor, text),
                          slots=TERNEUZEN)
    assert ("Donderdagavond 26 november is de publieksbalie in het stadhuis open van 8:30 tot 16:30 "
            "en 18:00 tot 20:00." in thursday.text)
    saturday = run_action(ActionOpeningHours(), "zaterdagochtend?", "opening_hours",
                          [("date_expr", "zaterdagochtend")], slots=TERNEUZEN)
    assert "Zaterdagochtend 28 november is de publieksbalie in het stadhuis gesloten" in saturday.text


def test_oudjaarsdag_with_the_municipalitys_special_hours(frozen_now, monkeypatch, tmp_path):
    import shutil

    from appcare import content

    shutil.copytree(content.CONTENT_DIR, tmp_path / "content")
    path = tmp_path / "content" / "terneuzen.yml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "  exceptions: []",
        "  exceptions:\n"
        "    - date: 2026-12-31\n"
        "      hours: [\"08:30-12:00\"]\n"
        "      reason: oudjaarsdag\n"
        "      source: https://www.terneuzen.nl\n"
        "      checked: 2026-11-25\n", 1), encoding="utf-8")
    monkeypatch.setattr(content, "CONTENT_DIR", tmp_path / "content")
    content.clear_cache()
    try:
        frozen_now(2026, 12, 20, 10, 0)
        result = run_action(ActionOpeningHours(), "tot hoe laat kan ik oudjaarsdag langskomen", "opening_hours",
                            [("date_expr", "oudjaarsdag")], slots=TERNEUZEN)
        period = run_action(ActionOpeningHours(), "graag ook de tijden tussen kerst en oud en nieuw", "opening_hours",
                            [("date_expr", "tussen kerst en oud en nieuw")], slots=TERNEUZEN)
    finally:
        content.clear_cache()
    assert ("Oudjaarsdag (donderdag 31 december) is de publieksbalie in het stadhuis open van 8:30 tot 12:00."
            in result.text)
    assert "do 31 dec: 8:30-12:00 (oudjaarsdag)" in period.text


def test_age_values_from_the_extractor_give_the_right_fee(frozen_now, library_extractor):
    frozen_now(2026, 11, 25, 10, 0)
    for text in ("mijn opa is 65-plusser, wat betaalt hij voor een paspoort", "paspoort 65+ prijs",
                 "hoeveel moet een volwassene neerleggen voor het paspoort"):
        result = run_action(ActionPassportId(), text, "passport_fees",
                            [("document_type", "paspoort")] + entities_of(library_extractor, text), slots=TERNEUZEN)
        assert "paspoort voor iemand van 18 jaar of ouder kost € 77,87" in result.text, text
    text = "wat is de prijs van een id-kaart voor mijn nichtje van dertien"
    minor = run_action(ActionPassportId(), text, "passport_fees",
                       [("document_type", "id_kaart")] + entities_of(library_extractor, text), slots=TERNEUZEN)
    assert "ID-kaart voor iemand jonger dan 18 kost € 37,99" in minor.text


def test_age_words_kept_by_diet_still_work(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionHandleInform(), "volwassene", "inform", [("age", "volwassene")],
                        slots={**TERNEUZEN, "document_type": "paspoort", "pending_question": "age",
                               "topic": "passport_fees"})
    assert "van 18 jaar of ouder kost € 77,87" in result.text


def test_recognised_street_without_works_is_named(frozen_now, library_extractor):
    frozen_now(2026, 11, 25, 10, 0)
    for text, street in (("zijn er werkzaamheden op de vlietstraat 23?", "Vlietstraat"),
                         ("omleiding Burgemeester Smeetslaan", "Burgemeester Smeetslaan")):
        result = run_action(ActionRoadworks(), text, "roadworks_status", entities_of(library_extractor, text),
                            slots=TERNEUZEN)
        assert result.responses == ["utter_roadworks_none_dated"], result.text  # the feed has a date
        assert f"In het overzicht van 20 november staan geen wegwerkzaamheden op {street}." in result.text
    # the answer to "which street?" is routed to roadworks and names it as well
    text = "zonnebloemhof 7"
    follow_up = run_action(ActionHandleInform(), text, "inform", entities_of(library_extractor, text),
                           slots={**TERNEUZEN, "pending_question": "street", "topic": "roadworks_status"})
    assert "staan geen wegwerkzaamheden op Zonnebloemhof" in follow_up.text


def test_roadworks_in_a_period(frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    result = run_action(ActionRoadworks(), "werkzaamheden Larserdreef volgende week", "roadworks_status",
                        [("street", "Larserdreef"), ("date_expr", "volgende week")], slots=LELYSTAD)
    assert "Larserdreef: Nieuw asfalt" in result.text
    later = run_action(ActionRoadworks(), "werkzaamheden Larserdreef tussen kerst en oud en nieuw",
                       "roadworks_status", [("street", "larserdreef"),
                                            ("date_expr", "tussen kerst en oud en nieuw")], slots=LELYSTAD)
    assert later.responses == ["utter_roadworks_none"] and "op Larserdreef" in later.text


@pytest.mark.parametrize("text", ["Dzień dobry, potrzebuję paszportu", "مرحبا، أحتاج جواز سفر",
                                  "Merhaba, pasaport için randevu almak istiyorum"])
def test_other_language_is_answered_in_clarify(text, library_extractor):
    entities = entities_of(library_extractor, text)
    language = [e["value"] for e in entities if e["entity"] == "language"]
    result = run_action(ActionClarify(), text, "nlu_fallback", entities, slots={**TERNEUZEN, "language": language[0]})
    assert result.responses == ["utter_other_language"]
    assert result.buttons == ["Medewerker"] and result.slot("pending_question") == "colleague"
