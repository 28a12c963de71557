"""Shared fixtures: run real actions on real trackers and render their replies with
the real domain responses, freeze the clock, and use a temporary database."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Facts for behaviour tests: copies of the content files (and test roadworks feeds) kept
# in tests/, so an editor's legitimate change in content/ (a new fee) never turns a test
# red. The shipped content/ is checked by the validator (tests/test_content.py).
FIXTURE_CONTENT = ROOT / "tests" / "fixtures" / "content"
os.environ.setdefault("APPCARE_DB_URL", "sqlite:///var/test-default.db")


@pytest.fixture(autouse=True)
def _isolated_db(tmp_path, monkeypatch):
    """Every test gets its own SQLite database and an unfrozen, default clock."""
    from appcare import clock

    monkeypatch.setenv("APPCARE_DB_URL", f"sqlite:///{tmp_path}/appcare.db")
    monkeypatch.delenv("APPCARE_STRICT_FACTS", raising=False)
    monkeypatch.delenv("ROADWORKS_URL", raising=False)
    yield
    clock.set_now(None)


@pytest.fixture
def fixture_content(monkeypatch):
    """Points the content loader (and the local roadworks feed) at tests/fixtures/content
    for this test; subprocesses get it with ``APPCARE_CONTENT_DIR``."""
    from appcare import content, roadworks_feed

    monkeypatch.setattr(content, "CONTENT_DIR", FIXTURE_CONTENT)
    monkeypatch.setattr(roadworks_feed, "_client", None)
    for name in ("APPCARE_ENV", "ROADWORKS_URL_TERNEUZEN", "ROADWORKS_URL_LELYSTAD"):
        monkeypatch.delenv(name, raising=False)  # a test sets production or a feed itself
    content.clear_cache()
    yield FIXTURE_CONTENT
    content.clear_cache()


def fake_model(directory: Path) -> Path:
    """A model archive with only metadata.json, for tools.run.startup_report."""
    import io
    import json
    import tarfile

    model = directory / "model.tar.gz"
    with tarfile.open(model, "w:gz") as archive:
        data = json.dumps({"trained_at": "test"}).encode()
        info = tarfile.TarInfo("metadata.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return model


@pytest.fixture
def frozen_now():
    """Call with a local Europe/Amsterdam datetime to freeze appcare's clock."""
    from appcare import clock

    def _freeze(*args: int) -> dt.datetime:
        moment = dt.datetime(*args, tzinfo=clock.TZ)
        clock.set_now(moment)
        return moment

    return _freeze


_domain_cache: Dict[str, Any] = {}


def domain():
    if "domain" not in _domain_cache:
        from rasa.shared.core.domain import Domain

        _domain_cache["domain"] = Domain.load(str(ROOT / "domain"))
    return _domain_cache["domain"]


def render(message: Dict[str, Any], slots: Optional[Dict[str, Any]] = None) -> str:
    """Renders a dispatched message to the text the citizen sees, with Rasa's own response
    generator (the variation whose condition matches the slots, e.g. ``language``)."""
    from rasa.core.nlg import TemplatedNaturalLanguageGenerator

    if message.get("text"):
        return message["text"]
    name = message.get("response")
    assert domain().responses.get(name), f"response {name} is not in the domain"
    values = {k: v for k, v in message.items() if k not in ("response", "buttons")}
    values.update(message.get("kwargs") or {})
    generated = TemplatedNaturalLanguageGenerator(domain().responses).generate_from_slots(
        name, dict(slots or {}), "rest", **values)
    return generated["text"]


class ActionResult:
    def __init__(self, messages: List[Dict[str, Any]], events: List[Dict[str, Any]],
                 slots: Optional[Dict[str, Any]] = None):
        self.messages = messages
        self.events = events
        self.texts = [render(m, slots) for m in messages]
        self.responses = [m.get("response") for m in messages]

    @property
    def buttons(self) -> List[str]:
        return [b.get("title") for m in self.messages for b in (m.get("buttons") or [])]

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    def followup(self) -> Optional[str]:
        """The action this one asked Rasa to run next (FollowupAction), if any."""
        names = [e.get("name") for e in self.events if e.get("event") == "followup"]
        return names[-1] if names else None

    def slot(self, name: str) -> Any:
        values = [e["value"] for e in self.events if e.get("event") == "slot" and e.get("name") == name]
        return values[-1] if values else None


def run_action(
    action,
    text: str = "",
    intent: Optional[str] = None,
    entities: Optional[List[Dict[str, Any]]] = None,
    slots: Optional[Dict[str, Any]] = None,
    metadata: Optional[Dict[str, Any]] = None,
    sender: str = "citizen-1",
    events: Optional[List[Dict[str, Any]]] = None,
    intent_ranking: Optional[List[Dict[str, Any]]] = None,
) -> ActionResult:
    """Runs a real rasa-sdk action with a real Tracker and CollectingDispatcher."""
    from rasa_sdk import Tracker
    from rasa_sdk.executor import CollectingDispatcher

    base_slots = {"privacy_notice_shown": True, "feedback_asked": True}
    base_slots.update(slots or {})
    if base_slots.get("language") and "reply_language" not in base_slots:
        # as the NLU sets it: Dutch for Dutch, English for every other language
        base_slots["reply_language"] = "nl" if base_slots["language"] == "nl" else "en"
    latest = {
        "text": text,
        "intent": {"name": intent, "confidence": 0.9},
        "entities": [
            {"entity": e[0], "value": e[1]} if isinstance(e, tuple) else e for e in (entities or [])
        ],
        "metadata": metadata or {},
        "intent_ranking": intent_ranking or [],
    }
    all_events = list(events or []) + [{"event": "user", "text": text, "parse_data": latest, "input_channel": "rest"}]
    tracker = Tracker(sender, base_slots, latest, all_events, False, None, {}, "action_listen")
    dispatcher = CollectingDispatcher()
    result = asyncio.run(action.run(dispatcher, tracker, {}))
    return ActionResult(dispatcher.messages, result, base_slots)


def run_followup(result: ActionResult, text: str = "", intent: Optional[str] = None,
                 slots: Optional[Dict[str, Any]] = None, sender: str = "citizen-1", **kwargs: Any) -> ActionResult:
    """Runs the FollowupAction ``result`` asked for, on the same message, with the slots
    that ``result`` set applied, as Rasa does."""
    from actions.handoff import ActionHandoffToKcc

    assert result.followup() == "action_handoff_to_kcc", result.events
    merged = dict(slots or {})
    merged.update({e["name"]: e["value"] for e in result.events if e.get("event") == "slot"})
    return run_action(ActionHandoffToKcc(), text, intent, slots=merged, sender=sender, **kwargs)
