"""appcare.ops.logging_setup: redaction of personal data, JSON lines with the
conversation hash and a redacted traceback, and our handler kept when Rasa installs
coloredlogs."""
from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from appcare.ops import logging_setup
from appcare.pii import conversation_hash

pytestmark = pytest.mark.timeout(120)


PII_TEXT = "Mijn BSN is 111222333, bel 06-12345678 of +31 6 1234 5678, mail jan.jansen@example.nl, mijn naam is Jan de Vries, wa 31612345678"


def test_redaction_removes_personal_data_and_keeps_hashes() -> None:
    out = logging_setup.redact(PII_TEXT + " sender=abcdef012345 127.0.0.1:5432 took 1.25s")
    for needle in ("111222333", "12345678", "1234 5678", "jan.jansen", "Jan de Vries", "31612345678"):
        assert needle not in out, needle
    assert "sender=abcdef012345" in out and "127.0.0.1:5432" in out and "1.25s" in out
    assert logging_setup.redact(out) == out  # idempotent


@pytest.mark.parametrize("kept", [
    "20261201-180026-brave-fox.tar.gz",  # Rasa model names
    "models/20261201-180026-brave-fox.tar.gz",
    "'models/nlu-20261207-070613-hot-wake.tar.gz'",
    "2026-12-01",  # ISO dates and times
    "2026-12-01T18:00:26",
    "2026-12-01T18:00:26.123456+01:00",
    "2026-12-01 18:00:26,123",
    "18:00:26.123456789",
    "20261201T180026Z",
    "550e8400-e29b-41d4-a716-446655440000",  # uuids and hex ids
    "12345678-1234-1234-1234-123456789012",
    "0123456789abcdef0123456789abcdef",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
])
def test_redaction_keeps_model_names_timestamps_and_ids(kept: str) -> None:
    line = f"loaded {kept} for sender=abcdef012345"
    assert logging_setup.redact(line) == line


@pytest.mark.parametrize("personal", [
    "06-12345678", "+31 6 1234 5678", "0612345678", "31612345678", "+31612345678",
    "111222333", "1112 22 333", "NL91ABNA0417164300", "NL91 ABNA 0417 1643 00", "1234 AB 56", "1234AB 5a",
])
def test_redaction_still_removes_numbers_next_to_kept_tokens(personal: str) -> None:
    """The kept shapes are strict: a phone number, BSN, IBAN or postcode with house number
    next to a model name, date or uuid, or glued to one, is still removed."""
    for line in (f"{personal}", f"model 20261201-180026-brave-fox.tar.gz {personal}",
                 f"2026-12-01T18:00:26 {personal} 2026-12-01", f"550e8400-e29b-41d4-a716-446655440000 {personal}",
                 f"at 18:00:26: {personal}"):
        out = logging_setup.redact(line)
        assert personal not in out, (line, out)
        assert logging_setup.redact(out) == out  # idempotent
    glued = [f"{personal}-180026-brave-fox.tar.gz"]  # no model name
    if personal.startswith("+"):  # no time zone, no uuid
        glued += [f"2026-12-01T18:00:26{personal}", f"550e8400-e29b-41d4-a716-446655440000{personal}"]
    for line in glued:
        out = logging_setup.redact(line)
        assert personal not in out and personal[-8:] not in out, (line, out)


@pytest.mark.parametrize("pseudonym", ["505004416571", "0a1b2c3d4e5f", "123456789abc"])
def test_redaction_keeps_pseudonyms_even_when_they_are_all_digits(pseudonym: str) -> None:
    """A keyed pseudonym is 12 hex characters; about 1 in 280 is all digits. It stays
    readable after sender=/recipient=/conversation= (the JSON formatter takes it from
    there), while a bare 12-digit number is still removed."""
    for key in ("sender", "recipient", "conversation"):
        line = f"answered {key}={pseudonym} in 1.2s"
        assert logging_setup.redact(line) == line
    if pseudonym.isdigit():
        assert logging_setup.redact(f"bel {pseudonym}") == "bel [nummer]"


def test_json_lines_carry_hash_and_redacted_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    handler = logging_setup.make_handler(fmt="json", component="unit")
    log = logging.getLogger("appcare.test.json")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        log.info("answered sender=%s", conversation_hash("31612345678"))
        try:
            raise ValueError("boom for 31612345678 / jan@example.nl")
        except ValueError:
            log.exception("failed on %s", "0612345678")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["conversation"] == conversation_hash("31612345678") and lines[0]["component"] == "unit"
    assert lines[0]["level"] == "INFO" and lines[0]["logger"] == "appcare.test.json" and lines[0]["ts"].endswith("+00:00")
    assert "ValueError" in lines[1]["exc"]
    text = stream.getvalue()
    assert "31612345678" not in text and "0612345678" not in text and "jan@example.nl" not in text


def test_coloredlogs_install_keeps_our_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    import coloredlogs

    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    original_install = coloredlogs.install
    try:
        handler = logging_setup.make_handler(fmt="text")
        root.handlers = [handler]
        coloredlogs.install(level="DEBUG")  # what Rasa does after applying --logging-config-file
        assert root.handlers == [handler]
        logging_setup.adopt_sanic_loggers()
        assert logging.getLogger("sanic.error").handlers == [handler]
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        for name in logging_setup.SANIC_LOGGERS:
            logging.getLogger(name).handlers = []
            logging.getLogger(name).propagate = True
        coloredlogs.install = original_install
        logging_setup._coloredlogs_guarded = False
