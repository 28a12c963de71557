"""``LibraryEntityExtractor``: entities from well-kept libraries, after the trained
entity model (CRFEntityExtractor in config.yml; DIET works the same way).

Placed after the entity model and before EntitySynonymMapper in config.yml. It adds
what the model missed and never duplicates a span the model already found; where the
model's span is only part of a longer expression ("woensdag" in "woensdagavond", "kerst" in
"tussen kerst en oud en nieuw") the longer one replaces it.

* ``date_expr`` - days, day parts, named days, periods and dates (appcare.plugins.nlu.dates:
  dateparser's Dutch vocabulary, the holidays package's names)
* ``age``       - ages, the value is the number ("18", "65"; appcare.plugins.nlu.ages, text2num)
* ``street``    - street names by street-type ending (appcare.plugins.nlu.streets)
* ``language``  - the message's language, ISO 639-1 (appcare.plugins.nlu.language, py3langid),
  on every message with text; its span is the whole message

Not trainable: nothing is learned, so the component is not part of the training graph.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Text, Tuple

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import (
    ENTITIES,
    ENTITY_ATTRIBUTE_END,
    ENTITY_ATTRIBUTE_START,
    ENTITY_ATTRIBUTE_TYPE,
    ENTITY_ATTRIBUTE_VALUE,
    EXTRACTOR,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message

from appcare.plugins.nlu import ages, dates
from appcare.plugins.nlu.language import LANGUAGES, LanguageDetector
from appcare.plugins.nlu.streets import StreetFinder
from appcare.pii import number_spans

logger = logging.getLogger(__name__)
_INTENT_TRIGGER = re.compile(r"^\s*/\w")
# Longer texts are only searched in their first part (the assistant asks for a shorter
# question above 1500 characters anyway); the language is judged on the first 600.
MAX_CHARS = 1500


# Entities about the whole message (span = the message), not about a word in it.
MESSAGE_ENTITIES = ("language", "reply_language")


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR], is_trainable=False)
class LibraryEntityExtractor(GraphComponent, EntityExtractorMixin):
    """Adds date_expr, age, street and language entities found with libraries."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            "dates": True,
            "ages": True,
            "streets": True,
            "language": True,
            # languages py3langid may answer (ISO 639-1); others count as the closest of these
            "languages": list(LANGUAGES),
            # folder with the *streets*.yml and areas*.yml lookup tables; default data/nlu/lookups
            "lookup_dir": None,
        }

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "LibraryEntityExtractor":
        return cls(config)

    def __init__(self, config: Optional[Dict[Text, Any]] = None) -> None:
        self._config = {**self.get_default_config(), **(config or {})}
        lookup_dir = self._config.get("lookup_dir")
        # Everything slow happens here, once: dateparser's locale data, the lemma list,
        # the language model.
        if self._config["dates"]:
            dates.warm_up()
        self._streets = StreetFinder(Path(lookup_dir) if lookup_dir else None) if self._config["streets"] else None
        self._language = LanguageDetector(self._config["languages"]) if self._config["language"] else None
        self.extract("Kan mijn dochter van 17 woensdagavond 24-12 langskomen op de Vlietstraat 3? 06-12345678")

    # ------------------------------------------------------------------ extraction
    def extract(self, text: Optional[str]) -> List[Dict[Text, Any]]:
        """Entities this component finds in ``text`` on its own (no merging with the model)."""
        if not text or not text.strip() or _INTENT_TRIGGER.match(text):
            return []
        searched = text[:MAX_CHARS]
        blocked = number_spans(searched)
        # No language entity when the message cannot tell ("ok", "👍", "12"): the slot
        # ``language`` then keeps the conversation's language.
        language = self._language.detect(text, default=None) if self._language is not None else None
        spans: List[Tuple[int, int, str, str]] = []
        if self._config["dates"]:
            spans += [(a, b, v, "date_expr") for a, b, v in dates.find_dates(searched, blocked)]
        if self._config["ages"]:
            spans += [(a, b, v, "age") for a, b, v in ages.find_ages(searched, blocked)]
        if self._streets is not None:
            found = self._streets.find(searched, blocked, trust_capitals=language != "de")
            spans += [(a, b, v, "street") for a, b, v in found]
        chosen: List[Tuple[int, int, str, str]] = []
        for span in sorted(spans, key=lambda s: (-(s[1] - s[0]), s[0])):
            if not any(span[0] < c[1] and c[0] < span[1] for c in chosen):
                chosen.append(span)
        entities = [self._entity(entity, start, end, value) for start, end, value, entity in sorted(chosen)]
        if language is not None:
            entities.append(self._entity("language", 0, len(text), language))
            # The language the assistant answers in: Dutch for Dutch, English for every
            # other language (response variations with `condition: reply_language`).
            entities.append(self._entity("reply_language", 0, len(text), "nl" if language == "nl" else "en"))
        return entities

    def _entity(self, entity: str, start: int, end: int, value: str) -> Dict[Text, Any]:
        return {
            ENTITY_ATTRIBUTE_TYPE: entity,
            ENTITY_ATTRIBUTE_START: start,
            ENTITY_ATTRIBUTE_END: end,
            ENTITY_ATTRIBUTE_VALUE: value,
            EXTRACTOR: self.name,
        }

    @staticmethod
    def merge(existing: List[Dict[Text, Any]], found: List[Dict[Text, Any]]) -> List[Dict[Text, Any]]:
        """The model's entities plus ours: ours are added where nothing overlaps, and replace
        entities that lie inside a longer span of ours; otherwise the model's span stays."""
        result = list(existing)
        for entity in found:
            kind = entity[ENTITY_ATTRIBUTE_TYPE]
            if kind in MESSAGE_ENTITIES:
                if not any(e.get(ENTITY_ATTRIBUTE_TYPE) == kind for e in result):
                    result.append(entity)
                continue
            start, end = entity[ENTITY_ATTRIBUTE_START], entity[ENTITY_ATTRIBUTE_END]
            overlapping = [
                e for e in result
                if e.get(ENTITY_ATTRIBUTE_TYPE) not in MESSAGE_ENTITIES
                and isinstance(e.get(ENTITY_ATTRIBUTE_START), int) and isinstance(e.get(ENTITY_ATTRIBUTE_END), int)
                and e[ENTITY_ATTRIBUTE_START] < end and start < e[ENTITY_ATTRIBUTE_END]
            ]
            if not overlapping:
                result.append(entity)
            elif all(
                start <= e[ENTITY_ATTRIBUTE_START] and e[ENTITY_ATTRIBUTE_END] <= end
                and e[ENTITY_ATTRIBUTE_END] - e[ENTITY_ATTRIBUTE_START] < end - start
                for e in overlapping
            ):
                result = [e for e in result if not any(e is o for o in overlapping)]
                result.append(entity)
        # Keep the message order Rasa shows (by position, the language entities last).
        return sorted(result, key=lambda e: (e.get(ENTITY_ATTRIBUTE_TYPE) in MESSAGE_ENTITIES,
                                             e.get(ENTITY_ATTRIBUTE_START) or 0))

    def process(self, messages: List[Message]) -> List[Message]:
        """Adds the entities to each message (``ENTITIES``, in the parse output)."""
        for message in messages:
            text = message.get(TEXT)
            if not isinstance(text, str):
                continue
            try:
                found = self.extract(text)
            except Exception:  # noqa: BLE001 - an odd message must never stop the NLU pipeline
                logger.exception("library entity extraction failed for a message of %d characters", len(text))
                continue
            if found:
                message.set(ENTITIES, self.merge(message.get(ENTITIES, []) or [], found), add_to_output=True)
        return messages
