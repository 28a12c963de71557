"""Desk settings from the environment (one place, read when an app is created).

A value that cannot be read (``DESK_PORT=abc``, ``DESK_COOKIE_SECURE=maybe``) raises
:class:`SettingsError` naming the variable; ``python -m desk`` prints that one line
and exits (no traceback).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from appcare import secrets

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TRUE_VALUES = ("1", "true", "yes", "on", "ja")
FALSE_VALUES = ("0", "false", "no", "off", "nee")


class SettingsError(ValueError):
    """A desk setting has a value that cannot be used."""


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number (got {value[:40]!r})") from None


def _float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if number != number or number in (float("inf"), float("-inf")):
        raise SettingsError(f"{name} must be a number (got {value[:40]!r})")
    return number


def _flag(name: str) -> Optional[bool]:
    """True/False for a yes/no variable, None when it is not set."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return None
    folded = value.strip().lower()
    if folded in TRUE_VALUES:
        return True
    if folded in FALSE_VALUES:
        return False
    raise SettingsError(f"{name} must be 1 or 0 (got {value.strip()[:40]!r})")


def _bool(name: str, default: bool = False) -> bool:
    flag = _flag(name)
    return default if flag is None else flag


@dataclass
class Settings:
    db_url: Optional[str] = None  # None: appcare.db.db_url() (APPCARE_DB_URL)
    rasa_url: str = "http://127.0.0.1:5005"
    # RASA_JWT_SECRET: the desk signs a short-lived HS256 JWT with it for Rasa's HTTP API
    # (Rasa runs with --jwt-secret "$RASA_JWT_SECRET" --jwt-method HS256); the token goes
    # in an Authorization header, never in the URL (desk/rasa_client.py).
    rasa_jwt_secret: Optional[str] = None
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
    # Secure flag of the session cookies: on, except over plain http on this machine
    # (host 127.0.0.1/localhost without DESK_COOKIE_SECURE, outside production) or with an
    # explicit DESK_COOKIE_SECURE=0 outside production (refused in production).
    cookie_secure: bool = True
    # DESK_PROXIES_COUNT: reverse proxies in front of the desk that add X-Forwarded-For
    # (the client address for the login throttling); 0: the peer address is the client.
    proxies_count: int = 0
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
    # behind HAProxy, docs/production.md); empty: only RASA_URL.
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
            rasa_jwt_secret=os.environ.get("RASA_JWT_SECRET") or None,
            rasa_timeout=_float("DESK_RASA_TIMEOUT", 120.0),
            host=os.environ.get("DESK_HOST", "127.0.0.1"),
            port=_int("DESK_PORT", 5080),
            session_hours=_float("DESK_SESSION_HOURS", 8.0),
            idle_minutes=_float("DESK_SESSION_IDLE_MINUTES", 30.0),
            proxies_count=_int("DESK_PROXIES_COUNT", 0),
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
        explicit = overrides["cookie_secure"] if "cookie_secure" in overrides else _flag("DESK_COOKIE_SECURE")
        if explicit is None:
            settings.cookie_secure = secrets.production() or str(settings.host).strip().lower() not in LOCAL_HOSTS
        elif not explicit and secrets.production():
            raise SettingsError(
                "DESK_COOKIE_SECURE=0 is refused in production (APPCARE_ENV=production): the session "
                "cookie must only travel over HTTPS; remove the setting"
            )
        else:
            settings.cookie_secure = bool(explicit)
        if not 0 <= settings.proxies_count <= 5:
            raise SettingsError("DESK_PROXIES_COUNT must be between 0 and 5")
        return settings

    def check_secrets(self) -> None:
        """Production refuses a missing or weak secret (appcare.secrets.check): the
        webhook secret when the webcare integration is on (DESK_WEBHOOK_URL set, or the
        inbound endpoints opened by setting DESK_WEBHOOK_SECRET), and the Rasa JWT secret.
        Outside production a problem is a warning."""
        values = {"RASA_JWT_SECRET": self.rasa_jwt_secret, "DESK_WEBHOOK_SECRET": self.webhook_secret}
        optional = [] if self.webhook_url else ["DESK_WEBHOOK_SECRET"]
        secrets.check("KCC desk", values, optional=optional)
