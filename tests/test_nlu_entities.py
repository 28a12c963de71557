"""LibraryEntityExtractor: dates, ages, streets and language from libraries, run as Rasa
runs it (process() on Message objects) without a trained model."""
from __future__ import annotations

from typing import Dict, List, Optional

import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message

from appcare.plugins.nlu.entities import LibraryEntityExtractor


@pytest.fixture(scope="module")
def extractor(tmp_path_factory) -> LibraryEntityExtractor:
    storage = LocalModelStorage(tmp_path_factory.mktemp("model_storage"))
    return LibraryEntityExtractor.create(
        LibraryEntityExtractor.get_default_config(), storage, Resource("library_entities"),
        ExecutionContext(GraphSchema({}), "test"),
    )


def run(extractor: LibraryEntityExtractor, text: str, diet: Optional[List[Dict]] = None) -> List[Dict]:
    message = Message(data={TEXT: text})
    if diet is not None:
        message.set(ENTITIES, diet)
    [processed] = extractor.process([message])
    return processed.get(ENTITIES, [])


def values(extractor, text: str, entity: str) -> List[str]:
    return [e["value"] for e in run(extractor, text) if e["entity"] == entity]


# ------------------------------------------------------------------ dates
@pytest.mark.parametrize("text,expected", [
    ("kan ik maandagavond nog bij de balie terecht", "maandagavond"),
    ("is de balie op vrijdagochtend bemand", "vrijdagochtend"),
    ("is de balie donderdagmiddag open", "donderdagmiddag"),
    ("past het als ik morgenavond aanschuif", "morgenavond"),
    ("mag ik morgenochtend om kwart over negen komen", "morgenochtend om kwart over negen"),
    ("zijn jullie vanavond bereikbaar", "vanavond"),
    ("vanmiddag nog open?", "vanmiddag"),
    ("tot hoe laat kan ik oudjaarsdag terecht", "oudjaarsdag"),
    ("hoe laat dicht op kerstavond", "kerstavond"),
    ("is het stadhuis 2e paasdag dicht", "2e paasdag"),
    ("geldt er een aangepast rooster op tweede kerstdag", "tweede kerstdag"),
    ("zijn jullie met Koningsdag open", "Koningsdag"),
    ("hemelvaart gesloten?", "hemelvaart"),
    ("werken jullie op bevrijdingsdag", "bevrijdingsdag"),
    ("hebben jullie andere tijden tussen tweede kerstdag en oud en nieuw", "tussen tweede kerstdag en oud en nieuw"),
    ("wat zijn de tijden deze week", "deze week"),
    ("welke dagen is het loket aankomende week bemand", "aankomende week"),
    ("zijn jullie door de week ook 's avonds open", "door de week"),
    ("dit weekend open?", "dit weekend"),
    ("kan ik volgende week dinsdag een afspraak maken", "volgende week dinsdag"),
    ("open op 27 april?", "27 april"),
    ("en op 24-12?", "24-12"),
    ("zijn er over twee weken werkzaamheden", "over twee weken"),
    ("open op woensdg?", "woensdg"),
])
def test_day_expressions_are_found(extractor, text, expected):
    assert values(extractor, text, "date_expr") == [expected]


@pytest.mark.parametrize("text", [
    "een paspoort is 10 jaar geldig",
    "het duurt 5 werkdagen",
    "kom om 9 uur",
    "bel me op 06-12345678",
    "goedemorgen allemaal, even een vraagje over mijn rijbewijs",
    "een kind van 8-12 jaar",
    "open van 9-17 uur",
    "fijne feestdagen allemaal",
    "prettig weekend!",
    "Morgen! tot hoe laat is de balie bereikbaar?",
])
def test_durations_times_numbers_and_wishes_are_no_day(extractor, text):
    assert values(extractor, text, "date_expr") == []


# ------------------------------------------------------------------ ages
@pytest.mark.parametrize("text,expected", [
    ("paspoort 18+ kosten", "18"),
    ("hoeveel moet een volwassene betalen", "18"),
    ("tarief volwassen", "18"),
    ("is er korting voor 65-plussers", "65"),
    ("65+ id kaart", "65"),
    ("id-kaart voor mijn neef, hij is veertien", "14"),
    ("paspoort voor een kind van 8", "8"),
    ("ik ben 42", "42"),
    ("ze wordt 16 volgende maand", "16"),
    ("mijn zoon is twaalf jaar", "12"),
    ("voor een 16-jarige", "16"),
    ("jonger dan 18", "17"),
    ("17", "17"),
    ("vijfenzestig", "65"),
])
def test_ages_are_found_with_the_number_as_value(extractor, text, expected):
    assert values(extractor, text, "age") == [expected]


@pytest.mark.parametrize("text", [
    "een paspoort is 10 jaar geldig",
    "over 5 jaar verloopt hij",
    "we zijn al 10 jaar getrouwd",
    "bel me op 06-12345678",
    "mijn bsn is 123456782",
    "ik woon op 4531 AB 12",
    "het duurt 5 werkdagen",
    "ik ben 24 december jarig",
    "een kind",
])
def test_no_age_from_durations_phone_numbers_or_postcodes(extractor, text):
    assert values(extractor, text, "age") == []


# ------------------------------------------------------------------ streets
@pytest.mark.parametrize("text,expected", [
    ("werkzaamheden Axelsedam 3", "Axelsedam"),
    ("Kastanjedreef 22 sas van gent", "Kastanjedreef"),
    ("zijn er werkzaamheden op de vlietstraat 23", "Vlietstraat"),
    ("is de Prins Hendrikstraat afgesloten", "Prins Hendrikstraat"),
    ("omleiding burgemeester smeetslaan?", "Burgemeester Smeetslaan"),
    ("hoe lang is de kennedylaan nog dicht", "Kennedylaan"),
    ("werk aan de ijsselmeerdijk", "IJsselmeerdijk"),
    ("Vincent van Goghstraat afgesloten?", "Vincent van Goghstraat"),
    ("werkzaamheden op de Grote Markt", "Grote Markt"),
    ("is de Stationsweg 4 bereikbaar", "Stationsweg"),
    ("is de Van Steenbergenlaan weer open", "Van Steenbergenlaan"),
    ("ligt de lange dreef nog open", "Lange Dreef"),
])
def test_streets_are_found_without_house_number(extractor, text, expected):
    assert values(extractor, text, "street") == [expected]


@pytest.mark.parametrize("text", [
    "ik ben de weg kwijt",
    "file op de snelweg",
    "waar kan ik parkeren bij het stadhuis",
    "welke trouwlocatie is er",
    "mijn trouwring is gestolen",
    "ik woon in Rotterdam",
    "is er vandaag markt",
    "het fietspad is kapot",
    "de straat is glad",
])
def test_common_words_are_no_street(extractor, text):
    assert values(extractor, text, "street") == []


# ------------------------------------------------------------------ language
@pytest.mark.parametrize("text,code", [
    ("Dzień dobry", "pl"),
    ("Hello, what time does the city office close on Friday?", "en"),
    ("merhaba", "tr"),
    ("Merhaba, pasaport için randevu almak istiyorum", "tr"),
    ("السلام عليكم، متى تفتح البلدية؟", "ar"),
    ("Bonjour, quand est-ce que la mairie est ouverte ?", "fr"),
    ("Guten Tag, wann hat das Rathaus geöffnet?", "de"),
    ("Добрий день, коли відкрита мерія?", "uk"),
    ("Iska warran, waxaan rabaa baasaboor", "so"),
    ("hoi wnr zyn jullie opn morgn", "nl"),
    ("wat kost een paspoord voor mn dochter", "nl"),
    ("dank je wel", "nl"),
    ("ik wil trouwen", "nl"),
])
def test_language_of_every_message(extractor, text, code):
    assert values(extractor, text, "language") == [code]
    # the assistant answers in Dutch, and in English to every other language
    assert values(extractor, text, "reply_language") == ["nl" if code == "nl" else "en"]


@pytest.mark.parametrize("text", ["ok", "👍", "12", "ja"])
def test_no_language_when_the_message_cannot_tell(extractor, text):
    """The slot ``language`` then keeps the conversation's language (an English
    conversation stays English after "ok")."""
    assert values(extractor, text, "language") == []


def test_language_entity_spans_the_message(extractor):
    [language] = [e for e in run(extractor, "Dzień dobry") if e["entity"] == "language"]
    assert (language["start"], language["end"], language["extractor"]) == (0, 11, "LibraryEntityExtractor")


# ------------------------------------------------------------------ merging with DIET
def test_longer_expression_replaces_diet_part(extractor):
    text = "kan ik dinsdagavond langskomen"
    diet = [{"entity": "date_expr", "start": 7, "end": 14, "value": "dinsdag", "extractor": "DIETClassifier"}]
    dates = [e for e in run(extractor, text, diet) if e["entity"] == "date_expr"]
    assert [(d["value"], d["extractor"]) for d in dates] == [("dinsdagavond", "LibraryEntityExtractor")]

    text = "hebben jullie andere tijden tussen kerst en oud en nieuw"
    diet = [{"entity": "date_expr", "start": 35, "end": 40, "value": "kerst", "extractor": "DIETClassifier"}]
    dates = [e for e in run(extractor, text, diet) if e["entity"] == "date_expr"]
    assert [d["value"] for d in dates] == ["tussen kerst en oud en nieuw"]


def test_diet_span_is_kept_and_not_duplicated(extractor):
    text = "werk op de vlietstraat 23"
    diet = [{"entity": "street", "start": 11, "end": 22, "value": "vlietstraat", "extractor": "DIETClassifier"}]
    streets = [e for e in run(extractor, text, diet) if e["entity"] == "street"]
    assert streets == diet
    # an overlapping entity of another kind that is not inside ours stays as well
    text = "paspoort voor mijn dochter van 12"
    diet = [{"entity": "age", "start": 31, "end": 33, "value": "12", "extractor": "DIETClassifier"},
            {"entity": "relation", "start": 19, "end": 26, "value": "dochter", "extractor": "DIETClassifier"}]
    entities = run(extractor, text, diet)
    assert [e["entity"] for e in entities] == ["relation", "age", "language", "reply_language"]


def test_missed_entities_are_added_next_to_diet(extractor):
    text = "hoeveel betaal ik voor een paspoort voor mijn neef, hij is veertien"
    diet = [{"entity": "document_type", "start": 27, "end": 35, "value": "paspoort", "extractor": "DIETClassifier"}]
    entities = run(extractor, text, diet)
    assert [(e["entity"], e["value"]) for e in entities] == [
        ("document_type", "paspoort"), ("age", "14"), ("language", "nl"), ("reply_language", "nl")]
    age = entities[1]
    assert text[age["start"]:age["end"]] == "veertien" and age["extractor"] == "LibraryEntityExtractor"


# ------------------------------------------------------------------ robustness and speed
@pytest.mark.parametrize("text", ["", "   ", "👍👍👍", "x" * 5000, "/greet", '/inform{"age":"12"}',
                                  "\x00\x01\x02 ÿþ", "06-12345678", "€ 12,50", "1234 AB", "??"])
def test_odd_messages_never_crash(extractor, text):
    entities = run(extractor, text)
    assert all(isinstance(e["value"], str) for e in entities)
    if text.startswith("/") or not text.strip():
        assert entities == []  # intent triggers and empty messages are left alone


def test_message_without_text_is_left_alone(extractor):
    message = Message(data={})
    assert extractor.process([message])[0].get(ENTITIES) is None


def test_component_takes_its_place_after_diet_in_the_rasa_graph():
    from rasa.engine.recipes.default_recipe import DefaultV1Recipe

    config = {
        "recipe": "default.v1",
        "language": "nl",
        "pipeline": [
            {"name": "WhitespaceTokenizer"},
            {"name": "CountVectorsFeaturizer"},
            {"name": "DIETClassifier", "epochs": 1},
            {"name": "appcare.plugins.nlu.entities.LibraryEntityExtractor"},
            {"name": "EntitySynonymMapper"},
        ],
        "policies": [],
    }
    graph = DefaultV1Recipe().graph_config_for_recipe(config, {})
    predict = graph.predict_schema.nodes
    ours = [name for name, node in predict.items() if node.uses is LibraryEntityExtractor]
    assert len(ours) == 1
    assert predict[ours[0]].needs["messages"].startswith("run_DIETClassifier")
    mapper = next(node for node in predict.values() if node.uses.__name__ == "EntitySynonymMapper")
    assert mapper.needs["messages"] == ours[0]
    # not trainable: no training node
    assert not any(node.uses is LibraryEntityExtractor for node in graph.train_schema.nodes.values())
