"""Measures the two confidence thresholds of the fallback triage (actions/conversation.py)
on the independent dev set, with the trained model in this process:

* HANDOFF_MIN_CONFIDENCE: below the fallback threshold, a personal / urgent / human
  intent among the first two at this confidence hands off at once. Printed per
  threshold: how many dev messages that need a human get one this way, and how many
  messages that should be answered would be handed off.
* CLARIFY_MIN_CONFIDENCE: a topic is offered as a button only from this confidence.
  Printed per threshold: of the fallback messages about one of the four topics, how
  often a button of the right topic is offered, and how many offered buttons are of
  another topic.

Prints figures only, never the dev-set messages (they must not leak into data/ or
tests/).  usage: python -m tools.triage_thresholds [--model models/x.tar.gz]
"""
from __future__ import annotations

import argparse
import asyncio
import json
from typing import Dict, List, Optional

from appcare.plugins import live_model
from tools.devset import devset_dir

FALLBACK = 0.2
HANDOFF_INTENTS = ("urgent", "personal_case", "request_human", "request_callback", "complaint")
TOPIC_PREFIXES = {"opening_hours": "opening_hours", "passport_id": "passport_", "marriage": "marriage_",
                  "roadworks": "roadworks_"}




async def parse_all(model: str, texts: List[str]) -> List[Dict]:
    import logging

    import structlog
    from rasa.core.agent import Agent

    # Rasa logs every parsed text at debug level: dev-set messages must not be printed.
    logging.getLogger().setLevel(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    agent = Agent.load(model)
    return [await agent.parse_message(text) for text in texts]


def holdout_items() -> List[Dict]:
    """The held-out file (tests/nlu_holdout.yml) in the dev set's shape."""
    from rasa.shared.nlu.training_data.loading import load_data

    items = []
    for message in load_data("tests/nlu_holdout.yml").intent_examples:
        intent = message.get("intent")
        expect = "handoff" if intent in HANDOFF_INTENTS + ("out_of_scope_municipal",) else "answer"
        items.append({"text": message.get("text"), "expect": expect, "topic": topic_of(intent)})
    return items


def topic_of(intent: Optional[str]) -> Optional[str]:
    for topic, prefix in TOPIC_PREFIXES.items():
        if (intent or "").startswith(prefix):
            return topic
    return None


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    items = [json.loads(line) for line in (devset_dir() / "devset" / "messages.jsonl").read_text().splitlines()
             if line.strip()]
    items += holdout_items()
    parsed = asyncio.run(parse_all(args.model or str(live_model.required()), [it["text"] for it in items]))
    unsure = []
    for item, result in zip(items, parsed):
        ranking = [r for r in result.get("intent_ranking") or [] if r.get("name") != "nlu_fallback"]
        top = (result.get("intent") or {}).get("confidence") or 0
        if ranking and float(ranking[0].get("confidence") or top) < FALLBACK:
            unsure.append((item, ranking))
    print(f"dev set and held-out messages: {len(items)}, below the fallback threshold {FALLBACK}: {len(unsure)}")
    needs_human = [(i, r) for i, r in unsure if i["expect"] == "handoff"]
    answerable = [(i, r) for i, r in unsure if i["expect"] == "answer"]
    print(f"  of these: expect handoff {len(needs_human)}, expect answer {len(answerable)}")
    print("HANDOFF_MIN_CONFIDENCE  handed_off(expect handoff)  handed_off(expect answer)")
    for threshold in (0.06, 0.08, 0.10, 0.12, 0.14, 0.16, 0.18):
        def hands_off(ranking):
            return any(r["name"] in HANDOFF_INTENTS and float(r["confidence"]) >= threshold for r in ranking[:2])
        good = sum(hands_off(r) for _, r in needs_human)
        bad = sum(hands_off(r) for _, r in answerable)
        print(f"  {threshold:.2f}                   {good:3d}/{len(needs_human):<3d}                     "
              f"{bad:3d}/{len(answerable)}")
    topical = [(i, r) for i, r in unsure if i.get("topic") in TOPIC_PREFIXES]
    print(f"CLARIFY_MIN_CONFIDENCE  right_button/{len(topical)} topical  wrong_buttons  no_buttons")
    for threshold in (0.04, 0.06, 0.08, 0.10, 0.12, 0.15):
        right = wrong = empty = 0
        for item, ranking in topical:
            offered = [r["name"] for r in ranking if topic_of(r["name"]) and float(r["confidence"]) >= threshold][:2]
            right += any(topic_of(name) == item["topic"] for name in offered)
            wrong += sum(topic_of(name) != item["topic"] for name in offered)
            empty += not offered
        print(f"  {threshold:.2f}                   {right:3d}                 {wrong:3d}           {empty:3d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
