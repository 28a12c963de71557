"""``ScaleSettings``: running several instances, riding out outages, and their
parsing from credentials.yml and the environment."""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, fields
from typing import Any, Dict, Optional

from pydantic import Field

from appcare import db as appcare_db
from appcare.env_settings import EnvSettings
from channels.whatsapp.common import logger

class ScaleEnv(EnvSettings):
    """The environment variables of :class:`ScaleSettings` (unset or blank: the
    default; a value that is no number stops the start with a :class:`SettingsError`
    naming the variable)."""

    lease_seconds: Optional[float] = Field(None, env="WHATSAPP_LEASE_SECONDS")
    sweep_interval: Optional[float] = Field(None, env="WHATSAPP_SWEEP_INTERVAL")
    stale_after: Optional[float] = Field(None, env="WHATSAPP_STALE_AFTER")
    bot_retry_seconds: Optional[float] = Field(None, env="WHATSAPP_BOT_RETRY_SECONDS")
    confirm_seconds: Optional[float] = Field(None, env="WHATSAPP_CONFIRM_SECONDS")
    max_turns: Optional[float] = Field(None, env="WHATSAPP_MAX_TURNS")
    error_text: Optional[str] = Field(None, env="WHATSAPP_ERROR_TEXT")
    instance_id: Optional[str] = Field(None, env="APPCARE_INSTANCE_ID")


@dataclass
class ScaleSettings:
    """Settings for running several instances and riding out outages.

    credentials.yml keys (under the channel) or environment variables:
    ``lease_seconds`` / ``WHATSAPP_LEASE_SECONDS`` (10): a sender's lease; a crashed
    instance's senders are taken over after this long.
    ``sweep_interval`` / ``WHATSAPP_SWEEP_INTERVAL`` (3): how often leases are
    renewed and orphaned messages looked for.
    ``stale_after`` / ``WHATSAPP_STALE_AFTER`` (10): a message untouched this long
    without a live lease is orphaned.
    ``bot_retry_seconds`` / ``WHATSAPP_BOT_RETRY_SECONDS`` (120): how long a message
    is retried while Rasa fails (tracker store, lock store down) before the citizen
    gets the domain's ``utter_channel_failure`` and the KCC a ticket.
    ``error_text`` / ``WHATSAPP_ERROR_TEXT`` (unset): the text for a turn that ended
    without any reply (e.g. the action server is unreachable); unset, the domain's
    ``utter_technical_problem`` with the municipality's phone number.
    ``confirm_seconds`` / ``WHATSAPP_CONFIRM_SECONDS`` (30): how long a send whose
    result is unknown (timeout after sending, 5xx, crash in flight) waits for Meta's
    status webhook before it is resent, once.
    ``APPCARE_INSTANCE_ID``: stable name of this instance (e.g. ``rasa-1``); a
    restarted instance then frees its own leases at once.
    ``max_turns`` / ``WHATSAPP_MAX_TURNS`` (8): Rasa turns this instance runs at the
    same time; more citizens wait their turn. Rasa's NLU and policies run on the event
    loop, so more turns at once add no throughput on a busy CPU, but every turn and every
    webhook acknowledgement then waits behind all of them. A turn waiting for a slow
    action (a hanging roadworks feed) holds its place, so keep it well above the number
    of such turns at once.

    Channel database (environment only, shared with :mod:`appcare.db`):
    ``WHATSAPP_DB_THREADS`` (4): threads that run the workers' database calls (the
    webhook has its own thread); the PostgreSQL pool keeps that many connections
    plus headroom (:func:`appcare.db.pool_size`).
    ``APPCARE_DB_CONNECT_TIMEOUT`` (5 s) and ``APPCARE_DB_STATEMENT_TIMEOUT_MS``
    (15000, 0 = off): on every PostgreSQL connection appcare opens.
    Wake-up: on PostgreSQL each instance listens on ``appcare_inbox``; an instance
    that lets go of a sender with open messages (shutdown, a worker that gave up)
    notifies, and the others take the sender over at once instead of after
    ``stale_after``. A worker that finds a sender's lease held by another instance
    leaves at once (the holder reads the open messages again before it lets go)."""

    lease_seconds: float = 10.0
    sweep_interval: float = 3.0
    stale_after: float = 10.0
    bot_retry_seconds: float = 120.0
    confirm_seconds: float = 30.0
    error_text: str = ""  # "": the domain's utter_technical_problem (channels.turn_recovery.no_reply_text)
    instance_id: str = ""
    db_threads: int = 0  # 0: WHATSAPP_DB_THREADS (appcare.db.db_threads)
    max_turns: int = 8

    def __post_init__(self) -> None:
        if not self.instance_id:
            self.instance_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        if self.db_threads <= 0:
            self.db_threads = appcare_db.db_threads()

    @classmethod
    def load(cls, credentials: Optional[Dict[str, Any]] = None) -> "ScaleSettings":
        """credentials.yml keys win over the environment (:class:`ScaleEnv`); an invalid
        credentials value is ignored with a warning, like the channel's other tuning knobs."""
        creds = dict(credentials or {})
        env = ScaleEnv.read()
        defaults = {f.name: f.default for f in fields(cls)}
        values: Dict[str, Any] = {}
        for key in ("lease_seconds", "sweep_interval", "stale_after", "bot_retry_seconds", "confirm_seconds",
                    "max_turns"):
            value = getattr(env, key)
            if creds.get(key) is not None:
                try:
                    value = float(creds[key])
                except (TypeError, ValueError):
                    logger.warning("WhatsApp channel: ignoring invalid value for '%s'", key)
            values[key] = defaults[key] if value is None else value
        values["max_turns"] = max(1, int(values["max_turns"]))
        values["error_text"] = str(creds.get("error_text") or env.error_text or "")
        values["instance_id"] = (env.instance_id or "").strip()[:120]
        settings = cls(**values)
        settings.lease_seconds = max(2.0, settings.lease_seconds)
        settings.sweep_interval = max(0.2, min(settings.sweep_interval, settings.lease_seconds / 3))
        settings.confirm_seconds = max(1.0, settings.confirm_seconds)
        return settings
