"""Example questions: add, edit, move and delete keep Rasa's ``examples: |`` format
and everything else in the files; duplicates and near-duplicates are flagged."""
from __future__ import annotations

import difflib

import pytest

from desk.editor.content import EditorRefused
from desk.editor.nlu import NluRepo, normalise, plain_text, similarity, strip_placeholders
from tests.support.editor_helpers import make_project



@pytest.fixture
def nlu(tmp_path):
    project = make_project(tmp_path / "project")
    return NluRepo(project / "data" / "nlu", project / "domain", 0.85, project)


def changes(before: str, after: str):
    return [d for d in difflib.ndiff(before.splitlines(), after.splitlines()) if d[:1] in "+-"]


def test_add_appends_a_line_to_the_literal_block(nlu):
    path = nlu.dir / "passport_id.yml"
    before = path.read_text(encoding="utf-8")
    result = nlu.add("passport_fees", ["wat moet ik neertellen voor zo'n reisboekje"])
    after = path.read_text(encoding="utf-8")
    assert result.changed_files == ["data/nlu/passport_id.yml"]
    assert changes(before, after) == ["+     - wat moet ik neertellen voor zo'n reisboekje"]
    assert after.count("  examples: |\n") == before.count("  examples: |\n")
    position = after.index("- wat moet ik neertellen")
    assert after.rindex("- intent: passport_fees", 0, position) > after.rindex("- intent: passport_apply", 0, position)
    assert "wat moet ik neertellen voor zo'n reisboekje" in nlu.intents()["passport_fees"].examples


def test_rasa_reads_the_changed_file(nlu):
    from rasa.shared.nlu.training_data.loading import load_data

    nlu.add("opening_hours", ["hoe laat gaat het [stadhuis](desk) [morgen](date_expr) open"])
    data = load_data(str(nlu.dir / "opening_hours.yml"))
    texts = {e.get("text"): e for e in data.intent_examples}
    example = texts["hoe laat gaat het stadhuis morgen open"]
    assert example.get("intent") == "opening_hours"
    assert {e["entity"] for e in example.get("entities")} == {"desk", "date_expr"}


def test_edit_move_delete_keep_comments_and_other_blocks(nlu):
    files = {p: p.read_text(encoding="utf-8") for p in nlu.files()}
    old = nlu.intents()["marriage_costs"].examples[0]
    nlu.edit("marriage_costs", old, "wat kost trouwen op een dinsdag")
    nlu.move("marriage_costs", ["wat kost trouwen op een dinsdag"], "passport_fees")
    assert "wat kost trouwen op een dinsdag" in nlu.intents()["passport_fees"].examples
    nlu.delete("passport_fees", ["wat kost trouwen op een dinsdag"])
    nlu.add("marriage_costs", [old])
    after = {p: p.read_text(encoding="utf-8") for p in nlu.files()}
    for path, text in files.items():
        if path.name != "marriage.yml":
            assert after[path] == text, path.name
    # marriage.yml: the first example moved to the end of its block, nothing else changed
    assert sorted(changes(files[nlu.dir / "marriage.yml"], after[nlu.dir / "marriage.yml"])) == sorted(
        [f"-     - {old}", f"+     - {old}"])
    synonyms = (nlu.dir / "synonyms.yml").read_text(encoding="utf-8")
    assert synonyms.startswith('version: "3.1"\n\n# Entity synonyms.')


def test_duplicates_are_refused_and_near_duplicates_warned(nlu):
    existing = nlu.intents()["passport_fees"].examples[3]
    with pytest.raises(EditorRefused) as same:
        nlu.add("passport_fees", [plain_text(existing).capitalize() + "?"])
    assert same.value.code == "duplicate"
    with pytest.raises(EditorRefused) as other:
        nlu.add("passport_apply", [existing])
    assert other.value.code == "conflict" and "passport_fees" in other.value.problems[0]
    plain = "hoeveel betaal ik als volwassene voor een paspoort"
    nlu.add("passport_fees", [plain])
    result = nlu.add("passport_apply", ["hoeveel betaal ik als volwassenen voor een paspoort"])
    assert any("passport_fees" in w and "Lijkt op" in w for w in result.warnings), result.warnings
    warnings = nlu.intent_warnings("passport_apply")
    assert any("passport_fees" in w for w in warnings["hoeveel betaal ik als volwassenen voor een paspoort"])


def test_similarity_measures():
    assert normalise("Wat kost een [paspoort](document_type)?!") == "wat kost een paspoort"
    assert normalise("Openingstijden café") == "openingstijden cafe"
    assert similarity("wat kost een paspoort", "Wat kost een paspoort?") == 1.0
    assert similarity("wat kost een paspoort", "wat kost een paspoort voor mijn zoon") > 0.7
    assert similarity("wat kost een paspoort", "hoe laat gaat het stadhuis open") < 0.3
    assert similarity("openingstijden", "openingstyden") > 0.6  # typo: character n-grams still match


def test_invalid_examples_are_refused(nlu):
    for text, code in [("", "empty"), ("x" * 301, "too_long"), ("mijn bsn is [BSN]", "placeholder"),
                       ("open op [morgen]", "brackets"), ("open op [morgen](datum)", "entity")]:
        with pytest.raises(EditorRefused) as refused:
            nlu.add("opening_hours", [text])
        assert refused.value.code == code, text
    with pytest.raises(EditorRefused):
        nlu.add("no_such_intent", ["hallo daar"])
    only = nlu.intents()["inform"].examples
    with pytest.raises(EditorRefused) as last:
        nlu.delete("inform", only)
    assert last.value.code == "last"


def test_strip_placeholders():
    assert strip_placeholders("Hoi, ik ben [naam], [telefoon], wat kost een paspoort?") == "Hoi, ik ben, wat kost een paspoort?"
    assert strip_placeholders("[naam] hier. Mijn postcode is [adres].") == "hier. Mijn postcode is."
    assert strip_placeholders("wat kost een paspoort") == "wat kost een paspoort"


def test_inbox_examples_get_the_entities_the_training_data_always_marks():
    from desk.editor.nlu import annotate, entity_vocabulary

    examples = [
        "wat kost een [paspoort](document_type)", "[paspoort](document_type) kwijt", "hoe lang is een [paspoort](document_type) geldig",
        "mijn [zoon](relation) is [8](age)", "een [id kaart](document_type) voor mijn [zoon](relation)",
        "[id kaart](document_type) verlopen", "[eenmalig](document_type)",  # marked once only: too little evidence
        "op de [hoek](area) van de straat", "ik sta op de hoek", "om de hoek", "[8](age) jaar", "bel om 8 uur",
        "[morgen](date_expr) open?", "[morgen](desk) open?",  # marked as two entities: never suggested
    ]
    vocabulary = entity_vocabulary(examples)
    assert vocabulary == {"paspoort": "document_type", "zoon": "relation", "id kaart": "document_type"}
    assert annotate("Wat kost een ID kaart voor mijn zoon, ik ben 8", vocabulary) == (
        "Wat kost een [ID kaart](document_type) voor mijn [zoon](relation), ik ben 8")
    assert annotate("paspoorten en zoontje", vocabulary) == "paspoorten en zoontje"  # whole words only
    assert annotate("al [gemarkeerd](x) paspoort", vocabulary) == "al [gemarkeerd](x) paspoort"  # editor's own marks win
