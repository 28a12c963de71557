"""appcare.plugins.handoff_policy: what the bot does with a citizen's message while a KCC
colleague has the conversation, decided from the tracker alone.

* A handoff is open (slot ``handoff_active``): every message goes to the ticket
  (``action_relay_to_kcc``) and the bot says nothing itself, except "stop"/"bot"
  (intent ``return_to_bot``), which hands the conversation back to the bot.
* A colleague's reply and closing arrive as external intents and are delivered
  (``action_deliver_staff_reply``, ``action_close_handoff``).
* After each of those actions, and after the handoff itself, the bot waits for the
  next message (``action_listen``).
* Without an open handoff the policy predicts nothing: the other policies answer.

``HandoffPolicy._next_action`` is the decision (a pure function of the tracker); the
policy's prediction over the real domain is checked too, so an action the policy
names but the domain lacks could not go unnoticed.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest
from rasa.core.policies.rule_policy import RulePolicy
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.events import ActionExecuted, Event, SessionStarted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from appcare.plugins.handoff_policy import HandoffPolicy
from tests.conftest import domain

RELAY = "action_relay_to_kcc"
RETURN = "action_return_to_bot"
DELIVER = "action_deliver_staff_reply"
CLOSE = "action_close_handoff"
HANDOFF = "action_handoff_to_kcc"


# ---------------------------------------------------------------------- conversations
def start() -> List[Event]:
    return [ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted(ACTION_LISTEN_NAME)]


def citizen(text: str, intent: str, confidence: float = 0.95) -> UserUttered:
    return UserUttered(text, intent={"name": intent, "confidence": confidence})


def handed_over() -> List[Event]:
    """A citizen asked for a colleague; the ticket is open and the bot listens."""
    return start() + [
        citizen("ik wil graag iemand van de gemeente spreken", "request_human"),
        ActionExecuted(HANDOFF),
        SlotSet("handoff_active", True),
        ActionExecuted(ACTION_LISTEN_NAME),
    ]


def staff(intent: str, entities: Dict[str, str]) -> UserUttered:
    """What Rasa's ``trigger_intent`` records for the desk's reply or close."""
    return UserUttered.create_external(intent, [{"entity": k, "value": v} for k, v in entities.items()])


STAFF_REPLY = ("EXTERNAL_kcc_reply", {"kcc_text": "Uw aanvraag is binnen, u hoort morgen van ons."})
STAFF_CLOSE = ("EXTERNAL_kcc_close", {"kcc_outcome": "beantwoord"})


def tracker(events: List[Event]) -> DialogueStateTracker:
    return DialogueStateTracker.from_events("citizen-1", events, slots=domain().slots)


def decision(events: List[Event]) -> Optional[str]:
    return HandoffPolicy._next_action(tracker(events))  # noqa: SLF001 - the decision itself


# ---------------------------------------------------------------------- the policy in Rasa
@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> HandoffPolicy:
    storage = LocalModelStorage(tmp_path_factory.mktemp("handoff_policy"))
    return HandoffPolicy(HandoffPolicy.get_default_config(), storage, Resource("handoff_policy"),
                         ExecutionContext(GraphSchema({}), "test"))


def predicted(policy: HandoffPolicy, events: List[Event]) -> Optional[str]:
    """The action the policy predicts with the real domain; None when it abstains."""
    probabilities = policy.predict_action_probabilities(tracker(events), domain()).probabilities
    best = max(range(len(probabilities)), key=probabilities.__getitem__)
    if probabilities[best] == 0.0:
        return None
    assert probabilities[best] == 1.0 and sorted(probabilities)[-2] == 0.0, "one action, with certainty"
    return domain().action_names_or_texts[best]


def both(policy: HandoffPolicy, events: List[Event]) -> Any:
    """The decision and the policy's prediction; they must agree."""
    chosen = decision(events)
    assert predicted(policy, events) == chosen
    return chosen


# ---------------------------------------------------------------------- handoff open
@pytest.mark.parametrize("text, intent", [
    ("hoeveel moet ik betalen voor een nieuw paspoort", "passport_fees"),  # a question the bot could answer
    ("goedemiddag", "greet"),
    ("kunt u mij laten weten hoe het ervoor staat", "nlu_fallback"),
    ("ik wil nog steeds een medewerker", "request_human"),  # asking again: relayed, not a second handoff
])
def test_while_a_colleague_has_the_conversation_every_message_goes_to_the_ticket(policy, text, intent):
    assert both(policy, handed_over() + [citizen(text, intent)]) == RELAY


def test_stop_gives_the_conversation_back_to_the_bot(policy):
    assert both(policy, handed_over() + [citizen("stop", "return_to_bot")]) == RETURN


@pytest.mark.parametrize("intent, entities, action", [STAFF_REPLY + (DELIVER,), STAFF_CLOSE + (CLOSE,)])
def test_a_colleagues_reply_and_closing_are_delivered(policy, intent, entities, action):
    assert both(policy, handed_over() + [staff(intent, entities)]) == action


@pytest.mark.parametrize("intent, entities, action", [STAFF_REPLY + (DELIVER,), STAFF_CLOSE + (CLOSE,)])
def test_a_colleagues_reply_and_closing_are_delivered_also_without_an_open_handoff(policy, intent, entities, action):
    """E.g. the citizen said "stop" before the colleague's answer was sent: the answer
    still reaches the citizen (the slot is not consulted for external intents)."""
    back_with_the_bot = handed_over() + [citizen("stop", "return_to_bot"), ActionExecuted(RETURN),
                                         SlotSet("handoff_active", False), ActionExecuted(ACTION_LISTEN_NAME)]
    assert both(policy, back_with_the_bot + [staff(intent, entities)]) == action
    assert both(policy, start() + [staff(intent, entities)]) == action


# ---------------------------------------------------------------------- the bot waits afterwards
@pytest.mark.parametrize("events", [
    pytest.param(handed_over()[:-1], id="after the handoff"),
    pytest.param(handed_over() + [citizen("mijn buurman heeft ook al gebeld", "nlu_fallback"), ActionExecuted(RELAY)],
                 id="after relaying a message to the ticket"),
    pytest.param(handed_over() + [citizen("stop", "return_to_bot"), ActionExecuted(RETURN),
                                  SlotSet("handoff_active", False)], id="after returning to the bot"),
    pytest.param(handed_over() + [staff(*STAFF_REPLY), ActionExecuted(DELIVER)], id="after a staff reply"),
    pytest.param(handed_over() + [staff(*STAFF_CLOSE), ActionExecuted(CLOSE), SlotSet("handoff_active", False)],
                 id="after closing"),
])
def test_after_its_own_actions_the_bot_waits_for_the_next_message(policy, events):
    assert both(policy, events) == ACTION_LISTEN_NAME


def test_a_handoff_asked_for_by_the_clarifying_question_ends_the_turn(policy):
    """The clarifying question's FollowupAction ran the handoff: the bot waits instead
    of asking the clarifying question again (the core fallback would)."""
    events = start() + [citizen("dat ding van de gemeente werkt niet", "nlu_fallback", 0.2),
                        ActionExecuted("action_clarify"), SlotSet("handoff_reason", "clarify"),
                        ActionExecuted(HANDOFF), SlotSet("handoff_active", True)]
    assert both(policy, events) == ACTION_LISTEN_NAME


# ---------------------------------------------------------------------- no handoff: other policies answer
@pytest.mark.parametrize("text, intent", [
    ("wat kost een identiteitskaart eigenlijk", "passport_fees"),
    ("stop", "return_to_bot"),  # "stop" without an open handoff is not ours to handle
    ("ik wil graag iemand van de gemeente spreken", "request_human"),  # the handoff itself comes from rules
])
def test_without_an_open_handoff_the_policy_leaves_the_answer_to_the_others(policy, text, intent):
    assert both(policy, start() + [citizen(text, intent)]) is None


def test_in_the_middle_of_a_turn_the_policy_leaves_the_next_step_to_the_others(policy):
    """After another action of the bot's (not one of the handoff actions) the policy
    has nothing to say, also while a handoff is open."""
    answered = start() + [citizen("wat kost een paspoort", "passport_fees"), ActionExecuted("action_passport_id")]
    assert both(policy, answered) is None
    assert both(policy, handed_over() + [citizen("hallo", "greet"), ActionExecuted("utter_greet")]) is None


def test_its_priority_is_above_the_rules():
    """Rules and stories never answer for a human: the policy outranks the RulePolicy."""
    assert HandoffPolicy.get_default_config()["priority"] > RulePolicy.get_default_config()["priority"]
