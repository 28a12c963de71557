"""Dialogue policy that keeps the bot silent while a human of the KCC has the conversation.

While the slot ``handoff_active`` is true, every citizen message goes to
``action_relay_to_kcc`` (appends it to the open ticket, no bot answer), except the
intent ``return_to_bot`` ("stop", "bot"), which runs ``action_return_to_bot``.
Staff actions arrive as external intents through Rasa's HTTP API
(``trigger_intent`` with ``output_channel=latest``):

* ``EXTERNAL_kcc_reply`` with entity ``kcc_text`` -> ``action_deliver_staff_reply``
* ``EXTERNAL_kcc_close`` with entity ``kcc_outcome`` -> ``action_close_handoff``

Wire it into ``config.yml`` under ``policies`` as ``appcare.plugins.handoff_policy.HandoffPolicy``;
its priority (7) is above the RulePolicy (6), so rules and stories never answer
for a human.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Text

from rasa.core.policies.policy import Policy, PolicyPrediction
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker

from appcare.action_names import (
    CLOSE_HANDOFF_ACTION,
    DELIVER_STAFF_REPLY_ACTION,
    HANDOFF_ACTION,
    RELAY_ACTION,
    RETURN_ACTION,
)

HANDOFF_SLOT = "handoff_active"
RETURN_INTENT = "return_to_bot"
EXTERNAL_ACTIONS = {
    "EXTERNAL_kcc_reply": DELIVER_STAFF_REPLY_ACTION,
    "EXTERNAL_kcc_close": CLOSE_HANDOFF_ACTION,
}
# After these the bot waits for the next message. The handoff also ends a turn when
# another action asked for it (FollowupAction from the clarifying question): without
# this, the core fallback would ask the clarifying question again after the handoff.
HANDLED_ACTIONS = {RELAY_ACTION, RETURN_ACTION, HANDOFF_ACTION, *EXTERNAL_ACTIONS.values()}


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=True
)
class HandoffPolicy(Policy):
    """Routes messages to the KCC while a handoff is open (see module docstring)."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {"priority": 7}

    def train(
        self, training_trackers: List[TrackerWithCachedStates], domain: Domain, **kwargs: Any
    ) -> Resource:
        # Nothing to learn: the behaviour is fixed. Persist an empty resource.
        with self._model_storage.write_to(self._resource):
            pass
        return self._resource

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: Optional[Dict[Text, Any]] = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        action = self._next_action(tracker)
        probabilities = self._default_predictions(domain)
        if action and action in domain.action_names_or_texts:
            probabilities[domain.index_for_action(action)] = 1.0
        return self._prediction(probabilities)

    @staticmethod
    def _next_action(tracker: DialogueStateTracker) -> Optional[str]:
        latest_action = tracker.latest_action_name
        if latest_action in HANDLED_ACTIONS:
            return ACTION_LISTEN_NAME
        if latest_action != ACTION_LISTEN_NAME:
            return None
        intent = (tracker.latest_message.intent or {}).get("name") if tracker.latest_message else None
        if intent in EXTERNAL_ACTIONS:
            return EXTERNAL_ACTIONS[intent]
        if not tracker.get_slot(HANDOFF_SLOT):
            return None
        if intent == RETURN_INTENT:
            return RETURN_ACTION
        return RELAY_ACTION
