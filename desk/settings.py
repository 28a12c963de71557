"""Desk settings from the environment (one place, read when an app is created)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional


def _int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def _float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


def _bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on", "ja")


@dataclass
class Settings:
    db_url: Optional[str] = None  # None: appcare.db.db_url() (APPCARE_DB_URL)
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_token: Optional[str] = None
    # DESK_RASA_TIMEOUT: seconds the desk waits for Rasa's answer to a staff reply (the
    # connect timeout stays 5 s). Rasa answers only after the WhatsApp channel finished
    # its direct send, so this must exceed the channel's worst case: max_attempts x
    # graph_timeout + backoff, and once more for a template outside the 24-hour window
    # (2 x (4 x 10 s + 0.5 + 1 + 2 s) = ~90 s with the defaults of channels/config.py).
    # Shorter, and the desk would give up on replies that still go out.
    rasa_timeout: float = 120.0
    # A staff reply whose delivery is "unknown" (no answer from Rasa) on a WhatsApp
    # ticket for which the channel's outbox shows no send attempt at all this long
    # after the attempt started was never handed to WhatsApp: it becomes "failed"
    # (retry allowed). At least rasa_timeout + 10 s is used.
    reply_settle_seconds: float = 600.0
    host: str = "127.0.0.1"
    port: int = 5080
    session_hours: float = 8.0
    idle_minutes: float = 30.0
    cookie_secure: bool = False
    bcrypt_rounds: int = 12
    pickup_minutes: int = 15
    poll_seconds: float = 2.5
    webhook_url: Optional[str] = None
    webhook_secret: Optional[str] = None
    webhook_attempts: int = 5
    webhook_timeout: float = 5.0
    background_interval: float = 2.0  # overdue flagging and webhook outbox
    outcomes: tuple = field(default=("beantwoord", "doorverwezen", "geen reactie", "dubbel"))
    # Content editors (docs/editor.md). None: derived from the project directory.
    project_dir: Optional[str] = None  # APPCARE_PROJECT_DIR (default: the repository)
    content_dir: Optional[str] = None  # APPCARE_CONTENT_DIR (default: <project>/content)
    endpoints: Optional[str] = None  # APPCARE_ENDPOINTS (default: <project>/endpoints.yml)
    train_config: Optional[str] = None  # APPCARE_TRAIN_CONFIG (default: the effective config.yml)
    f1_tolerance: float = 0.01  # APPCARE_EDITOR_F1_TOLERANCE: allowed drop of intent macro-F1
    low_confidence: float = 0.6  # APPCARE_EDITOR_LOW_CONFIDENCE: inbox threshold
    similarity: float = 0.85  # APPCARE_EDITOR_SIMILARITY: "too close to another intent"
    git_commit: bool = False  # APPCARE_EDITOR_GIT_COMMIT=1 (only with APPCARE_PROJECT_DIR)
    job_timeout: float = 3600.0  # APPCARE_EDITOR_JOB_TIMEOUT seconds for one training job
    model_load_timeout: float = 900.0  # seconds Rasa may take to load a published model
    # Every Rasa instance a published model must be loaded into (several instances
    # behind the front, docs/production.md); empty: only RASA_URL.
    rasa_instances: tuple = ()  # APPCARE_RASA_INSTANCES=http://rasa-1:5005,http://rasa-2:5005

    @property
    def model_urls(self) -> tuple:
        """The Rasa servers a model is loaded into, in order (first = where status is read)."""
        return self.rasa_instances or (self.rasa_url,)

    @classmethod
    def from_env(cls, db_url: Optional[str] = None, rasa_url: Optional[str] = None, **overrides) -> "Settings":
        settings = cls(
            db_url=db_url or os.environ.get("APPCARE_DB_URL") or None,
            rasa_url=(rasa_url or os.environ.get("RASA_URL") or "http://127.0.0.1:5005").rstrip("/"),
            rasa_token=os.environ.get("RASA_TOKEN") or None,
            rasa_timeout=_float("DESK_RASA_TIMEOUT", 120.0),
            host=os.environ.get("DESK_HOST", "127.0.0.1"),
            port=_int("DESK_PORT", 5080),
            session_hours=float(os.environ.get("DESK_SESSION_HOURS", "") or 8.0),
            idle_minutes=float(os.environ.get("DESK_SESSION_IDLE_MINUTES", "") or 30.0),
            cookie_secure=_bool("DESK_COOKIE_SECURE", False),
            bcrypt_rounds=_int("DESK_BCRYPT_ROUNDS", 12),
            pickup_minutes=_int("DESK_PICKUP_MINUTES", 15),
            webhook_url=os.environ.get("DESK_WEBHOOK_URL") or None,
            webhook_secret=os.environ.get("DESK_WEBHOOK_SECRET") or None,
            webhook_attempts=_int("DESK_WEBHOOK_ATTEMPTS", 5),
            project_dir=os.environ.get("APPCARE_PROJECT_DIR") or None,
            content_dir=os.environ.get("APPCARE_CONTENT_DIR") or None,
            endpoints=os.environ.get("APPCARE_ENDPOINTS") or None,
            train_config=os.environ.get("APPCARE_TRAIN_CONFIG") or None,
            f1_tolerance=_float("APPCARE_EDITOR_F1_TOLERANCE", 0.01),
            low_confidence=_float("APPCARE_EDITOR_LOW_CONFIDENCE", 0.6),
            similarity=_float("APPCARE_EDITOR_SIMILARITY", 0.85),
            git_commit=_bool("APPCARE_EDITOR_GIT_COMMIT", False) and bool(os.environ.get("APPCARE_PROJECT_DIR")),
            job_timeout=_float("APPCARE_EDITOR_JOB_TIMEOUT", 3600.0),
            rasa_instances=tuple(u.strip().rstrip("/") for u in os.environ.get("APPCARE_RASA_INSTANCES", "").split(",")
                                 if u.strip()),
        )
        for key, value in overrides.items():
            if not hasattr(settings, key):
                raise TypeError(f"unknown desk setting {key!r}")
            setattr(settings, key, value)
        return settings
