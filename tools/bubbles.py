"""WhatsApp messages (bubbles) sent per answered question, from a tracker store.

Every message sent on WhatsApp is billed since 1 October 2026. This tool replays the bot
messages of every turn in a tracker store (e.g. the demo report's, `make demo-report`)
through the WhatsApp channel's planner (channels.formatting.plan_turn) and prints the
average number of WhatsApp messages per answered question: one per bot message (no
joining), the plan before joining texts into the buttons' body, and the current plan.

    .venv/bin/python -m tools.bubbles [--tracker-db reports/demo/tracker.db]

An answered question is a citizen message the bot itself answered (not relayed to a
colleague while a handoff is open).
"""
from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path
from typing import Dict, List, Optional

from channels.formatting import BotMessage, plan_turn


def turns(db: Path) -> List[List[BotMessage]]:
    """The bot messages of every answered turn in a Rasa SQL tracker store (SQLite)."""
    connection = sqlite3.connect(str(db))
    rows = connection.execute("SELECT sender_id, data FROM events ORDER BY sender_id, id").fetchall()
    connection.close()
    result: List[List[BotMessage]] = []
    current: Optional[List[BotMessage]] = None
    sender = None
    for sender_id, data in rows:
        event = json.loads(data)
        if sender_id != sender:
            sender, current = sender_id, None
        kind = event.get("event")
        if kind == "user":
            if current:
                result.append(current)
            current = []
        elif kind == "bot" and current is not None:
            buttons = (event.get("data") or {}).get("buttons") or []
            text = event.get("text") or ""
            current.append(BotMessage("buttons" if buttons else "text", text=text, buttons=buttons))
    if current:
        result.append(current)
    return [t for t in result if t]


def figures(all_turns: List[List[BotMessage]]) -> Dict[str, float]:
    n = len(all_turns) or 1
    return {
        "answered_questions": len(all_turns),
        "bot_messages_per_question": sum(len(t) for t in all_turns) / n,
        "whatsapp_messages_before": sum(len(plan_turn("31600000000", t, join_buttons=False)) for t in all_turns) / n,
        "whatsapp_messages_now": sum(len(plan_turn("31600000000", t)) for t in all_turns) / n,
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracker-db", type=Path, default=Path("reports/demo/tracker.db"))
    args = parser.parse_args(argv)
    if not args.tracker_db.exists():
        raise SystemExit(f"{args.tracker_db} not found: run `make demo-report` first")
    for key, value in figures(turns(args.tracker_db)).items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
