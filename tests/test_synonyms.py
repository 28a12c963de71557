"""The actions read data/nlu/synonyms.yml (appcare.synonyms) instead of keeping their
own tables of spellings: the answers are the same as with the tables they had."""
from __future__ import annotations

from typing import Optional

import pytest

from actions.opening_hours import desk_of
from actions.passport_id import document_of
from appcare import synonyms

# The tables the actions had before (actions/opening_hours.py, actions/passport_id.py).
OLD_DESK_ALIASES = {
    "balie": "balie", "stadhuis": "balie", "gemeentehuis": "balie", "stadswinkel": "balie",
    "loket": "balie", "publieksbalie": "balie", "burgerzaken": "balie",
    "telefoon": "telefoon", "telefonisch": "telefoon", "bellen": "telefoon", "kcc": "telefoon",
}


def _old_document_of(value: str) -> Optional[str]:
    value = value.lower().replace("-", "_").replace(" ", "_")
    if value in ("id", "idkaart", "identiteitskaart"):
        value = "id_kaart"
    return value if value in ("paspoort", "id_kaart") else None


class _Turn:
    class content:  # noqa: N801 - stands in for the municipality's content
        desks = {"balie": None, "telefoon": None}

    def __init__(self, value: Optional[str]) -> None:
        self.value = value

    def entity(self, name: str) -> Optional[str]:
        return self.value

    def remembered(self, name: str) -> Optional[str]:
        return self.value


def test_the_synonyms_file_is_read() -> None:
    table = synonyms.synonyms()
    assert table["stadhuis"] == "balie" and table["kcc"] == "telefoon"
    assert table["identiteitskaart"] == "id_kaart" and table["paspoort"] == "paspoort"
    assert synonyms.canonical(" ID-Kaart ") == "id_kaart" and synonyms.canonical("Onbekend") == "onbekend"


@pytest.mark.parametrize("value", sorted(OLD_DESK_ALIASES) + ["", "paspoort", "onbekend"])
def test_desk_as_before(value: str) -> None:
    for spelling in (value, value.upper(), value.title()):
        expected = OLD_DESK_ALIASES.get(spelling.lower(), "balie")
        assert desk_of(_Turn(spelling)) == expected
    assert desk_of(_Turn(None)) == "balie"


@pytest.mark.parametrize("value", ["paspoort", "PASPOORT", "id_kaart", "id-kaart", "ID-kaart", "id kaart", "Id Kaart",
                                   "id", "ID", "idkaart", "identiteitskaart", "rijbewijs", "", "kind"])
def test_document_as_before(value: str) -> None:
    assert document_of(_Turn(value)) == _old_document_of(value)


def test_every_spelling_in_the_file_gives_what_the_nlu_gives() -> None:
    """Where the new lookup answers more than the old tables (e.g. "paspoortje",
    "klantcontactcentrum"), it is what Rasa's EntitySynonymMapper (after every entity
    extractor in config.yml) already hands the action: the same answer in practice."""
    for spelling, value in synonyms.synonyms().items():
        if value in ("balie", "telefoon"):
            assert desk_of(_Turn(spelling)) == desk_of(_Turn(value)) == value
        if value in ("paspoort", "id_kaart"):
            assert document_of(_Turn(spelling)) == document_of(_Turn(value)) == value
