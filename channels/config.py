"""Settings of the WhatsApp channel.

Secrets come from environment variables; ``credentials.yml`` may name the
channel without any values (Rasa's ``${VAR}`` substitution fails on unset
variables, so it must not reference them). A value given in credentials.yml wins
over the environment. The variables are read like every other component's settings
(appcare.env_settings: pydantic ``BaseSettings``, unset or blank = not given).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from pydantic import Field

from appcare.env_settings import EnvSettings

logger = logging.getLogger(__name__)

from channels.graph_versions import DEFAULT_API_VERSION, expiry_warning  # noqa: E402
DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_TEMPLATE_LANGUAGE = "nl"
DEFAULT_DB_URL = "sqlite:///var/appcare.db"

# credentials.yml key -> environment variable
ENV_KEYS: Dict[str, str] = {
    "access_token": "WHATSAPP_ACCESS_TOKEN",
    "phone_number_id": "WHATSAPP_PHONE_NUMBER_ID",
    "app_secret": "WHATSAPP_APP_SECRET",
    "verify_token": "WHATSAPP_VERIFY_TOKEN",
    "api_version": "WHATSAPP_API_VERSION",
    "graph_url": "WHATSAPP_GRAPH_URL",
    "template_name": "WHATSAPP_TEMPLATE_NAME",
    "template_language": "WHATSAPP_TEMPLATE_LANGUAGE",
    "tenants": "WHATSAPP_TENANTS",
    "db_url": "APPCARE_DB_URL",
}
REQUIRED = ("access_token", "phone_number_id", "app_secret", "verify_token")

# Non-secret tuning knobs (credentials.yml only); defaults suit production.
TUNING_DEFAULTS: Dict[str, Any] = {
    "send_interval": 1.0,  # seconds between two messages to one recipient
    "graph_timeout": 10.0,  # seconds per Graph API request
    "max_attempts": 4,  # tries per Graph API request (429/5xx/network)
    "backoff_base": 0.5,  # first retry delay, doubled per try
    "backoff_max": 8.0,
    "retention_days": 7,  # keep wamids (de-duplication) at least this long
    "max_body_bytes": 3 * 1024 * 1024,  # Meta: webhook payloads up to 3 MB
    "shutdown_grace": 5.0,  # seconds to let in-flight sends finish on shutdown
    "max_processing_attempts": 3,  # a message that crashed the bot this often is dropped
    "allow_text_payloads": False,  # True: typed "/intent{...}" reaches Rasa as a payload
}


class WhatsAppEnv(EnvSettings):
    """The channel's environment variables (``ENV_KEYS``); values from credentials.yml
    are given to :meth:`read` and win. Every value is text, none can be malformed."""

    access_token: Any = Field(None, env=ENV_KEYS["access_token"])
    phone_number_id: Any = Field(None, env=ENV_KEYS["phone_number_id"])
    app_secret: Any = Field(None, env=ENV_KEYS["app_secret"])
    verify_token: Any = Field(None, env=ENV_KEYS["verify_token"])
    api_version: Any = Field(None, env=ENV_KEYS["api_version"])
    graph_url: Any = Field(None, env=ENV_KEYS["graph_url"])
    template_name: Any = Field(None, env=ENV_KEYS["template_name"])
    template_language: Any = Field(None, env=ENV_KEYS["template_language"])
    tenants: Any = Field(None, env=ENV_KEYS["tenants"])
    db_url: Any = Field(None, env=ENV_KEYS["db_url"])


def parse_tenants(raw: Any) -> Dict[str, str]:
    """``"pnid:municipality,pnid:municipality"`` (or a mapping) -> dict."""
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return {str(k).strip(): str(v).strip() for k, v in raw.items() if str(k).strip()}
    tenants: Dict[str, str] = {}
    for item in str(raw).split(","):
        item = item.strip()
        if not item:
            continue
        pnid, sep, municipality = item.partition(":")
        if not sep or not pnid.strip() or not municipality.strip():
            logger.warning("WHATSAPP_TENANTS: ignoring an entry without 'phone_number_id:municipality'")
            continue
        tenants[pnid.strip()] = municipality.strip()
    return tenants


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


@dataclass
class WhatsAppConfig:
    access_token: Optional[str] = None
    phone_number_id: Optional[str] = None
    app_secret: Optional[str] = None
    verify_token: Optional[str] = None
    api_version: str = DEFAULT_API_VERSION
    graph_url: str = DEFAULT_GRAPH_URL
    template_name: Optional[str] = None
    template_language: str = DEFAULT_TEMPLATE_LANGUAGE
    tenants: Dict[str, str] = field(default_factory=dict)
    db_url: str = DEFAULT_DB_URL
    send_interval: float = TUNING_DEFAULTS["send_interval"]
    graph_timeout: float = TUNING_DEFAULTS["graph_timeout"]
    max_attempts: int = TUNING_DEFAULTS["max_attempts"]
    backoff_base: float = TUNING_DEFAULTS["backoff_base"]
    backoff_max: float = TUNING_DEFAULTS["backoff_max"]
    retention_days: float = TUNING_DEFAULTS["retention_days"]
    max_body_bytes: int = TUNING_DEFAULTS["max_body_bytes"]
    shutdown_grace: float = TUNING_DEFAULTS["shutdown_grace"]
    max_processing_attempts: int = TUNING_DEFAULTS["max_processing_attempts"]
    allow_text_payloads: bool = TUNING_DEFAULTS["allow_text_payloads"]

    @classmethod
    def load(
        cls,
        credentials: Optional[Mapping[str, Any]] = None,
        environ: Optional[Mapping[str, str]] = None,
    ) -> "WhatsAppConfig":
        creds = dict(credentials or {})
        given = {key: creds[key] for key in ENV_KEYS
                 if creds.get(key) is not None and not (isinstance(creds[key], str) and not creds[key].strip())}
        values: Dict[str, Any] = {}
        for key, value in WhatsAppEnv.read(environ, **given).dict().items():
            if isinstance(value, str):
                value = value.strip()
            if value not in (None, ""):
                values[key] = value
        config = cls(
            access_token=values.get("access_token"),
            phone_number_id=str(values["phone_number_id"]) if "phone_number_id" in values else None,
            app_secret=values.get("app_secret"),
            verify_token=values.get("verify_token"),
            api_version=str(values.get("api_version", DEFAULT_API_VERSION)),
            graph_url=str(values.get("graph_url", DEFAULT_GRAPH_URL)).rstrip("/"),
            template_name=values.get("template_name"),
            template_language=str(values.get("template_language", DEFAULT_TEMPLATE_LANGUAGE)),
            tenants=parse_tenants(values.get("tenants")),
            db_url=str(values.get("db_url", DEFAULT_DB_URL)),
        )
        if not config.api_version.startswith("v"):
            config.api_version = "v" + config.api_version
        warning = expiry_warning(config.api_version)
        if warning and config.configured:
            logger.warning("WhatsApp channel: %s", warning)
        for key, default in TUNING_DEFAULTS.items():
            if creds.get(key) is None:
                continue
            try:
                if isinstance(default, bool):
                    setattr(config, key, _as_bool(creds[key]))
                else:
                    setattr(config, key, type(default)(creds[key]))
            except (TypeError, ValueError):
                logger.warning("WhatsApp channel: ignoring invalid value for '%s'", key)
        return config

    @property
    def missing(self) -> List[str]:
        return [ENV_KEYS[key] for key in REQUIRED if not getattr(self, key)]

    @property
    def configured(self) -> bool:
        return not self.missing

    @property
    def phone_number_ids(self) -> List[str]:
        """Business numbers this deployment answers for."""
        ids = [self.phone_number_id] if self.phone_number_id else []
        return ids + [pnid for pnid in self.tenants if pnid not in ids]

    def messages_url(self, phone_number_id: Optional[str] = None) -> str:
        return f"{self.graph_url}/{self.api_version}/{phone_number_id or self.phone_number_id}/messages"

    def __repr__(self) -> str:  # never print secrets
        return (
            f"WhatsAppConfig(phone_number_id={self.phone_number_id!r}, api_version={self.api_version!r}, "
            f"graph_url={self.graph_url!r}, configured={self.configured})"
        )
