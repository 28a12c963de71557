"""``ScaleSettings``: running several instances, riding out outages, and their
parsing from credentials.yml and the environment."""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Optional

from appcare import db as appcare_db

DEFAULT_ERROR_TEXT = (
    "Sorry, door een storing kon ik je bericht nu niet verwerken. "
    "Probeer het over een paar minuten opnieuw."
)


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


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
    gets ``error_text`` / ``WHATSAPP_ERROR_TEXT``.
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
    error_text: str = DEFAULT_ERROR_TEXT
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
        creds = dict(credentials or {})
        values: Dict[str, Any] = {}
        for key, default in (("lease_seconds", 10.0), ("sweep_interval", 3.0), ("stale_after", 10.0),
                             ("bot_retry_seconds", 120.0), ("confirm_seconds", 30.0)):
            raw = creds.get(key)
            try:
                values[key] = float(raw) if raw is not None else _env_float(f"WHATSAPP_{key.upper()}", default)
            except (TypeError, ValueError):
                values[key] = default
        values["error_text"] = str(creds.get("error_text") or os.environ.get("WHATSAPP_ERROR_TEXT") or DEFAULT_ERROR_TEXT)
        values["instance_id"] = (os.environ.get("APPCARE_INSTANCE_ID") or "")[:120]
        try:
            raw_turns = creds.get("max_turns")
            values["max_turns"] = max(1, int(float(raw_turns) if raw_turns is not None
                                             else _env_float("WHATSAPP_MAX_TURNS", 8.0)))
        except (TypeError, ValueError):
            values["max_turns"] = 8
        settings = cls(**values)
        settings.lease_seconds = max(2.0, settings.lease_seconds)
        settings.sweep_interval = max(0.2, min(settings.sweep_interval, settings.lease_seconds / 3))
        settings.confirm_seconds = max(1.0, settings.confirm_seconds)
        return settings
