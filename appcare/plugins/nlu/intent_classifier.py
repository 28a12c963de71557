"""Intent classifier: logistic regression on tf-idf n-grams plus dense sentence vectors.

Chosen by measurement (docs/bench.md): on messages of citizens the project has never
seen, a linear model on tf-idf weighted word and character n-grams together with the
multilingual sentence vector (:mod:`appcare.plugins.nlu.sentence_featurizer`) understands
clearly more than DIET on the same data, trains in seconds instead of minutes and
answers in about a millisecond. Rasa's own ``LogisticRegressionClassifier`` takes the
raw counts of the CountVectorsFeaturizers, whose scale swamps the sentence vector
(measured: the vector then adds nothing); tf-idf with sublinear term frequency keeps
both in balance. Entities come from CRFEntityExtractor and
:mod:`appcare.plugins.nlu.entities`.

Config:
  C: inverse regularisation strength of the logistic regression.
  word_ngrams / char_ngrams: n-gram ranges of the two tf-idf vectorizers
    (characters within word boundaries, robust to typos such as "paspoord").
  dense_scale: weight of the dense sentence features against the tf-idf features.
  ranking_length: intents kept in ``intent_ranking``.
  other_languages: also train a model on the sentence vector alone and average it in
    for messages that are not Dutch (``appcare.plugins.nlu.language``): Dutch n-grams say
    little about a Turkish or Polish message, and the training data is Dutch.
  other_languages_C: its regularisation strength.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Optional, Text

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, PREDICTED_CONFIDENCE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from scipy.sparse import csr_matrix, hstack

logger = logging.getLogger(__name__)

MODEL_FILE = "intent_classifier.skops"
# skops loads nothing it does not know; the tf-idf weights are a scipy sparse matrix.
TRUSTED_TYPES = {"scipy.sparse._csr.csr_matrix"}
# Digits carry no intent but make every phone number, date and age a new n-gram.
_DIGITS = re.compile(r"\d")


def normalise(text: Optional[Text]) -> Text:
    return _DIGITS.sub("0", (text or "").lower())


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class SentenceIntentClassifier(IntentClassifier, GraphComponent):
    """Logistic regression over tf-idf word/char n-grams and dense sentence features."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            "C": 10.0,
            "word_ngrams": [1, 2],
            "char_ngrams": [2, 5],
            "dense_scale": 1.0,
            "max_iter": 2000,
            "random_state": 42,
            "ranking_length": 10,
            "other_languages": True,
            "other_languages_C": 10.0,
        }

    @staticmethod
    def required_packages() -> List[Text]:
        return ["sklearn", "skops"]

    def __init__(self, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
                 pipeline: Any = None) -> None:
        self.config = {**self.get_default_config(), **config}
        self._model_storage = model_storage
        self._resource = resource
        # (word vectorizer, char vectorizer, classifier, sentence-vector-only classifier or
        # None) once trained
        self.pipeline = pipeline
        self._detector = None

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "SentenceIntentClassifier":
        return cls(config, model_storage, resource)

    # ---- features -------------------------------------------------------------------
    def _dense(self, messages: List[Message]) -> Optional[csr_matrix]:
        rows = []
        for message in messages:
            _, sentence = message.get_dense_features(TEXT)
            if sentence is None:
                return None  # no dense featurizer in the pipeline: tf-idf only
            rows.append(np.asarray(sentence.features, dtype=np.float32).reshape(-1))
        return csr_matrix(np.vstack(rows) * float(self.config["dense_scale"]))

    def _matrix(self, messages: List[Message]) -> csr_matrix:
        word, char = self.pipeline[0], self.pipeline[1]
        texts = [normalise(m.get(TEXT)) for m in messages]
        parts = [word.transform(texts), char.transform(texts)]
        dense = self._dense(messages)
        if dense is not None:
            parts.append(dense)
        return hstack(parts).tocsr()

    # ---- training -------------------------------------------------------------------
    def train(self, training_data: TrainingData) -> Resource:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        examples = [e for e in training_data.intent_examples if e.get(INTENT) and e.get(TEXT)]
        if len({e.get(INTENT) for e in examples}) < 2:
            logger.warning("SentenceIntentClassifier needs examples of at least two intents; not trained")
            return self._resource
        texts = [normalise(e.get(TEXT)) for e in examples]
        word = TfidfVectorizer(analyzer="word", ngram_range=tuple(self.config["word_ngrams"]),
                               sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
        char = TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(self.config["char_ngrams"]),
                               sublinear_tf=True)
        word.fit(texts)
        char.fit(texts)
        classifier = LogisticRegression(C=float(self.config["C"]), max_iter=int(self.config["max_iter"]),
                                        class_weight="balanced", random_state=self.config["random_state"])
        self.pipeline = (word, char, classifier, None)
        labels = [e.get(INTENT) for e in examples]
        classifier.fit(self._matrix(examples), labels)
        dense = self._dense(examples)
        if self.config["other_languages"] and dense is not None:
            other = LogisticRegression(C=float(self.config["other_languages_C"]), max_iter=int(self.config["max_iter"]),
                                       class_weight="balanced", random_state=self.config["random_state"])
            other.fit(dense, labels)
            self.pipeline = (word, char, classifier, other)
        self.persist()
        return self._resource

    # ---- prediction -----------------------------------------------------------------
    def process(self, messages: List[Message]) -> List[Message]:
        if self.pipeline is None:
            return messages
        with_text = [m for m in messages if m.get(TEXT)]
        if not with_text:
            return messages
        classifier, other = self.pipeline[2], self.pipeline[3]
        probabilities = classifier.predict_proba(self._matrix(with_text))
        names = classifier.classes_
        foreign = [i for i, m in enumerate(with_text) if other is not None and self._language(m.get(TEXT)) != "nl"]
        if foreign:
            dense = self._dense([with_text[i] for i in foreign])
            if dense is not None:
                # Both views count: shared names and loanwords ("Terneuzen", "paszport")
                # still help the n-gram model, the sentence vector carries the meaning.
                probabilities[foreign] = (probabilities[foreign] + other.predict_proba(dense)) / 2
        for message, row in zip(with_text, probabilities):
            order = np.argsort(-row)
            ranking = [{INTENT_NAME_KEY: str(names[i]), PREDICTED_CONFIDENCE_KEY: float(row[i])}
                       for i in order[: max(1, int(self.config["ranking_length"]))]]
            message.set(INTENT, ranking[0], add_to_output=True)
            message.set("intent_ranking", ranking, add_to_output=True)
        return messages

    def _language(self, text: Optional[Text]) -> str:
        if self._detector is None:
            from appcare.plugins.nlu.language import LanguageDetector

            self._detector = LanguageDetector()
        return self._detector.detect(text)

    # ---- persistence ----------------------------------------------------------------
    def persist(self) -> None:
        import skops.io as sio

        with self._model_storage.write_to(self._resource) as directory:
            sio.dump(self.pipeline, directory / MODEL_FILE)

    @classmethod
    def load(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> "SentenceIntentClassifier":
        import skops.io as sio

        try:
            with model_storage.read_from(resource) as directory:
                path = directory / MODEL_FILE
                unknown = set(sio.get_untrusted_types(file=path))
                if unknown - TRUSTED_TYPES:
                    raise TypeError(f"refusing to load untrusted types {sorted(unknown - TRUSTED_TYPES)}")
                pipeline = tuple(sio.load(path, trusted=sorted(unknown)))
                # A model trained before the sentence-vector-only model existed (e.g. one
                # the editors published) has three parts: it keeps working without it.
                pipeline = pipeline + (None,) * (4 - len(pipeline))
        except ValueError:
            logger.warning("SentenceIntentClassifier: no trained model in resource %s", resource.name)
            pipeline = None
        component = cls(config, model_storage, resource, pipeline)
        if pipeline is not None and pipeline[3] is not None:
            component._language("warm-up")  # loads the language model now, not in a citizen's turn
        return component
