"""Chat with the running assistant from the terminal through the REST channel.

Type a message; choose a button by typing its number. Ctrl-D or /stop ends.
"""
from __future__ import annotations

import os
import sys
import uuid

import requests


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('RASA_PORT', '5005')}/webhooks/rest/webhook"
    sender = os.environ.get("CHAT_SENDER", f"terminal-{uuid.uuid4().hex[:8]}")
    print(f"Chat met de assistent ({url}); stoppen met Ctrl-D.")
    buttons = []
    while True:
        try:
            text = input("jij> ").strip()
        except EOFError:
            print()
            return 0
        if text == "/stop":
            return 0
        if text.isdigit() and buttons and 1 <= int(text) <= len(buttons):
            text = buttons[int(text) - 1]["payload"]
        try:
            replies = requests.post(url, json={"sender": sender, "message": text}, timeout=30).json()
        except requests.RequestException as exc:
            print(f"(assistent niet bereikbaar: {type(exc).__name__}; draait `make run`?)")
            continue
        buttons = []
        for reply in replies:
            if reply.get("text"):
                print(f"bot> {reply['text']}")
            for button in reply.get("buttons") or []:
                buttons.append(button)
                print(f"     [{len(buttons)}] {button['title']}")


if __name__ == "__main__":
    sys.exit(main())
