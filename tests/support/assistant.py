"""Starts the real assistant (action server + Rasa server with the trained model) on
free ports for integration tests, with its own SQLite tracker store and database."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

import requests

from appcare.ops import processes
from appcare.plugins import live_model
from appcare.ports import free_port  # noqa: F401  (also used by the e2e tests)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def latest_model() -> Path:
    """The model `make run` would start (appcare.plugins.live_model.required); tests may replace this."""
    return live_model.required()


class Assistant:
    """Action server + Rasa server as subprocesses; logs go to files in ``workdir``."""

    def __init__(self, workdir: Path, env: Optional[Dict[str, str]] = None,
                 credentials: str = "channels.rest_input.RestInput:\n", start_actions: bool = True):
        self.workdir = workdir
        self.action_port = free_port()
        self.rasa_port = free_port()
        self.env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "RASA_TELEMETRY_ENABLED": "false",
                    "APPCARE_DB_URL": f"sqlite:///{workdir}/appcare.db", **(env or {})}
        self.credentials = credentials
        self.start_actions = start_actions
        self.processes: List[processes.Process] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.workdir.glob("*.log"))

    def start(self) -> "Assistant":
        endpoints = self.workdir / "endpoints.yml"
        endpoints.write_text(
            f"action_endpoint:\n  url: http://127.0.0.1:{self.action_port}/webhook\n"
            f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {self.workdir}/tracker.db\n"
        )
        credentials = self.workdir / "credentials.yml"
        credentials.write_text(self.credentials)
        if self.start_actions:
            self._spawn("actions", [str(BIN / "rasa"), "run", "actions", "--port", str(self.action_port),
                                    "--actions", "actions"])
        self._spawn("rasa", [str(BIN / "rasa"), "run", "--enable-api", "--port", str(self.rasa_port),
                             "--model", str(latest_model()), "--endpoints", str(endpoints),
                             "--credentials", str(credentials)])
        try:
            self._wait(f"{self.url}/status", 600)  # bounded; a loaded 2-core machine needs minutes
            if self.start_actions:
                self._wait(f"http://127.0.0.1:{self.action_port}/health", 60)
        except BaseException:
            self.stop()  # a failed start leaves no servers behind
            raise
        return self

    def _spawn(self, name: str, cmd: List[str]) -> None:
        self.processes.append(processes.start(cmd, name=name, log=self.workdir / f"{name}.log", env=self.env))

    def _wait(self, url: str, seconds: float) -> None:
        processes.wait_ready(url, self.processes, seconds)

    def say(self, sender: str, text: str, metadata: Optional[dict] = None) -> List[dict]:
        body = {"sender": sender, "message": text}
        if metadata:
            body["metadata"] = metadata
        response = requests.post(f"{self.url}/webhooks/rest/webhook", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        processes.stop(self.processes, timeout=20)  # process groups: SIGTERM, then SIGKILL
