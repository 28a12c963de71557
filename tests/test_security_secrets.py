"""appcare.secrets: what counts as a weak secret, and what production does with one."""
from __future__ import annotations

import logging

import pytest

from appcare import secrets


@pytest.mark.parametrize("value, why", [
    (None, "missing"), ("", "missing"), ("   ", "missing"), ("CHANGE-ME", "placeholder"), ("change_me", "placeholder"),
    ("please-changeme-now-123", "placeholder"), ("xxxxxxxxxxxxxxxxxxxx", "placeholder"), ("secret", "placeholder"),
    ("Kort-9x", "shorter than 16"),
])
def test_weak_values(value: str, why: str) -> None:
    assert why in (secrets.weakness(value) or "")


def test_a_random_value_is_fine() -> None:
    assert secrets.weakness("q3Vx-7uLm_pR2sT9wY4zA1") is None


def test_production_refuses_and_names_only_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPCARE_ENV", "production")
    with pytest.raises(secrets.SecretError) as refused:
        secrets.check("desk", {"A_TOKEN": "CHANGE-ME", "B_SECRET": "Kort-9x", "C_OK": "q3Vx-7uLm_pR2sT9wY4zA1"})
    message = str(refused.value)
    assert "A_TOKEN is a placeholder" in message and "B_SECRET is shorter than 16" in message
    assert "C_OK" not in message and "Kort-9x" not in message


def test_jwt_secrets_need_32_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPCARE_ENV", "production")
    with pytest.raises(secrets.SecretError, match="RASA_JWT_SECRET is shorter than 32"):
        secrets.check("desk", {"RASA_JWT_SECRET": "a1b2c3d4e5f6g7h8i9j0"})
    secrets.check("desk", {"RASA_JWT_SECRET": "a1b2c3d4e5f6g7h8i9j0" * 2})


def test_development_warns_and_optional_secrets_may_be_missing(monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("APPCARE_ENV", raising=False)
    with caplog.at_level(logging.WARNING):
        problems = secrets.check("desk", {"DESK_WEBHOOK_SECRET": "CHANGE-ME", "OPTIONAL_X": None}, optional=["OPTIONAL_X"])
    assert problems == ["DESK_WEBHOOK_SECRET is a placeholder"]
    assert "development only" in caplog.text and "CHANGE-ME" not in caplog.text
    monkeypatch.setenv("APPCARE_ENV", "production")
    with pytest.raises(secrets.SecretError):
        secrets.check("front", {"OPTIONAL_X": "CHANGE-ME"}, optional=["OPTIONAL_X"])  # set, so it must be strong


def test_constant_time_comparison_and_bearer_header() -> None:
    assert secrets.same_secret("abc", "abc") and not secrets.same_secret("abc", "abd")
    assert not secrets.same_secret(None, None) and not secrets.same_secret("", "")
    assert secrets.bearer_token("Bearer tok") == "tok" and secrets.bearer_token("Basic tok") is None
    assert secrets.bearer_token(None) is None and secrets.bearer_token("Bearer ") is None
