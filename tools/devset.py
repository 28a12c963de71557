"""Runs the independent dev set (../shared/eval) against the real assistant.

Starts the action server and `rasa run --enable-api` (production REST channel
``channels.rest_input.RestInput``, temporary SQLite tracker store and APPCARE_DB_URL) on
free ports with a given model, runs ``evaluate.py`` as a subprocess against it and
returns its JSON summary. The servers are always stopped (process groups), also on
errors. Only evaluate.py talks to the server for the dev set: it stays black-box and its
messages never pass through this code. After the dev set, a few non-Dutch questions of
our own are parsed with ``/model/parse`` ("non-Dutch intent accuracy").

The dev-set folder (holding ``evaluate.py`` and ``devset/``) is ``<repo>/../shared/eval``
unless APPCARE_DEVSET_DIR names another one.

    .venv/bin/python -m tools.devset [--model PATH] [--out FILE] [--limit N] [--min-success PCT]

``--out`` keeps evaluate.py's per-item results; they quote the dev-set messages, so keep
that file outside the repository. Used by `make bench` (tools/bench.py) and the gate
tests/test_devset_gate.py. See docs/bench.md.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import requests

from appcare.ops import processes
from appcare.plugins import live_model
from appcare.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEVSET_ENV = "APPCARE_DEVSET_DIR"
MIN_SUCCESS_PCT = 85.0  # gate of tests/test_devset_gate.py, also shown by `make bench`
MIN_CONVERSATIONS_PCT = 85.0  # conversations with every turn correct (context that holds)
PRODUCTION_REST = "channels.rest_input.RestInput:\n"

# Our own non-Dutch questions (not from the dev set): opening hours and passport fees in
# the languages citizens of Dutch municipalities most often write in besides Dutch.
NON_DUTCH: List[Tuple[str, str, str]] = [  # (language, text, expected intent)
    ("en", "When is the town hall open?", "opening_hours"),
    ("en", "How much do I have to pay for a new passport?", "passport_fees"),
    ("pl", "W jakich godzinach jest otwarty urząd gminy?", "opening_hours"),
    ("pl", "Ile kosztuje wyrobienie nowego paszportu?", "passport_fees"),
    ("tr", "Belediye binası hangi saatlerde açık?", "opening_hours"),
    ("tr", "Yeni pasaport çıkarmak ne kadar tutuyor?", "passport_fees"),
    ("ar", "متى تفتح البلدية أبوابها؟", "opening_hours"),
    ("ar", "كم يكلف جواز سفر جديد؟", "passport_fees"),
    ("de", "Wann hat das Rathaus geöffnet?", "opening_hours"),
    ("de", "Was kostet ein neuer Reisepass?", "passport_fees"),
    ("fr", "Quels sont les horaires d'ouverture de la mairie ?", "opening_hours"),
    ("fr", "Combien coûte un nouveau passeport ?", "passport_fees"),
]


class DevsetMissing(RuntimeError):
    """The folder with evaluate.py and devset/ is not where it should be."""


def devset_dir() -> Path:
    """Folder holding evaluate.py and devset/: $APPCARE_DEVSET_DIR or <repo>/../shared/eval."""
    folder = Path(os.environ.get(DEVSET_ENV) or ROOT.parent / "shared" / "eval").resolve()
    missing = [name for name in ("evaluate.py", "devset/messages.jsonl", "devset/conversations.jsonl")
               if not (folder / name).is_file()]
    if missing:
        raise DevsetMissing(f"dev set not found: looked in {folder} (from ${DEVSET_ENV} or <repo>/../shared/eval);"
                            f" missing {', '.join(missing)}")
    return folder


def server_env(workdir: Path) -> Dict[str, str]:
    """Environment of the servers: quiet TF, no telemetry, tickets in a temp database."""
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", RASA_TELEMETRY_ENABLED="false",
                SQLALCHEMY_SILENCE_UBER_WARNING="1", APPCARE_DB_URL=f"sqlite:///{workdir / 'appcare.db'}")


def server_ready(reply) -> bool:
    """The server answers with a loaded model (Rasa's /status names its model file)."""
    return bool(reply.ok and reply.text.strip() and '"model_file":null' not in reply.text.replace(" ", ""))


def stop_servers(servers: Sequence[subprocess.Popen]) -> None:
    """SIGTERM to each server's process group, SIGKILL when it lingers (appcare.ops.processes.stop); reaps them."""
    processes.stop(servers)


@dataclass
class Servers:
    """A running action server + Rasa server; ``url`` is the Rasa server's base URL."""

    url: str
    token: str
    processes: Dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def webhook(self) -> str:
        return f"{self.url}/webhooks/rest/webhook"


@contextmanager
def serving(model: str, workdir: Path, env: Optional[Dict[str, str]] = None,
            credentials: str = PRODUCTION_REST) -> Iterator[Servers]:
    """Action server + `rasa run --enable-api` (127.0.0.1, random API token) with model;
    SQLite tracker store in workdir. Both are stopped when the block ends, also on errors."""
    action_port, rasa_port = free_port(), free_port()
    endpoints, credentials_file = workdir / "endpoints.yml", workdir / "credentials.yml"
    endpoints.write_text(f"action_endpoint:\n  url: http://127.0.0.1:{action_port}/webhook\n"
                         f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {workdir / 'tracker.db'}\n")
    credentials_file.write_text(credentials)
    servers = Servers(url=f"http://127.0.0.1:{rasa_port}", token=secrets.token_hex(16))
    rasa = str(BIN / "rasa")
    commands = {
        "actions": ([rasa, "run", "actions", "--port", str(action_port), "--actions", "actions"],
                    f"http://127.0.0.1:{action_port}/health"),
        "rasa": ([rasa, "run", "--enable-api", "--interface", "127.0.0.1", "--port", str(rasa_port),
                  "--auth-token", servers.token, "--model", str(model), "--endpoints", str(endpoints),
                  "--credentials", str(credentials_file)], f"{servers.url}/status"),
    }
    try:
        for name, (cmd, _) in commands.items():  # both start at once, then both are awaited
            servers.processes[name] = processes.start(cmd, name=name, log=workdir / f"server-{name}.log",
                                                      env=env or server_env(workdir))
        for name, (_, ready_url) in commands.items():
            processes.wait_ready(ready_url, [servers.processes[name]], 600, ok=server_ready,
                                 params={"token": servers.token})
        yield servers
    finally:
        stop_servers(list(servers.processes.values()))


def run_evaluate(servers: Servers, workdir: Path, limit: int = 0, out: Optional[Path] = None,
                 timeout: float = 3600) -> Dict:
    """Runs evaluate.py (venv python) against the servers; returns its summary. The per-item
    results (they quote the dev set) are kept only in out, when given."""
    folder = devset_dir()
    target = out or workdir / "devset-results.json"
    cmd = [str(BIN / "python"), str(folder / "evaluate.py"), servers.url, "--token", servers.token,
           "--data", str(folder / "devset"), "--out", str(target)]
    if limit:
        cmd += ["--limit", str(limit)]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"evaluate.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(target.read_text(encoding="utf-8"))["summary"]
    finally:
        if out is None:
            target.unlink(missing_ok=True)


def parse_non_dutch(servers: Servers) -> Dict:
    """Parses NON_DUTCH with /model/parse; returns the accuracy and every prediction."""
    items = []
    for language, text, expected in NON_DUTCH:
        reply = requests.post(f"{servers.url}/model/parse", params={"token": servers.token},
                              json={"text": text}, timeout=30)
        reply.raise_for_status()
        intent = (reply.json().get("intent") or {}).get("name")
        items.append({"language": language, "text": text, "expected": expected, "intent": intent,
                      "ok": intent == expected})
    correct = sum(item["ok"] for item in items)
    return {"accuracy_pct": round(100.0 * correct / len(items), 1), "correct": correct, "n": len(items),
            "items": items}


def evaluate_model(model: str, workdir: Path, limit: int = 0, out: Optional[Path] = None,
                   env: Optional[Dict[str, str]] = None) -> Dict:
    """Starts the assistant with model, runs the dev set and the non-Dutch check, stops it.

    Returns {"summary": <evaluate.py summary>, "non_dutch": <parse_non_dutch result>}."""
    devset_dir()  # fail before starting servers
    with serving(model, workdir, env=env) as servers:
        summary = run_evaluate(servers, workdir, limit=limit, out=out)
        non_dutch = parse_non_dutch(servers)
    return {"summary": summary, "non_dutch": non_dutch}


FIGURES = [  # (label, section, key) of the summary, in the order they are reported
    ("correct behaviour %", "messages", "success_pct"),
    ("hard items %", "messages", "hard_success_pct"),
    ("handoff recall %", "messages", "handoff_recall_pct"),
    ("false handoffs %", "messages", "false_handoff_pct"),
    ("conversations fully correct %", "conversations", "all_turns_ok_pct"),
    ("topic accuracy %", "messages", "topic_accuracy_pct"),
    ("reply p50 ms", "messages", "latency_ms_p50"),
    ("reply p95 ms", "messages", "latency_ms_p95"),
]


def figure(summary: Dict, section: str, key: str):
    """One figure of an evaluate.py summary, None when absent."""
    return (summary.get(section) or {}).get(key)


def figures_line(result: Dict) -> str:
    """One readable line with all figures of an evaluate_model result."""
    summary = result["summary"]
    parts = [f"{label}={figure(summary, section, key)}" for label, section, key in FIGURES]
    messages, non_dutch = summary.get("messages") or {}, result["non_dutch"]
    parts += [f"messages={messages.get('n')}", f"errors={messages.get('errors')}",
              f"non-Dutch intent accuracy %={non_dutch['accuracy_pct']} ({non_dutch['correct']}/{non_dutch['n']})"]
    return "dev set: " + ", ".join(parts)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model archive (default: the one `make run` would start)")
    parser.add_argument("--out", type=Path, help="evaluate.py's per-item results (quotes the dev set: keep "
                                                 "it outside the repository)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N messages and conversations")
    parser.add_argument("--min-success", type=float, default=None,
                        help=f"exit 1 below this correct-behaviour %% (the test gate uses {MIN_SUCCESS_PCT})")
    args = parser.parse_args(argv)
    model = args.model
    if model is None:
        model = live_model.served(ROOT / "models")
        if model is None:
            print("no trained model in models/: run `make train` or pass --model", file=sys.stderr)
            return 2
    try:
        with tempfile.TemporaryDirectory(prefix="appcare-devset-") as tmp:
            result = evaluate_model(str(model), Path(tmp), limit=args.limit,
                                    out=args.out.resolve() if args.out else None)
    except (RuntimeError, OSError, requests.RequestException, subprocess.SubprocessError) as exc:
        print(f"[devset] FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result["summary"], indent=1))
    for item in result["non_dutch"]["items"]:
        print(f"[devset] non-Dutch {item['language']}: {item['intent']} (expected {item['expected']})"
              f" {'OK' if item['ok'] else 'MISS'}: {item['text']}")
    print(f"[devset] model: {model}\n[devset] {figures_line(result)}")
    success = figure(result["summary"], "messages", "success_pct")
    if args.min_success is not None and (success is None or success < args.min_success):
        print(f"[devset] FAILED: correct behaviour {success} % < {args.min_success} %", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
