"""Shared helpers for the content editors' tests (no tests in here).

* ``make_project``: a temporary copy of the project (content/, data/, domain/,
  config.yml, tests/nlu_holdout.yml, tests/test_stories.yml, models/), optionally
  with fewer NLU examples per intent (for fast training), so tests never touch the
  repository's own files. Its content/ is the test content (tests/fixtures/content):
  the facts the tests expect do not change when the editors change content/.
* ``TrackerDB``: writes Rasa-style rows into the ``events`` table of an SQLite
  tracker store, as Rasa's SQLTrackerStore does.
* ``FakeRasaApi``: answers ``GET /status`` and ``PUT /model`` like ``rasa run --enable-api``.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]


def make_project(target: Path, examples_per_intent: Optional[int] = None,
                 holdout_per_intent: Optional[int] = None) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "tests" / "fixtures" / "content", target / "content")
    for name in ("data", "domain"):
        shutil.copytree(ROOT / name, target / name)
    shutil.copy2(ROOT / "config.yml", target / "config.yml")
    (target / "tests").mkdir(exist_ok=True)
    for name in ("nlu_holdout.yml", "test_stories.yml"):
        shutil.copy2(ROOT / "tests" / name, target / "tests" / name)
    (target / "models").mkdir(exist_ok=True)
    if examples_per_intent:
        for path in sorted((target / "data" / "nlu").glob("*.yml")):
            _shrink(path, examples_per_intent)
    if holdout_per_intent:
        _shrink(target / "tests" / "nlu_holdout.yml", holdout_per_intent)
    return target


def _shrink(path: Path, keep: int) -> None:
    """Keeps the first ``keep`` examples of every intent (file stays valid Rasa YAML)."""
    from ruamel.yaml.scalarstring import LiteralScalarString

    from desk.editor import yaml_edit

    document, yaml = yaml_edit.load(path.read_text(encoding="utf-8"))
    for item in document.get("nlu") or []:
        if isinstance(item, dict) and item.get("intent") and "examples" in item:
            lines = [line for line in str(item["examples"]).splitlines() if line.strip().startswith("- ")]
            item["examples"] = LiteralScalarString("\n".join(lines[:keep]) + "\n")
    path.write_text(yaml_edit.dump(document, yaml), encoding="utf-8")


class TrackerDB:
    """An SQLite tracker store with Rasa's ``events`` table."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.conn = sqlite3.connect(str(self.path), check_same_thread=False)
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, sender_id VARCHAR(255) NOT NULL,"
            " type_name VARCHAR(255) NOT NULL, timestamp FLOAT, intent_name VARCHAR(255), action_name VARCHAR(255),"
            " data TEXT)"
        )
        self.conn.commit()
        self.clock = time.time() - 3600

    def add(self, sender: str, type_name: str, data: Dict[str, Any], intent: Optional[str] = None,
            action: Optional[str] = None, ts: Optional[float] = None) -> int:
        self.clock += 1
        cursor = self.conn.execute(
            "INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, data) VALUES (?,?,?,?,?,?)",
            (sender, type_name, ts or self.clock, intent, action, json.dumps(dict(data, event=type_name))),
        )
        self.conn.commit()
        return cursor.lastrowid

    def user(self, sender: str, text: str, intent: str, confidence: float, ts: Optional[float] = None) -> int:
        parse = {"intent": {"name": intent, "confidence": confidence}, "text": text, "entities": []}
        return self.add(sender, "user", {"text": text, "parse_data": parse, "input_channel": "rest"}, intent=intent, ts=ts)

    def action(self, sender: str, name: str) -> int:
        return self.add(sender, "action", {"name": name}, action=name)

    def bot(self, sender: str, text: str) -> int:
        return self.add(sender, "bot", {"text": text})

    def slot(self, sender: str, name: str, value: Any) -> int:
        return self.add(sender, "slot", {"name": name, "value": value})

    def turn(self, sender: str, text: str, intent: str, confidence: float, actions: List[str]) -> int:
        event_id = self.user(sender, text, intent, confidence)
        for name in actions:
            self.action(sender, name)
            if name != "action_listen":
                self.bot(sender, "...")
        self.action(sender, "action_listen")
        return event_id

    def close(self) -> None:
        self.conn.close()


class FakeRasaApi:
    """``GET /status`` and ``PUT /model`` of Rasa's HTTP API (records the loads)."""

    def __init__(self, model_file: str = "baseline.tar.gz", jwt_secret: Optional[str] = None):
        self.model_file = model_file
        self.loads: List[str] = []
        self.put_status = 204
        self.jwt_secret = jwt_secret  # set: like ``rasa run --jwt-secret``, 401 without a valid admin JWT
        self.paths: List[str] = []  # every request line's path and query string
        fake = self

        def authorised(handler: BaseHTTPRequestHandler) -> bool:
            fake.paths.append(handler.path)
            if not fake.jwt_secret:
                return True
            import jwt

            scheme, _, token = (handler.headers.get("Authorization") or "").partition(" ")
            try:
                claims = jwt.decode(token, fake.jwt_secret, algorithms=["HS256"])
            except jwt.PyJWTError:
                return False
            return scheme == "Bearer" and claims.get("user", {}).get("role") == "admin"

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802
                if not authorised(self):
                    self._json(401, {"reason": "NotAuthenticated"})
                elif self.path.startswith("/status"):
                    self._json(200, {"model_file": fake.model_file, "model_id": "x", "num_active_training_jobs": 0})
                else:
                    self._json(404, {})

            def do_PUT(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not authorised(self):
                    self._json(401, {"reason": "NotAuthenticated"})
                    return
                path = str(body.get("model_file") or "")
                fake.loads.append(path)
                if fake.put_status == 204:
                    fake.model_file = Path(path).name
                    self.send_response(204)
                    self.end_headers()
                else:
                    self._json(fake.put_status, {"message": "failed"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
