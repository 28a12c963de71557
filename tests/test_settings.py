"""Settings from the environment (appcare.env_settings, pydantic BaseSettings): a bad
value is one clear error that names the variable; unset or blank means the default."""
from __future__ import annotations

import pytest

from appcare.env_settings import SettingsError
from desk.settings import DeskEnv, Settings


@pytest.mark.parametrize("variable, value, message", [
    ("DESK_PORT", "vijftig", "DESK_PORT must be a whole number (got 'vijftig')"),
    ("DESK_WEBHOOK_ATTEMPTS", "2.5", "DESK_WEBHOOK_ATTEMPTS must be a whole number (got '2.5')"),
    ("DESK_RASA_TIMEOUT", "lang", "DESK_RASA_TIMEOUT must be a number (got 'lang')"),
    ("DESK_SESSION_HOURS", "nan", "DESK_SESSION_HOURS must be a number (got 'nan')"),
    ("APPCARE_EDITOR_SIMILARITY", "inf", "APPCARE_EDITOR_SIMILARITY must be a number (got 'inf')"),
    ("DESK_COOKIE_SECURE", "misschien", "DESK_COOKIE_SECURE must be 1 or 0 (got 'misschien')"),
    ("APPCARE_EDITOR_GIT_COMMIT", "graag", "APPCARE_EDITOR_GIT_COMMIT must be 1 or 0 (got 'graag')"),
])
def test_a_bad_value_names_the_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        Settings.from_env()
    assert str(error.value) == message


def test_every_bad_value_is_named_at_once():
    with pytest.raises(SettingsError) as error:
        DeskEnv.read({"DESK_PORT": "x", "DESK_PICKUP_MINUTES": "y", "DESK_HOST": "desk.example"})
    assert "DESK_PORT must be a whole number" in str(error.value)
    assert "DESK_PICKUP_MINUTES must be a whole number" in str(error.value)


def test_unset_or_blank_is_the_default_and_values_are_read():
    defaults = DeskEnv.read({"DESK_PORT": "  ", "DESK_SESSION_HOURS": ""})
    assert (defaults.port, defaults.session_hours, defaults.cookie_secure) == (5080, 8.0, None)
    env = DeskEnv.read({"DESK_PORT": " 5081 ", "DESK_SESSION_HOURS": "4.5", "DESK_COOKIE_SECURE": "Ja",
                        "APPCARE_EDITOR_GIT_COMMIT": "off", "RASA_JWT_SECRET": " exact "})
    assert (env.port, env.session_hours, env.cookie_secure, env.git_commit) == (5081, 4.5, True, False)
    assert env.rasa_jwt_secret == " exact "  # a secret keeps its exact characters


def test_whatsapp_channel_reads_its_variables_the_same_way():
    from channels.config import WhatsAppConfig

    env = {"WHATSAPP_ACCESS_TOKEN": " token ", "WHATSAPP_PHONE_NUMBER_ID": "111", "WHATSAPP_APP_SECRET": "",
           "WHATSAPP_TENANTS": "222:lelystad"}
    config = WhatsAppConfig.load({"phone_number_id": 333, "app_secret": "  ", "verify_token": "v"}, environ=env)
    assert config.access_token == "token"  # from the environment, stripped
    assert config.phone_number_id == "333"  # credentials.yml wins
    assert config.app_secret is None and config.missing == ["WHATSAPP_APP_SECRET"]  # blank = not given
    assert config.tenants == {"222": "lelystad"} and config.db_url == "sqlite:///var/appcare.db"


def test_whatsapp_scale_settings_name_a_bad_variable_and_take_credentials_first(monkeypatch, caplog):
    from channels.whatsapp import ScaleSettings

    monkeypatch.setenv("WHATSAPP_LEASE_SECONDS", "20")
    monkeypatch.setenv("WHATSAPP_MAX_TURNS", " ")  # blank: the default
    monkeypatch.setenv("APPCARE_INSTANCE_ID", "rasa-1")
    settings = ScaleSettings.load({"stale_after": "veel", "max_turns": 3})
    assert (settings.lease_seconds, settings.stale_after, settings.max_turns, settings.instance_id) == \
        (20.0, 10.0, 3, "rasa-1")
    assert "ignoring invalid value for 'stale_after'" in caplog.text
    monkeypatch.setenv("WHATSAPP_CONFIRM_SECONDS", "dertig")
    with pytest.raises(SettingsError, match=r"WHATSAPP_CONFIRM_SECONDS must be a number \(got 'dertig'\)"):
        ScaleSettings.load()
