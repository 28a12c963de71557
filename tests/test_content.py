"""Content files: both municipalities load, broken files are rejected with file:line."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from appcare import content


@pytest.fixture
def content_copy(tmp_path, monkeypatch):
    target = tmp_path / "content"
    shutil.copytree(content.CONTENT_DIR, target)
    monkeypatch.setattr(content, "CONTENT_DIR", target)
    content.clear_cache()
    yield target
    content.clear_cache()


@pytest.mark.parametrize("municipality", ["terneuzen", "lelystad"])
def test_shipped_content_is_valid(municipality):
    loaded = content.load_uncached(municipality)
    assert loaded.municipality.id == municipality
    assert loaded.passport.fees.paspoort_18_plus.value > 0
    # Facts that nobody could verify are marked, never silently presented as facts.
    assert "desks.balie.hours" in loaded.unverified_facts()


def test_municipalities_do_not_share_contact_facts():
    assert content.load("terneuzen").contact.phone.value == "14 0115"
    assert content.load("lelystad").contact.phone.value == "14 0320"


def test_yaml_syntax_error_names_file_and_line(content_copy):
    path = content_copy / "terneuzen.yml"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[12] = "  phone: [unclosed"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(content.ContentError) as err:
        content.load_uncached("terneuzen")
    assert "content/terneuzen.yml" in str(err.value) or "terneuzen.yml:" in str(err.value)
    assert "YAML syntax error" in str(err.value)


def test_bad_opening_hours_are_rejected_with_line(content_copy):
    path = content_copy / "lelystad.yml"
    text = path.read_text(encoding="utf-8").replace('maandag: ["09:00-17:00"]', 'maandag: ["9-17"]', 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(content.ContentError) as err:
        content.load_uncached("lelystad")
    message = str(err.value)
    assert "lelystad.yml:" in message and "desks.balie.hours" in message and "9-17" in message


def test_missing_source_is_rejected(content_copy):
    path = content_copy / "terneuzen.yml"
    text = path.read_text(encoding="utf-8").replace(
        "  email:\n    value: gemeente@terneuzen.nl\n    source: https://www.terneuzen.nl/Inwoners_Terneuzen/Geboorte_huwelijk_overlijden/Huwelijk_en_geregistreerd_partnerschap/Trouwlocaties\n",
        "  email:\n    value: gemeente@terneuzen.nl\n",
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(content.ContentError) as err:
        content.load_uncached("terneuzen")
    assert "contact.email.source: required field is missing" in str(err.value)


def test_fee_without_year_must_be_unverified(content_copy):
    path = content_copy / "terneuzen.yml"
    text = path.read_text(encoding="utf-8")
    start = text.index("  cost_weekday:")
    block_end = text.index("  cost_saturday:")
    block = text[start:block_end].replace("    verified: false\n", "")
    path.write_text(text[:start] + block + text[block_end:], encoding="utf-8")
    with pytest.raises(content.ContentError) as err:
        content.load_uncached("terneuzen")
    assert "marriage.cost_weekday" in str(err.value) and "verified: false" in str(err.value)


def test_change_takes_effect_without_restart(content_copy):
    assert content.load("lelystad").contact.phone.value == "14 0320"
    path = content_copy / "lelystad.yml"
    path.write_text(path.read_text(encoding="utf-8").replace("value: 14 0320", "value: 14 0999", 1), encoding="utf-8")
    import os
    import time

    later = time.time() + 5
    os.utime(path, (later, later))
    assert content.load("lelystad").contact.phone.value == "14 0999"


def test_validate_command_exit_codes(content_copy, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "tools.validate_content"], capture_output=True, text=True,
                        env={**__import__("os").environ, "APPCARE_CONTENT_DIR": str(content_copy)})
    assert ok.returncode == 0 and "unverified fact" in ok.stdout
    (content_copy / "lelystad.yml").write_text("municipality: [\n", encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "tools.validate_content"], capture_output=True, text=True,
                         env={**__import__("os").environ, "APPCARE_CONTENT_DIR": str(content_copy)})
    assert bad.returncode == 1 and "lelystad.yml" in bad.stdout
