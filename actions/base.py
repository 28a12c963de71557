"""Shared behaviour of all appcare actions.

Subclass :class:`AppcareAction` and implement ``answer``; ``run`` adds what every
turn needs: the municipality's content, the one-time privacy notice, an apology
for messages that reached us late, resetting the not-understood counter, and a
friendly reply instead of a crash when content or a source is broken. All of it runs
in a worker thread (``run_blocking``), so an action may block (files, database, HTTP).
Wire a new action into the domain (``actions:``) and a rule in data/rules/.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from appcare import clock, content as content_module, labels
from appcare.content import ContentError, Fact, MunicipalContent, money  # noqa: F401 - money for actions
from appcare.pii import conversation_hash, number_spans

logger = logging.getLogger(__name__)
LATE_AFTER_SECONDS = 3600
# Languages the assistant answers in (Dutch by default; English response variations have
# `condition: reply_language = en` in domain/). Speakers of other languages get one
# short text in their own language (utter_other_language, offering a colleague) and the
# answers in English.
ANSWER_LANGUAGES = ("nl", "en")
# The button to a colleague under the offer in another language (Dutch: the colleague's language).
COLLEAGUE_BUTTON_TITLE = labels.text("button.colleague", "nl")
# The actions' blocking work (content files, the ticket database, the roadworks feed)
# runs in these threads, never on the action server's event loop: one slow call must not
# stall the other citizens. ``ACTION_THREADS`` calls run at the same time; more wait.
ACTION_THREADS = max(1, int(os.environ.get("ACTION_THREADS", "16")))
EXECUTOR = ThreadPoolExecutor(max_workers=ACTION_THREADS, thread_name_prefix="action")


@dataclass
class Turn:
    """Everything an action needs about the current turn."""

    dispatcher: CollectingDispatcher
    tracker: Tracker
    content: MunicipalContent
    intent: Optional[str]
    events: List[EventType] = field(default_factory=list)
    late: bool = False
    cleared: set = field(default_factory=set)  # slots filled from a phone number or BSN
    municipality_switched: bool = False  # the message named another municipality
    assumed: Dict[str, str] = field(default_factory=dict)  # values the action read from the text itself
    # One rule for every reply: an unverified fact (``verified: false``) reaches the citizen
    # only with the caveat (utter_unverified_notice, once, after the answer), and never in
    # strict mode (APPCARE_STRICT_FACTS=1), where the citizen is referred instead.
    unverified_used: bool = False  # an unverified fact went into this turn's answer
    _unverified_read: bool = False  # read with fact(); used once a reply with values follows
    caveat_given: bool = False
    referred: bool = False
    _unverified_patterns: Optional[List["re.Pattern[str]"]] = None

    def entity(self, name: str) -> Optional[str]:
        """The first value of entity ``name`` in this message. Digits that are part of a
        phone number, BSN, IBAN or postcode ("bel 06-12345678") are never an age or date:
        such an entity is skipped, and a slot Rasa filled from it is cleared."""
        if name in self.assumed:
            return self.assumed[name]
        message = self.tracker.latest_message or {}
        spans = number_spans(message.get("text") or "")
        for item in message.get("entities") or []:
            if item.get("entity") != name:
                continue
            if name in ("street", "area") and str(item.get("value") or "").strip().lower() in municipalities():
                continue  # "ik bedoel Lelystad" names the municipality, not a place in it
            start, end = item.get("start"), item.get("end")
            if start is not None and end is not None and any(a <= start and end <= b for a, b in spans):
                if str(self.tracker.get_slot(name)) == str(item.get("value")) and name not in self.cleared:
                    self.cleared.add(name)
                    self.set(name, None)
                continue
            return str(item.get("value"))
        return None

    def remembered(self, name: str) -> Optional[str]:
        """Entity of this message, else the slot from earlier in the conversation."""
        value = self.entity(name)
        if value is None and name not in self.cleared:
            slot = self.tracker.get_slot(name)
            value = str(slot) if slot not in (None, "") else None
        return value

    def assume(self, name: str, value: str) -> None:
        """Treats ``value`` as entity ``name`` of this message (and fills its slot), e.g. a
        bare number that answers the age question ("he is 7")."""
        self.assumed[name] = value
        self.cleared.discard(name)
        self.set(name, value)

    @property
    def now(self):
        return clock.now()

    @property
    def native(self) -> str:
        """The citizen's language (slot ``language``, ISO 639-1); "nl" when unknown."""
        return str(self.tracker.get_slot("language") or "nl")

    @property
    def lang(self) -> str:
        """The language of the replies: Dutch for Dutch, English for everyone else (the
        same rule as the slot ``reply_language`` that selects the response variations)."""
        return "nl" if self.native == "nl" else "en"

    @property
    def foreign(self) -> bool:
        """True when the citizen writes in a language the assistant does not answer in."""
        return self.native not in ANSWER_LANGUAGES

    def last_day(self) -> Optional[dt.date]:
        """The day the bot answered last (slot ``last_day``); None when unset or past."""
        value = self.tracker.get_slot("last_day") if "last_day" not in self.cleared else None
        try:
            day = dt.date.fromisoformat(str(value)) if value else None
        except ValueError:
            return None
        # a day before today is left over from an earlier conversation
        return day if day and day >= self.now.date() else None

    def parse_day(self, text: Optional[str]):
        """clock.parse_day relative to the day answered last ("de dag erna", "ook 's avonds")."""
        return clock.parse_day(text or "", self.now, self.last_day())

    def fact(self, fact: Optional[Fact]) -> Any:
        """Value of a fact for the answer, or None when it is missing or unverified in
        strict mode. An unverified value used outside strict mode brings the caveat."""
        if fact is None:
            return None
        if not fact.verified:
            if content_module.strict_facts():
                return None
            self._unverified_read = True
        return fact.value

    def usable(self, *facts: Optional[Fact]) -> bool:
        """True when every fact is present and may be quoted (not unverified in strict mode)."""
        return all(f is not None and (f.verified or not content_module.strict_facts()) for f in facts)

    def say(self, response: str, **kwargs: Any) -> None:
        """Sends a response. Safety net for the rule above: a value of an unverified fact
        (a link, phone number, amount or sentence from the content) in the placeholders
        brings the caveat, and in strict mode the citizen is referred instead."""
        if self._quotes_unverified(kwargs):
            if content_module.strict_facts():
                logger.warning("response %s would quote an unverified fact in strict mode; referred instead", response)
                self.refer()
                return
            self.unverified_used = True
        self._emit(response, **kwargs)

    def _emit(self, response: str, **kwargs: Any) -> None:
        if self._unverified_read and any(key != "buttons" for key in kwargs):
            self.unverified_used = True  # a reply with values after an unverified fact was read
        self.dispatcher.utter_message(response=response, **kwargs)

    def _quotes_unverified(self, kwargs: Dict[str, Any]) -> bool:
        if self._unverified_patterns is None:
            self._unverified_patterns = [
                re.compile(rf"(?<![\w/]){re.escape(text)}(?![\w/-]|\.\w)") for text in self.content.unverified_texts()]
        values = [v for v in kwargs.values() if isinstance(v, str)]
        return any(p.search(v) for p in self._unverified_patterns for v in values)

    def contact(self) -> Optional[Dict[str, str]]:
        """The municipality's website and phone number (``url``, ``phone``) for a reply, or
        None when one of them may not be quoted (unverified in strict mode)."""
        url, phone = self.fact(self.content.contact.website), self.fact(self.content.contact.phone)
        return {"url": url, "phone": phone} if url and phone else None

    def refer(self) -> None:
        """Instead of an answer that needs a fact that may not be quoted: the municipality's
        website and phone number, or, when those may not be quoted either, a colleague."""
        if self.referred:
            return
        self.referred = True
        reach = self.contact()
        if reach:
            self._emit("utter_fact_unknown", **reach)
        else:
            self._emit("utter_fact_unknown_colleague")

    def flush_caveat(self) -> None:
        """The caveat after an answer that used an unverified fact (once per turn)."""
        if self.unverified_used and not self.caveat_given:
            self.caveat_given = True
            self.dispatcher.utter_message(response="utter_unverified_notice", url=self.content.contact.website.value)

    def warn_unverified(self, *facts: Optional[Fact]) -> None:
        """Adds a short caveat when an answer used a placeholder fact (never needed in
        strict mode, where such a fact is not quoted)."""
        if any(f is not None and not f.verified for f in facts) and not content_module.strict_facts():
            self.unverified_used = True
        self.flush_caveat()

    def set(self, slot: str, value: Any) -> None:
        self.events.append(SlotSet(slot, value))


def municipalities() -> List[str]:
    """Ids of the municipalities with content ("terneuzen", "lelystad")."""
    return content_module.available_municipalities()


def named_municipality(text: str) -> Optional[str]:
    """A municipality the assistant has content for, named in the message ("sorry, ik
    bedoel Lelystad"); None when none or more than one is named."""
    named = [m for m in municipalities()
             if re.search(rf"(?<![\w-]){re.escape(m)}(?![\w-])", text or "", re.IGNORECASE)]
    return named[0] if len(named) == 1 else None


def municipality_of(tracker: Tracker) -> str:
    """The message's municipality: one it names, else the conversation's, else the
    channel's (metadata), else the default."""
    slot = tracker.get_slot("municipality")
    message = tracker.latest_message or {}
    metadata = message.get("metadata") or {}
    named = named_municipality(message.get("text") or "") if not str(message.get("text") or "").startswith("/") else None
    name = named or slot or metadata.get("municipality") or content_module.default_municipality()
    return str(name).lower()


class AppcareAction(Action):
    """Base class; subclasses set ``NAME`` and implement ``answer``."""

    NAME = ""
    TOPIC: Optional[str] = None
    understood = True  # running this action means the bot understood the citizen
    # False: in a conversation in another language than Dutch or English, the citizen
    # first gets one short text in their own language (the assistant answers in Dutch
    # and English; a colleague can take over), then the answer in English.
    answers_other_languages = False

    def name(self) -> Text:
        return self.NAME

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        """Runs :meth:`run_blocking` in a thread of :data:`EXECUTOR`. The dispatcher and
        the tracker belong to this call only, so that one thread may use them."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(EXECUTOR, self.run_blocking, dispatcher, tracker, domain)

    def run_blocking(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        """The turn itself (content, preamble, answer, slot bookkeeping); may block."""
        intent = (tracker.latest_message or {}).get("intent", {}).get("name")
        municipality = municipality_of(tracker)
        try:
            content = content_module.load(municipality)
        except ContentError as exc:
            logger.error(
                "content of municipality %s is invalid (%d problem(s)); conversation %s",
                municipality, len(exc.problems), conversation_hash(tracker.sender_id),
            )
            dispatcher.utter_message(response="utter_default")
            return []
        turn = Turn(dispatcher, tracker, content, intent)
        self._preamble(turn, municipality)
        try:
            if (turn.foreign and not self.answers_other_languages
                    and turn.tracker.get_slot("other_language_notice") != turn.native):
                offer_colleague_in_language(turn)  # once, then the answer in English
            self.answer(turn)
            turn.flush_caveat()
        except Exception:  # noqa: BLE001 - the citizen gets a reply, the log the cause
            logger.exception(
                "action %s failed for conversation %s", self.NAME, conversation_hash(tracker.sender_id)
            )
            phone = turn.fact(content.contact.phone)
            if phone:
                turn.say("utter_technical_problem", phone=phone)
            else:
                turn.say("utter_default")
            turn.flush_caveat()
        if self.understood and (tracker.get_slot("failed_attempts") or 0):
            turn.set("failed_attempts", 0)
        if self.TOPIC:
            turn.set("topic", self.TOPIC)
        return turn.events

    def _preamble(self, turn: Turn, municipality: str) -> None:
        tracker = turn.tracker
        if tracker.get_slot("municipality") != municipality:
            turn.municipality_switched = bool(tracker.get_slot("municipality"))
            turn.set("municipality", municipality)
        if not tracker.get_slot("privacy_notice_shown"):
            say_privacy_notice(turn)
            turn.set("privacy_notice_shown", True)
        metadata = (tracker.latest_message or {}).get("metadata") or {}
        try:
            delay = float(metadata.get("delay_seconds") or 0)
        except (TypeError, ValueError):
            delay = 0
        if delay >= LATE_AFTER_SECONDS:
            turn.late = True
            turn.say("utter_sorry_late")

    def answer(self, turn: Turn) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def maybe_ask_feedback(turn: Turn) -> None:
        """Asks once per conversation whether a factual answer helped (for the report)."""
        turn.flush_caveat()  # the caveat belongs to the answer, before the question
        if not turn.tracker.get_slot("feedback_asked"):
            turn.say("utter_ask_feedback")
            turn.set("feedback_asked", True)
            turn.set("pending_question", "feedback")


def say_privacy_notice(turn: Turn) -> None:
    """The first message of a conversation: an assistant, not a person, and the privacy
    link. An unverified privacy link comes with its own caveat; in strict mode the
    municipality's verified website takes its place (no link when that is unverified too)."""
    contact = turn.content.contact
    name = turn.content.municipality.name
    if contact.privacy_url.verified or not content_module.strict_facts():
        link, caveat = contact.privacy_url.value, not contact.privacy_url.verified
    else:
        link, caveat = (contact.website.value if contact.website.verified else None), False
    if link:
        turn.dispatcher.utter_message(response="utter_privacy_notice", municipality_name=name, privacy_url=link)
    else:
        turn.dispatcher.utter_message(response="utter_privacy_notice_no_link", municipality_name=name)
    if caveat:
        turn.dispatcher.utter_message(response="utter_privacy_link_unverified", url=contact.website.value)


def offer_colleague_in_language(turn: Turn) -> None:
    """One short text in the citizen's language: the assistant answers in Dutch and
    English, and a colleague can take over (a "yes" to that hands off)."""
    turn.say("utter_other_language", buttons=[{"title": COLLEAGUE_BUTTON_TITLE, "payload": "/request_human"}])
    turn.set("pending_question", "colleague")
    turn.set("other_language_notice", turn.native)
