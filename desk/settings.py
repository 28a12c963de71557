"""Desk settings from the environment (one place, read when an app is created).

The variables are read with pydantic's ``BaseSettings`` (``DeskEnv``, the approach of
appcare.env_settings). A value that cannot be read (``DESK_PORT=abc``,
``DESK_COOKIE_SECURE=maybe``) raises :class:`SettingsError` naming the variable;
``python -m desk`` prints that one line and exits (no traceback).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from pydantic import Field, confloat, validator

from appcare import secrets
from appcare.env_settings import EnvSettings, SettingsError, flag  # SettingsError: also for desk.__main__

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
Number = confloat(allow_inf_nan=False)


class DeskEnv(EnvSettings):
    """The desk's environment variables (appcare.env_settings: unset or blank = default)."""

    db_url: Optional[str] = Field(None, env="APPCARE_DB_URL")
    rasa_url: str = Field("http://127.0.0.1:5005", env="RASA_URL")
    rasa_jwt_secret: Optional[str] = Field(None, env="RASA_JWT_SECRET")
    rasa_timeout: Number = Field(120.0, env="DESK_RASA_TIMEOUT")
    host: str = Field("127.0.0.1", env="DESK_HOST")
    port: int = Field(5080, env="DESK_PORT")
    session_hours: Number = Field(8.0, env="DESK_SESSION_HOURS")
    idle_minutes: Number = Field(30.0, env="DESK_SESSION_IDLE_MINUTES")
    cookie_secure: Optional[bool] = Field(None, env="DESK_COOKIE_SECURE")  # None: not set
    proxies_count: int = Field(0, env="DESK_PROXIES_COUNT")
    bcrypt_rounds: int = Field(12, env="DESK_BCRYPT_ROUNDS")
    pickup_minutes: int = Field(15, env="DESK_PICKUP_MINUTES")
    webhook_url: Optional[str] = Field(None, env="DESK_WEBHOOK_URL")
    webhook_secret: Optional[str] = Field(None, env="DESK_WEBHOOK_SECRET")
    webhook_attempts: int = Field(5, env="DESK_WEBHOOK_ATTEMPTS")
    project_dir: Optional[str] = Field(None, env="APPCARE_PROJECT_DIR")
    content_dir: Optional[str] = Field(None, env="APPCARE_CONTENT_DIR")
    endpoints: Optional[str] = Field(None, env="APPCARE_ENDPOINTS")
    train_config: Optional[str] = Field(None, env="APPCARE_TRAIN_CONFIG")
    f1_tolerance: Number = Field(0.01, env="APPCARE_EDITOR_F1_TOLERANCE")
    low_confidence: Number = Field(0.6, env="APPCARE_EDITOR_LOW_CONFIDENCE")
    similarity: Number = Field(0.85, env="APPCARE_EDITOR_SIMILARITY")
    git_commit: bool = Field(False, env="APPCARE_EDITOR_GIT_COMMIT")
    job_timeout: Number = Field(3600.0, env="APPCARE_EDITOR_JOB_TIMEOUT")
    rasa_instances: str = Field("", env="APPCARE_RASA_INSTANCES")

    class Config:
        flag_fields = ("cookie_secure", "git_commit")

    _flags = validator("cookie_secure", "git_commit", pre=True, allow_reuse=True)(flag)


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
        env = DeskEnv.read()
        settings = cls(
            db_url=db_url or env.db_url,
            rasa_url=(rasa_url or env.rasa_url).rstrip("/"),
            rasa_jwt_secret=env.rasa_jwt_secret,
            rasa_timeout=env.rasa_timeout,
            host=env.host,
            port=env.port,
            session_hours=env.session_hours,
            idle_minutes=env.idle_minutes,
            proxies_count=env.proxies_count,
            bcrypt_rounds=env.bcrypt_rounds,
            pickup_minutes=env.pickup_minutes,
            webhook_url=env.webhook_url,
            webhook_secret=env.webhook_secret,
            webhook_attempts=env.webhook_attempts,
            project_dir=env.project_dir,
            content_dir=env.content_dir,
            endpoints=env.endpoints,
            train_config=env.train_config,
            f1_tolerance=env.f1_tolerance,
            low_confidence=env.low_confidence,
            similarity=env.similarity,
            git_commit=bool(env.git_commit) and bool(env.project_dir),
            job_timeout=env.job_timeout,
            rasa_instances=tuple(u.strip().rstrip("/") for u in env.rasa_instances.split(",") if u.strip()),
        )
        for key, value in overrides.items():
            if not hasattr(settings, key):
                raise TypeError(f"unknown desk setting {key!r}")
            setattr(settings, key, value)
        explicit = overrides["cookie_secure"] if "cookie_secure" in overrides else env.cookie_secure
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
