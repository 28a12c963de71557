"""Every text a citizen reads, in one list, checked for the house style (issue 17).

The list (:func:`citizen_texts`):

* every domain response (domain/*.yml): every variation and every button title, the
  Dutch ones also rendered with the real values of their placeholders that change the
  sentence (municipality name, desk names, document names from content/ and actions/);
* every label of appcare/labels.yml (button titles, list labels and parts of sentences
  the actions and the channel put into a response), per language; the titles of the
  buttons count as button titles;
* every string literal of the Python modules whose strings reach a citizen
  (:data:`CITIZEN_MODULES`: the actions, the channels, the clock and the opening-hours
  and roadworks code), found with the ``ast`` module; docstrings, log calls and regular
  expressions are left out.

The Dutch rules apply to the Dutch texts only (no condition, or condition ``nl``): the
form of address is "je" (never "u"/"uw"), "het paspoort" is never "hij"/"hem", no "tot
onbekend", "in de gemeente Lelystad" (never "in gemeente Lelystad"), desk names that
fit "... is open van", "ID-kaart" spelled one way, no officialese. Dutch sentences live
in domain/*.yml and shorter texts in appcare/labels.yml (editors can change them there);
a Python module holds a Dutch sentence only as an allow-listed last-resort fallback
(:data:`PYTHON_SENTENCES`).

The behaviour tests at the end show what the citizen gets in the conversations where
these rules were broken before.
"""
from __future__ import annotations

import ast
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from tests.conftest import run_action

ROOT = Path(__file__).resolve().parent.parent
CITIZEN_MODULES = sorted(
    [p for p in (ROOT / "actions").glob("*.py") if p.name != "__init__.py"]
    + [p for p in (ROOT / "channels").rglob("*.py") if p.name != "__init__.py"]
    + [ROOT / "appcare" / name for name in ("clock.py", "opening_hours.py", "roadworks_feed.py")]
)
# Dutch sentences that may stay in Python: module -> {text: why}.
PYTHON_SENTENCES: Dict[str, Dict[str, str]] = {
    "channels/turn_recovery.py": {
        "Sorry, door een storing kan ik je bericht nu niet beantwoorden. Een collega van het klantcontactcentrum "
        "kijkt ernaar. Heb je haast? Bel {phone}.": "last resort when the model has no utter_channel_failure",
        "Er ging bij mij iets mis. Probeer het zo nog eens, of bel {phone}.":
            "last resort when the model has no utter_technical_problem",
        "Laatste bericht: ": "ticket summary for KCC staff, not for citizens",
    },
    "channels/rest_input.py": {
        "Sorry, er ging iets mis aan mijn kant. Probeer het later nog eens of typ 'medewerker'.":
            "last resort when the model has no utter_default",
    },
    "actions/handoff.py": {
        "Onderwerp eerder in gesprek: ": "ticket summary for KCC staff, not for citizens",
    },
}
# Domain responses a Python fallback must repeat word for word.
FALLBACK_OF = {
    ("channels/turn_recovery.py", "FALLBACK_FAILURE_TEXT"): "utter_channel_failure",
    ("channels/turn_recovery.py", "FALLBACK_NO_REPLY_TEXT"): "utter_technical_problem",
    ("channels/rest_input.py", "LAST_RESORT_TEXT"): "utter_default",
}

PLACEHOLDER = re.compile(r"(?<!\{)\{([^{}\n]+)\}(?!\})")
# "u"/"uw" as a word ("U kunt", "uw paspoort"), not inside a word ("uur", "jouw", "u's").
FORMAL = re.compile(r"(?<![\w'’/-])(?:[Uu]w?)(?![\w'’/-])")
SHE_HE = re.compile(r"\b(?:hij|hem)\b", re.IGNORECASE)
# "Het is 10 jaar geldig" after "Een ID-kaart ...": "het" for "de ID-kaart".
IT_STARTS = re.compile(r"(?:^|[.!?:]\s+)Het (?:is|wordt)\b")
UNKNOWN_END = re.compile(r"\b(?:tot|van|vanaf|op|t/m)\s+onbekend\b", re.IGNORECASE)
UNKNOWN_END_EN = re.compile(r"\b(?:until|from|to|on)\s+unknown\b", re.IGNORECASE)
MUNICIPALITY_WITHOUT_ARTICLE = re.compile(r"\b(?:in|van|bij|uit|voor|met|naar|door) gemeente [A-Z]")
# Other spellings of the ID card than "ID-kaart", and of WhatsApp.
ID_CARD_SPELLING = re.compile(r"\b(?:id-kaart|Id-kaart|ID kaart|id kaart|idkaart|ID-Kaart)\b|\bWhatsapp\b")
# Officialese a B1 text does without ("als", "graag", "via", ...).
OFFICIALESE = re.compile(r"\b(?:indien|gelieve|middels|teneinde|alsmede|omtrent|betreffende|dient|"
                         r"reeds|derhalve|ten behoeve van|d\.m\.v\.|i\.v\.m\.)\b", re.IGNORECASE)
DESK_PHRASE = re.compile(r"^(?:de|het) \S")  # "de publieksbalie ...": fits "... is open van", "bij ..."
BUTTON_TITLE_LIMIT = 20  # WhatsApp cuts longer reply-button titles
DUTCH_HINTS = {"je", "jij", "jouw", "u", "uw", "ik", "het", "een", "de", "niet", "kan", "kun", "kon", "wil",
               "bel", "typ", "probeer", "bericht", "later", "nog", "wat", "van", "gemeente", "werkdag", "zijn"}


@dataclass
class CitizenText:
    where: str  # "domain utter_x[0]", "domain utter_x[0] button", "actions/x.py:12"
    text: str
    dutch: bool  # the Dutch rules apply
    english: bool = False
    template: Optional[str] = None  # the domain text before its placeholders were filled

    def __str__(self) -> str:
        return f"{self.where}: {self.text!r}"


# ---------------------------------------------------------------------- the list
def _domain():
    from tests.conftest import domain

    return domain()


def language_of(variation: Dict[str, Any]) -> Optional[str]:
    for condition in variation.get("condition") or []:
        if condition.get("type") == "slot" and condition.get("name") in ("language", "reply_language"):
            return str(condition["value"])
    return None


def sample_values() -> Dict[str, List[str]]:
    """Real values of the placeholders that change a Dutch sentence's grammar."""
    from actions.passport_id import DOCUMENT_NAMES, document_name
    from appcare import content

    facts = [content.load(name) for name in content.available_municipalities()]
    neutral = document_name(_FakeTurn(), None)
    return {
        "municipality_name": sorted({f.municipality.name for f in facts}),
        "desk_name": sorted({desk.name for f in facts for desk in f.desks.values()}),
        "document": sorted(set(DOCUMENT_NAMES.values()) | {neutral}),
    }


class _FakeTurn:
    lang = "nl"


def renderings(template: str, samples: Dict[str, List[str]]) -> Iterator[str]:
    """The template with every combination of the sample values; other placeholders get
    a neutral stand-in."""
    names = sorted(set(PLACEHOLDER.findall(template)))
    varying = [n for n in names if n in samples]
    for combination in itertools.product(*(samples[n] for n in varying)):
        values = dict(zip(varying, combination))

        def fill(match: "re.Match[str]") -> str:
            return values.get(match.group(1), "X")

        yield PLACEHOLDER.sub(fill, template).replace("{{", "{").replace("}}", "}")


def domain_texts() -> Iterator[CitizenText]:
    samples = sample_values()
    for name, variations in sorted(_domain().responses.items()):
        for index, variation in enumerate(variations):
            code = language_of(variation)
            dutch = code in (None, "nl")
            where = f"domain {name}[{index}]" + (f" ({code})" if code else "")
            text = variation.get("text") or ""
            if dutch:
                for rendered in renderings(text, samples):
                    yield CitizenText(where, rendered, True, template=text)
            else:
                yield CitizenText(where, text, False, english=code == "en", template=text)
            for button in variation.get("buttons") or []:
                yield CitizenText(f"{where} button", str(button.get("title") or ""), dutch, english=code == "en")


def _skipped_nodes(tree: ast.AST) -> set:
    """Docstrings and every string inside a log call or a regular expression."""
    skipped = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)):
            skipped.add(id(body[0].value))
        if isinstance(node, ast.Call):
            func = node.func
            owner = getattr(getattr(func, "value", None), "id", "")
            attribute = getattr(func, "attr", "")
            if owner in ("logger", "logging", "re") or attribute in (
                    "debug", "info", "warning", "error", "exception", "critical"):
                skipped.update(id(sub) for sub in ast.walk(node))
    return skipped


def python_literals(path: Path) -> Iterator[tuple]:
    """(line, text, name of the constant it is assigned to or None) of every string literal."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _skipped_nodes(tree)
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            for sub in ast.walk(node.value):
                names[id(sub)] = node.targets[0].id
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped:
            yield node.lineno, node.value, names.get(id(node))


def python_texts() -> Iterator[CitizenText]:
    for path in CITIZEN_MODULES:
        module = path.relative_to(ROOT).as_posix()
        for line, text, _ in python_literals(path):
            # words and fragments of a text ("tot ", "Meer keuzes ..."), not code values ("idkaart")
            if re.search(r"[^\W\d_]", text) and re.search(r"\s", text):
                yield CitizenText(f"{module}:{line}", text, dutch=not _english_only(text))


def _english_only(text: str) -> bool:
    words = set(re.findall(r"[^\W\d_]+", text.lower()))
    return bool(words) and not (words & DUTCH_HINTS) and bool(words & {"the", "you", "your", "and", "to", "of",
                                                                         "until", "at", "not", "or"})


# Labels that are the title of a button (WhatsApp: at most 20 characters).
BUTTON_LABELS = re.compile(r"^(?:button|intent_title)\.|^whatsapp_list\.button$")


def label_texts() -> Iterator[CitizenText]:
    from appcare import labels

    for key, texts in labels.load().items():
        for lang, text in texts.items():
            where = f"appcare/labels.yml {key} ({lang})" + (" button" if BUTTON_LABELS.search(key) else "")
            yield CitizenText(where, text, dutch=lang == "nl", english=lang == "en", template=text)


def citizen_texts() -> List[CitizenText]:
    return list(domain_texts()) + list(label_texts()) + list(python_texts())


@pytest.fixture(scope="module")
def texts() -> List[CitizenText]:
    return citizen_texts()


@pytest.fixture(scope="module")
def dutch_texts(texts) -> List[CitizenText]:
    return [t for t in texts if t.dutch]


def offenders(items, pattern) -> List[str]:
    return [str(t) for t in items if pattern.search(t.text)]


# ---------------------------------------------------------------------- the list itself
def test_the_list_holds_every_response_variation_and_the_python_strings(texts):
    responses = _domain().responses
    listed = {t.where.split("[")[0].replace("domain ", "") for t in texts if t.where.startswith("domain ")}
    assert listed == set(responses)
    variations = sum(len(v) for v in responses.values())
    assert len({t.where.split(" button")[0] for t in texts if t.where.startswith("domain ")}) == variations
    modules = {t.where.split(":")[0] for t in texts if not t.where.startswith(("domain ", "appcare/labels.yml "))}
    for module in ("channels/turn_recovery.py", "channels/rest_input.py", "actions/opening_hours.py",
                   "appcare/clock.py"):
        assert module in modules
    # every label in every language (the button titles, list labels and sentence parts
    # of the actions and channels, issue 20)
    from appcare import labels

    listed_labels = {t.where.removesuffix(" button") for t in texts if t.where.startswith("appcare/labels.yml ")}
    assert listed_labels == {f"appcare/labels.yml {key} ({lang})" for key, by_lang in labels.load().items()
                             for lang in by_lang}
    assert any(t.text == "Meer keuzes (typ wat je kiest):" and t.dutch for t in texts)
    # the Dutch texts are rendered with every desk and document name
    assert any("de telefonische klantenservice" in t.text for t in texts if "utter_hours_day[0]" in t.where)
    documents = [t.text for t in texts if t.template and "{document}" in t.template and t.dutch]
    assert documents and all(any(name in text for text in documents) for name in ("paspoort", "ID-kaart"))


# ---------------------------------------------------------------------- Dutch rules
def test_the_form_of_address_is_je_never_u(dutch_texts):
    assert not offenders(dutch_texts, FORMAL)


def test_het_paspoort_is_never_hij_or_hem(dutch_texts):
    wrong = [str(t) for t in dutch_texts if "paspoort" in t.text.lower() and SHE_HE.search(t.text)]
    assert not wrong
    # a text about "een ID-kaart" does not say "Het is ..." about it either
    wrong = [str(t) for t in dutch_texts
             if t.template and "{document}" in t.template and "ID-kaart" in t.text and IT_STARTS.search(t.text)]
    assert not wrong


def test_no_time_range_ends_in_onbekend(texts):
    assert not offenders([t for t in texts if t.dutch], UNKNOWN_END)
    assert not offenders([t for t in texts if t.english or not t.dutch], UNKNOWN_END_EN)


def test_municipality_names_have_their_article(dutch_texts):
    assert not offenders(dutch_texts, MUNICIPALITY_WITHOUT_ARTICLE)


def test_desk_names_fit_the_opening_hours_sentences():
    from appcare import content

    for name in content.available_municipalities():
        for key, desk in content.load(name).desks.items():
            assert DESK_PHRASE.match(desk.name), f"{name} desk {key}: {desk.name!r} does not fit '... is open van'"


def test_one_spelling_of_id_kaart_and_whatsapp(dutch_texts):
    assert not offenders(dutch_texts, ID_CARD_SPELLING)


def test_no_officialese(dutch_texts):
    assert not offenders(dutch_texts, OFFICIALESE)


def test_button_titles_fit_whatsapp(texts):
    from actions.conversation import EN_INTENT_TITLES, INTENT_TITLES

    titles = [t.text for t in texts if t.where.endswith(" button")]
    titles += list(INTENT_TITLES.values()) + list(EN_INTENT_TITLES.values())
    assert not [t for t in titles if len(t) > BUTTON_TITLE_LIMIT]


# ---------------------------------------------------------------------- Dutch sentences live in the domain
def _dutch_sentence(text: str) -> bool:
    words = re.findall(r"[^\W\d_]+", text.lower())
    return (len(words) >= 4 and len(set(words) & DUTCH_HINTS) >= 2
            and bool(re.search(r"[.!?:]\s*$|[.!?]\s", text.strip())))


def test_python_holds_dutch_sentences_only_as_allow_listed_fallbacks():
    found = {}
    for path in CITIZEN_MODULES:
        module = path.relative_to(ROOT).as_posix()
        for line, text, _ in python_literals(path):
            if _dutch_sentence(text) and text not in PYTHON_SENTENCES.get(module, {}):
                found[f"{module}:{line}"] = text
    assert not found, f"move these citizen texts to a response in domain/*.yml: {found}"
    for module, allowed in PYTHON_SENTENCES.items():
        present = {text for _, text, _ in python_literals(ROOT / module)}
        assert set(allowed) <= present, f"{module}: stale allow-list entry"


def test_python_fallbacks_repeat_their_domain_response():
    for (module, constant), response in FALLBACK_OF.items():
        values = [text for _, text, name in python_literals(ROOT / module) if name == constant]
        assert values, (module, constant)
        assert "".join(values) == _domain().responses[response][0]["text"], f"{module} {constant} != {response}"


# ---------------------------------------------------------------------- what the citizen gets
TERNEUZEN = {"municipality": "terneuzen"}
LELYSTAD = {"municipality": "lelystad"}


def test_phone_hours_read_as_a_sentence(frozen_now):
    from actions.opening_hours import ActionOpeningHours

    frozen_now(2026, 11, 25, 10, 0)
    tomorrow = run_action(ActionOpeningHours(), "tot hoe laat kan ik morgen bellen", "opening_hours",
                          [("date_expr", "morgen"), ("desk", "telefonisch")], slots=TERNEUZEN)
    assert "Morgen is de telefonische klantenservice (14 0115) open van 8:30 tot 17:00." in tomorrow.text
    now = run_action(ActionOpeningHours(), "kan ik nu bellen", "opening_hours_now", [("desk", "bellen")],
                     slots=LELYSTAD)
    assert "Ja, de telefonische klantenservice (14 0320) is nu open, tot 17:00." in now.text
    assert "telefonisch via" not in tomorrow.text + now.text


def test_passport_texts_say_het_paspoort(frozen_now):
    from actions.passport_id import ActionPassportId

    frozen_now(2026, 11, 25, 10, 0)
    for intent in ("passport_processing_time", "passport_express", "passport_pickup", "passport_fees"):
        result = run_action(ActionPassportId(), "paspoort", intent, [("document_type", "paspoort"), ("age", "30")],
                            slots=TERNEUZEN)
        assert "paspoort" in result.text and not SHE_HE.search(result.text), result.text
        assert not re.search(r"(?:^|\. )Het is", result.text), result.text
    processing = run_action(ActionPassportId(), "wanneer is mijn paspoort klaar", "passport_processing_time",
                            [("document_type", "paspoort")], slots=TERNEUZEN)
    assert "paspoort" in processing.text and not re.search(r"\b(hem|hij)\b", processing.text), processing.text


def test_marriage_costs_unknown_names_de_gemeente(frozen_now):
    from actions.marriage import ActionMarriage

    frozen_now(2026, 11, 25, 10, 0)
    costs = run_action(ActionMarriage(), "wat kost trouwen", "marriage_costs", slots=LELYSTAD)
    assert "De kosten van trouwen in de gemeente Lelystad weet ik niet zeker." in costs.text
    free = run_action(ActionMarriage(), "kan ik gratis trouwen", "marriage_free", slots=LELYSTAD)
    assert "gratis kunt trouwen in de gemeente Lelystad" in free.text


def _work(street: str, start: str, end: Optional[str], area: str = "Terneuzen") -> Dict[str, Any]:
    return {"id": street, "street": street, "area": area, "description": "Nieuwe riolering", "start": start,
            "end": end, "hindrance": "afgesloten", "detour": None, "url": None}


@pytest.fixture
def roadworks_feed(monkeypatch):
    """Serves a roadworks feed (docs/roadworks-feed.md) with the given works over HTTP."""
    from appcare import roadworks_feed as feed_module
    from tests.support.http_server import ScriptedServer

    with ScriptedServer() as server:
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        monkeypatch.setattr(feed_module, "_client", None)

        def serve(*works: Dict[str, Any]) -> None:
            server.default = (200, {"municipality": "terneuzen", "roadworks": list(works)}, 0)

        yield serve


def test_roadworks_without_an_end_date_never_say_tot_onbekend(roadworks_feed, frozen_now):
    from actions.roadworks import ActionRoadworks

    frozen_now(2026, 11, 25, 10, 0)
    roadworks_feed(_work("Noordstraat", "2026-11-02", None), _work("Dijkstraat", "2026-12-07", None))
    running = run_action(ActionRoadworks(), "werk in de Noordstraat?", "roadworks_status",
                         [("street", "Noordstraat")], slots=TERNEUZEN)
    assert "Noordstraat: Nieuwe riolering, vanaf 2 november." in running.text
    assert "Het is nog niet bekend wanneer de werkzaamheden klaar zijn." in running.text
    upcoming = run_action(ActionRoadworks(), "tot wanneer Dijkstraat?", "roadworks_duration",
                          [("street", "Dijkstraat")], slots=TERNEUZEN)
    assert "Dit begint op 7 december. Het is nog niet bekend hoe lang het duurt." in upcoming.text
    overview = run_action(ActionRoadworks(), "zijn er wegwerkzaamheden", "roadworks_status", slots=TERNEUZEN)
    assert "- Noordstraat: Nieuwe riolering (einddatum nog niet bekend)" in overview.text
    english = run_action(ActionRoadworks(), "roadworks Noordstraat?", "roadworks_status",
                         [("street", "Noordstraat")], slots={**TERNEUZEN, "language": "en"})
    assert "It is not known yet when the work will be finished." in english.text
    for result in (running, upcoming, overview, english):
        assert "onbekend" not in result.text and "unknown" not in result.text, result.text


def test_no_roadworks_in_a_village_says_in(roadworks_feed, frozen_now):
    from actions.roadworks import ActionRoadworks

    frozen_now(2026, 11, 25, 10, 0)
    roadworks_feed(_work("Noordstraat", "2026-11-02", "2026-12-04"))
    axel = run_action(ActionRoadworks(), "werkzaamheden in Axel?", "roadworks_status", [("area", "Axel")],
                      slots=TERNEUZEN)
    assert "Ik ken geen wegwerkzaamheden in Axel" in axel.text and "op Axel" not in axel.text
    later = run_action(ActionRoadworks(), "zijn er in maart wegwerkzaamheden", "roadworks_status",
                       [("date_expr", "15 maart")], slots=TERNEUZEN)
    assert "Ik ken dan geen wegwerkzaamheden" in later.text and "op die dag" not in later.text


def test_whatsapp_list_of_many_options_says_je():
    from channels import formatting

    buttons = [{"title": f"Optie {i}", "payload": f"/o{i}"} for i in range(12)]
    payloads = formatting.button_payloads("31", "Waar gaat je vraag over?", buttons)
    rest = payloads[-1]["text"]["body"]
    assert rest.startswith("Meer keuzes (typ wat je kiest):") and not FORMAL.search(rest)
