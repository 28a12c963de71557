"""The Graph API version: a supported default and a warning before Meta switches a version off."""
from __future__ import annotations

import datetime as dt
import logging

from channels.config import WhatsAppConfig
from channels.graph_versions import DEFAULT_API_VERSION, EXPIRES, expiry_warning

CONFIGURED = {"WHATSAPP_ACCESS_TOKEN": "t" * 40, "WHATSAPP_PHONE_NUMBER_ID": "111",
              "WHATSAPP_APP_SECRET": "s" * 40, "WHATSAPP_VERIFY_TOKEN": "v" * 40}


def test_default_version_is_supported_until_2028():
    assert DEFAULT_API_VERSION == "v25.0" and EXPIRES[DEFAULT_API_VERSION] >= dt.date(2028, 1, 1)
    assert WhatsAppConfig.load({}, environ={}).api_version == DEFAULT_API_VERSION


def test_warning_within_90_days_of_the_end_and_after_it():
    assert expiry_warning("v21.0", dt.date(2026, 10, 1)) is None  # 112 days left
    soon = expiry_warning("v21.0", dt.date(2026, 12, 7))
    assert "2027-01-21" in soon and "45 days" in soon and "v25.0" in soon
    assert "switched off" in expiry_warning("v20.0", dt.date(2026, 12, 7))
    assert "not supported" in expiry_warning("v12.0", dt.date(2026, 12, 7))
    assert expiry_warning("v25.0", dt.date(2026, 12, 7)) is None
    assert expiry_warning("v27.0", dt.date(2026, 12, 7)) is None  # newer than the table


def test_configured_channel_logs_the_warning_at_start(caplog):
    caplog.set_level(logging.WARNING)
    WhatsAppConfig.load({}, environ={**CONFIGURED, "WHATSAPP_API_VERSION": "v20.0"})
    assert "v20.0 was switched off" in caplog.text
    caplog.clear()
    WhatsAppConfig.load({}, environ=CONFIGURED)
    assert "Graph API version" not in caplog.text
