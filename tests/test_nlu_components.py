"""The multilingual sentence featurizer and the intent classifier as Rasa runs them:
create, train on TrainingData, persist into model storage, load, process Messages."""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import INTENT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from appcare.plugins.nlu.intent_classifier import SentenceIntentClassifier
from appcare.plugins.nlu.sentence_featurizer import MultilingualSentenceFeaturizer

CONTEXT = ExecutionContext(GraphSchema({}), "test")

# Our own small Dutch training set: three intents, no English or Polish at all.
TRAINING: Dict[str, List[str]] = {
    "opening_hours": [
        "hoe laat gaat het gemeentehuis open", "wat zijn jullie openingstijden",
        "tot hoe laat is de balie open", "zijn jullie zaterdag geopend", "wanneer kan ik bij het loket terecht",
        "op welke dagen is het stadhuis open", "hoe laat sluiten jullie vandaag", "openingstijden stadswinkel",
    ],
    "passport_fees": [
        "wat kost een paspoort", "hoeveel moet ik betalen voor een id-kaart", "prijs van een identiteitskaart",
        "wat zijn de kosten van een nieuw paspoort", "hoe duur is een id kaart voor een kind",
        "tarief paspoort volwassene", "moet ik veel betalen voor mijn reisdocument", "kosten id-kaart",
    ],
    "request_human": [
        "ik wil een medewerker spreken", "kan ik met een mens praten", "verbind me door met iemand",
        "graag contact met een collega", "mag ik iemand aan de lijn", "ik wil geen robot maar een persoon",
        "kan iemand mij terugbellen", "doorverbinden met een medewerker aub",
    ],
}


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> LocalModelStorage:
    return LocalModelStorage(tmp_path_factory.mktemp("model_storage"))


@pytest.fixture(scope="module")
def featurizer(storage) -> MultilingualSentenceFeaturizer:
    return MultilingualSentenceFeaturizer.create(
        MultilingualSentenceFeaturizer.get_default_config(), storage, Resource("sentence"), CONTEXT)


def sentence_vector(featurizer, text: str) -> np.ndarray:
    [message] = featurizer.process([Message(data={TEXT: text})])
    _, sentence = message.get_dense_features(TEXT)
    return sentence.features.reshape(-1)


def test_featurizer_adds_one_512_dim_sentence_vector(featurizer):
    [message] = featurizer.process([Message(data={TEXT: "hoe laat is de balie open"})])
    sequence, sentence = message.get_dense_features(TEXT)
    assert sequence is None
    assert sentence.features.shape == (1, 512)
    assert np.linalg.norm(sentence.features) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("text", ["", "   ", "/greet", "👍", "x" * 5000])
def test_featurizer_accepts_odd_messages(featurizer, text):
    assert sentence_vector(featurizer, text).shape == (512,)


def test_same_question_in_other_languages_lands_near_the_dutch_one(featurizer):
    dutch = sentence_vector(featurizer, "hoe laat gaat het stadhuis open")
    other_topic = sentence_vector(featurizer, "wat kost een nieuw paspoort")
    for foreign in ("what time does the city hall open", "o której otwiera się ratusz",
                    "belediye binası saat kaçta açılıyor"):
        vector = sentence_vector(featurizer, foreign)
        assert float(vector @ dutch) > float(vector @ other_topic) + 0.1, foreign


def _training_data() -> TrainingData:
    return TrainingData([Message(data={TEXT: text, INTENT: intent})
                         for intent, texts in TRAINING.items() for text in texts])


@pytest.fixture(scope="module")
def trained(storage, featurizer) -> Resource:
    resource = Resource("intent_classifier")
    classifier = SentenceIntentClassifier.create(
        SentenceIntentClassifier.get_default_config(), storage, resource, CONTEXT)
    data = featurizer.process_training_data(_training_data())
    assert classifier.train(data) == resource
    return resource


def classify(storage, featurizer, resource, texts: List[str]) -> List[str]:
    """Loads the persisted classifier as a fresh process would and classifies texts."""
    classifier = SentenceIntentClassifier.load(
        SentenceIntentClassifier.get_default_config(), storage, resource, CONTEXT)
    messages = featurizer.process([Message(data={TEXT: t}) for t in texts])
    classifier.process(messages)
    return [m.get(INTENT)["name"] for m in messages]


def test_classifier_persists_and_understands_new_dutch_wording(storage, featurizer, trained):
    assert classify(storage, featurizer, trained, [
        "wnr zijn jullie open morgen", "wat betaal je voor een paspoort", "ik wil graag een mens spreken",
    ]) == ["opening_hours", "passport_fees", "request_human"]


def test_classifier_understands_languages_it_was_not_trained_on(storage, featurizer, trained):
    assert classify(storage, featurizer, trained, [
        "When does the town hall open on Monday?",
        "Ile kosztuje paszport?",
        "Bir insanla konuşmak istiyorum",
        "Wann hat das Rathaus geöffnet?",
    ]) == ["opening_hours", "passport_fees", "request_human", "opening_hours"]


def test_other_languages_also_use_the_sentence_vector_alone(storage, featurizer, trained):
    """A Turkish question shares hardly any n-grams with the Dutch data: the model on the
    sentence vector alone is averaged in; a Dutch question uses the full model only."""
    classifier = SentenceIntentClassifier.load(
        SentenceIntentClassifier.get_default_config(), storage, trained, CONTEXT)
    word, char, full, other = classifier.pipeline
    assert other is not None and list(other.classes_) == list(full.classes_)
    turkish, dutch = featurizer.process([Message(data={TEXT: "Pasaport ne kadar tutuyor?"}),
                                         Message(data={TEXT: "wat kost een paspoort"})])
    classifier.process([turkish, dutch])
    vector = turkish.get_dense_features(TEXT)[1].features.reshape(1, -1) * classifier.config["dense_scale"]
    both = (other.predict_proba(vector)[0] + full.predict_proba(classifier._matrix([turkish]))[0]) / 2
    assert turkish.get(INTENT)["name"] == "passport_fees"
    assert turkish.get(INTENT)["confidence"] == pytest.approx(dict(zip(full.classes_, both))["passport_fees"])
    alone = dict(zip(full.classes_, full.predict_proba(classifier._matrix([dutch]))[0]))
    assert dutch.get(INTENT) == {"name": "passport_fees", "confidence": pytest.approx(alone["passport_fees"])}


def test_a_model_without_the_other_languages_part_still_loads(tmp_path, featurizer):
    """Models trained before the sentence-vector-only part (a published model kept over
    an upgrade) load and classify with the full model alone."""
    storage = LocalModelStorage(tmp_path)
    config = {**SentenceIntentClassifier.get_default_config(), "other_languages": False}
    resource = Resource("three_parts")
    classifier = SentenceIntentClassifier.create(config, storage, resource, CONTEXT)
    classifier.train(featurizer.process_training_data(_training_data()))
    classifier.pipeline = classifier.pipeline[:3]
    classifier.persist()
    assert classify(storage, featurizer, resource, ["Ile kosztuje paszport?", "wat kost een paspoort"]) == [
        "passport_fees", "passport_fees"]


def test_ranking_is_sorted_and_sums_to_one(storage, featurizer, trained):
    classifier = SentenceIntentClassifier.load(
        SentenceIntentClassifier.get_default_config(), storage, trained, CONTEXT)
    [message] = classifier.process(featurizer.process([Message(data={TEXT: "paspoort prijs"})]))
    confidences = [item["confidence"] for item in message.get("intent_ranking")]
    assert confidences == sorted(confidences, reverse=True)
    assert sum(confidences) == pytest.approx(1.0, abs=1e-6)
    assert message.get(INTENT)["confidence"] == confidences[0]


def test_untrained_classifier_leaves_messages_alone(storage, featurizer):
    classifier = SentenceIntentClassifier.load(
        SentenceIntentClassifier.get_default_config(), storage, Resource("never_trained"), CONTEXT)
    [message] = classifier.process(featurizer.process([Message(data={TEXT: "hallo"})]))
    assert message.get(INTENT) is None
