"""Response variations per language (domain/*.yml).

The assistant answers in Dutch (the variation without a condition, always the first:
tests/conftest.py and channels/turn_recovery.py read it) and in English (a variation
with ``condition: slot language = en`` for every response). In every other language of
``appcare.plugins.nlu.language.LANGUAGES`` it has one short text per situation: the privacy
notice, the offer of a colleague, the handoff and the urgent texts with the crisis
numbers. Rasa picks the variation whose condition matches the slot ``language``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from appcare.plugins.nlu.language import LANGUAGES

ROOT = Path(__file__).resolve().parent.parent
# Responses that exist in every language the citizen may write in.
EVERY_LANGUAGE = (
    "utter_privacy_notice",
    "utter_other_language",
    "utter_handoff_other_language",
    "utter_handoff_urgent",
    "utter_urgent_numbers",
)
OTHER_LANGUAGES = [code for code in LANGUAGES if code not in ("nl", "en")]
# {name}, not the {{...}} of a JSON payload.
PLACEHOLDER = re.compile(r"(?<!\{)\{([^{}\n]+)\}(?!\})")
# Dutch words that must not be left over in an English text ('medewerker' in quotes is
# the word the citizen may type, and is allowed).
DUTCH_WORDS = {"je", "jij", "jou", "jouw", "u", "uw", "het", "een", "de", "van", "niet", "en", "wil",
               "kun", "kunt", "bij", "naar", "ook", "voor", "geen", "maar", "dat", "wat", "welke",
               "op", "om", "tot", "als", "nog", "dan", "gemeente", "vandaag", "morgen",
               "dank", "graag", "gaat", "heb", "hebt"}
# The script each language is written in (a few letters of it must be in the text).
SCRIPTS = {
    "ar": r"[\u0600-\u06FF]", "fa": r"[\u0600-\u06FF]",
    "uk": r"[\u0400-\u04FF]", "ru": r"[\u0400-\u04FF]", "bg": r"[\u0400-\u04FF]",
    "zh": r"[\u4E00-\u9FFF]", "am": r"[\u1200-\u139F]", "ti": r"[\u1200-\u139F]",
}


@pytest.fixture(scope="module")
def responses() -> Dict[str, List[Dict[str, Any]]]:
    from rasa.shared.core.domain import Domain

    return Domain.load(str(ROOT / "domain")).responses


# The five texts every language has are selected by the slot ``language``; every other
# English variation by ``reply_language`` (English for English and all other languages).
NATIVE_TEXTS = {"utter_privacy_notice", "utter_other_language", "utter_handoff_other_language",
                "utter_handoff_urgent", "utter_urgent_numbers"}


def language_of(variation: Dict[str, Any]) -> Optional[str]:
    """The language value of a variation's condition; None for the Dutch default."""
    for condition in variation.get("condition") or []:
        if condition.get("type") == "slot" and condition.get("name") in ("language", "reply_language"):
            return str(condition["value"])
    return None


def dutch(variations: List[Dict[str, Any]]) -> Dict[str, Any]:
    return variations[0]


def by_language(variations: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {language_of(v): v for v in variations if language_of(v)}


def placeholders(text: str) -> set:
    return set(PLACEHOLDER.findall(text or ""))


def payloads(variation: Dict[str, Any]) -> List[str]:
    return [button.get("payload") for button in variation.get("buttons") or []]


def words(text: str) -> List[str]:
    text = PLACEHOLDER.sub(" ", text or "")
    text = re.sub(r"'medewerker'", " ", text)
    return re.findall(r"[^\W\d_]+", text.lower())


def test_domain_has_responses(responses):
    assert len(responses) > 50


def test_dutch_is_the_first_variation_and_has_no_condition(responses):
    for name, variations in responses.items():
        assert not variations[0].get("condition"), f"{name}: the Dutch text must be first, without a condition"
        defaults = [v for v in variations if not v.get("condition")]
        assert len(defaults) == 1, f"{name}: exactly one variation without a condition"


def test_conditions_are_on_the_language_slot_with_a_known_code(responses):
    for name, variations in responses.items():
        codes = []
        for variation in variations[1:]:
            conditions = variation.get("condition") or []
            assert len(conditions) == 1, name
            slot = "language" if name in NATIVE_TEXTS else "reply_language"
            assert conditions[0]["type"] == "slot" and conditions[0]["name"] == slot, name
            code = conditions[0]["value"]
            assert isinstance(code, str) and code in LANGUAGES and code != "nl", (name, code)
            codes.append(code)
        assert len(codes) == len(set(codes)), f"{name}: a language has two variations"


def test_every_response_has_an_english_variation(responses):
    missing = [name for name, variations in responses.items() if "en" not in by_language(variations)]
    assert not missing, f"no English variation: {missing}"


@pytest.mark.parametrize("name", EVERY_LANGUAGE)
def test_every_language_has_the_privacy_handoff_and_urgent_texts(responses, name):
    assert name in responses
    have = by_language(responses[name])
    missing = [code for code in OTHER_LANGUAGES if code not in have]
    assert not missing, f"{name}: no variation in {missing}"
    for code in OTHER_LANGUAGES:
        assert have[code]["text"].strip() and have[code]["text"] != dutch(responses[name])["text"], (name, code)


def test_only_the_five_texts_exist_in_other_languages(responses):
    for name, variations in responses.items():
        extra = set(by_language(variations)) - {"en"}
        if name not in EVERY_LANGUAGE:
            assert not extra, f"{name}: the assistant answers only in Dutch and English, not {extra}"


def test_every_variation_has_the_placeholders_and_buttons_of_the_dutch_text(responses):
    for name, variations in responses.items():
        base = dutch(variations)
        for variation in variations[1:]:
            code = language_of(variation)
            assert placeholders(variation["text"]) == placeholders(base["text"]), (name, code)
            assert payloads(variation) == payloads(base), (name, code)
            titles = [b.get("title") for b in variation.get("buttons") or []]
            assert all(titles), (name, code)
            if code == "en" and titles:
                assert titles != [b.get("title") for b in base["buttons"]], f"{name}: titles not translated"


def test_dutch_texts_use_the_informal_form(responses):
    for name, variations in responses.items():
        found = [w for w in words(dutch(variations)["text"]) if w in ("u", "uw")]
        assert not found, f"{name}: formal 'u'/'uw' in the Dutch text"


def test_english_texts_have_no_dutch_words_left(responses):
    for name, variations in responses.items():
        english = by_language(variations)["en"]["text"]
        left = [w for w in words(english) if w in DUTCH_WORDS]
        assert not left, f"{name}: Dutch words in the English text: {left}"
        if "'medewerker'" in dutch(variations)["text"] and name != "utter_other_language":
            assert "'colleague' or 'medewerker'" in english, name


def test_offer_of_a_colleague_keeps_the_dutch_word_medewerker(responses):
    for code, variation in by_language(responses["utter_other_language"]).items():
        assert "'medewerker'" in variation["text"], code


def test_other_languages_are_written_in_their_own_script(responses):
    for name in EVERY_LANGUAGE:
        have = by_language(responses[name])
        for code, script in SCRIPTS.items():
            # only BSN, Veilig Thuis and 'medewerker' may be in Latin letters
            text = re.sub(r"'medewerker'|BSN|Veilig Thuis", "", PLACEHOLDER.sub("", have[code]["text"]))
            letters = [c for c in text if c.isalpha()]
            own = [c for c in letters if re.match(script, c)]
            assert len(own) > 0.9 * len(letters), (name, code)


def test_urgent_numbers_keep_three_lines(responses):
    for code, variation in by_language(responses["utter_urgent_numbers"]).items():
        assert variation["text"].count("\n") == 2, code
        assert "Veilig Thuis" in variation["text"], code


# ------------------------------------------------------------------ Rasa's own NLG
@pytest.fixture(scope="module")
def nlg(responses):
    from rasa.core.nlg import TemplatedNaturalLanguageGenerator

    return TemplatedNaturalLanguageGenerator(responses)


def test_rasa_renders_the_english_variation(nlg):
    generated = nlg.generate_from_slots("utter_greet", {"language": "en", "reply_language": "en"}, "rest",
                                        municipality_name="gemeente Terneuzen")
    assert generated["text"].startswith("Hello! I'm the digital assistant of gemeente Terneuzen.")


@pytest.mark.parametrize("language", [None, "nl"])
def test_rasa_renders_dutch_without_language_or_for_nl(nlg, language):
    generated = nlg.generate_from_slots("utter_greet", {"language": language, "reply_language": language}, "rest",
                                        municipality_name="gemeente Terneuzen")
    assert generated["text"].startswith("Hallo! Ik ben de digitale assistent van de gemeente Terneuzen.")
    other = nlg.generate_from_slots("utter_other_language", {"language": language}, "rest")
    assert other["text"].startswith("Ik antwoord in het Nederlands")


def test_rasa_renders_the_polish_text_for_another_language(nlg, responses):
    polish = by_language(responses["utter_other_language"])["pl"]["text"]
    generated = nlg.generate_from_slots("utter_other_language", {"language": "pl"}, "rest")
    assert generated["text"] == polish and "'medewerker'" in polish and "Ik antwoord" not in polish


def test_rasa_renders_english_for_english_only_responses_in_another_language(nlg):
    slots = {"language": "pl", "reply_language": "en"}
    generated = nlg.generate_from_slots("utter_greet", slots, "rest", municipality_name="gemeente Terneuzen")
    assert generated["text"].startswith("Hello!")
    own = nlg.generate_from_slots("utter_other_language", slots, "rest")
    assert "Ik antwoord" not in own["text"] and "answer in Dutch" not in own["text"]  # Polish, not English


def test_rasa_fills_the_placeholders_of_a_translation(nlg):
    generated = nlg.generate_from_slots("utter_urgent_numbers", {"language": "ar"}, "rest", emergency="112",
                                        suicide_line="113", domestic_violence_line="0800-2000")
    assert "112" in generated["text"] and "0800-2000" in generated["text"] and "{" not in generated["text"]
    english = nlg.generate_from_slots("utter_passport_ask_document", {"reply_language": "en"}, "rest")
    assert [b["title"] for b in english["buttons"]] == ["Passport", "ID card"]
    assert english["buttons"][0]["payload"] == '/inform{"document_type":"paspoort"}'
