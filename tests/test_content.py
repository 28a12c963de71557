"""Content files: both municipalities load, broken files are rejected with file:line.

The shipped content/ is checked by the validator only (tools/validate_content.py): the
editors may change any fact in it. Tests of behaviour read tests/fixtures/content.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys

import pytest

from appcare import content
from tests.conftest import FIXTURE_CONTENT, ROOT, fake_model
from tools import validate_content

SHIPPED_CONTENT = ROOT / "content"


@pytest.fixture
def content_copy(tmp_path, monkeypatch):
    """A copy of the test content (tests/fixtures/content) that a test may break."""
    target = tmp_path / "content"
    shutil.copytree(FIXTURE_CONTENT, target)
    monkeypatch.setattr(content, "CONTENT_DIR", target)
    content.clear_cache()
    yield target
    content.clear_cache()


def validate(directory) -> subprocess.CompletedProcess:
    """`make validate-content` on ``directory``."""
    return subprocess.run([sys.executable, "-m", "tools.validate_content"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "APPCARE_CONTENT_DIR": str(directory)})


def test_shipped_content_passes_the_validator():
    """The only test of the shipped files: they pass the validator, whatever the facts."""
    result = validate(SHIPPED_CONTENT)
    assert result.returncode == 0, result.stdout + result.stderr
    for municipality in ("terneuzen", "lelystad"):
        assert f"{municipality}: OK" in result.stdout


@pytest.mark.parametrize("municipality", ["terneuzen", "lelystad"])
def test_content_loads_and_marks_unverified_facts(municipality, fixture_content):
    loaded = content.load_uncached(municipality)
    assert loaded.municipality.id == municipality
    assert loaded.passport.fees.paspoort_18_plus.value > 0
    # Facts that nobody could verify are marked, never silently presented as facts.
    assert "desks.balie.hours" in loaded.unverified_facts()


def test_municipalities_do_not_share_contact_facts(fixture_content):
    assert content.load("terneuzen").contact.phone.value == "14 0115"
    assert content.load("lelystad").contact.phone.value == "14 0320"


def test_fixture_content_passes_the_validator():
    """tests/fixtures/content follows the content model: when the model gains a required
    field, add it to the fixture copies too (this test says which)."""
    result = validate(FIXTURE_CONTENT)
    assert result.returncode == 0, result.stdout


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
    ok = validate(content_copy)
    assert ok.returncode == 0 and "unverified fact" in ok.stdout
    (content_copy / "lelystad.yml").write_text("municipality: [\n", encoding="utf-8")
    bad = validate(content_copy)
    assert bad.returncode == 1 and "lelystad.yml" in bad.stdout


def make_stale(directory) -> None:
    """Lelystad's phone number checked on 2025-10-01 (all other facts in 2026)."""
    path = directory / "lelystad.yml"
    text = path.read_text(encoding="utf-8")
    old = "    value: 14 0320\n"
    start = text.index(old)
    checked = text.index("    checked: ", start)
    end = text.index("\n", checked)
    path.write_text(text[:checked] + "    checked: 2025-10-01" + text[end:], encoding="utf-8")


def test_validator_warns_about_facts_checked_more_than_a_year_ago(content_copy, frozen_now, capsys):
    make_stale(content_copy)
    frozen_now(2026, 9, 30, 10, 0)  # 364 days later: not stale yet
    assert validate_content.main() == 0
    assert "WARNING" not in capsys.readouterr().out
    frozen_now(2026, 12, 7, 10, 0)
    assert validate_content.main() == 0  # a warning, the content is still valid
    out = capsys.readouterr().out
    assert "lelystad: OK, " in out and "1 fact(s) checked more than a year ago" in out
    assert "WARNING: contact.phone was checked on 2025-10-01, more than a year ago" in out
    assert "terneuzen: OK, " in out and "0 fact(s) checked more than a year ago" in out


def test_startup_report_counts_stale_facts(content_copy, frozen_now, tmp_path, capsys):
    from tools import run

    make_stale(content_copy)
    frozen_now(2026, 12, 7, 10, 0)
    run.startup_report(fake_model(tmp_path))
    out = capsys.readouterr().out
    assert "[appcare] content lelystad: " in out and "1 stale fact(s) (checked more than a year ago)" in out
    assert "[appcare] content terneuzen: " in out and "0 stale fact(s)" in out


def test_an_editors_fee_change_does_not_turn_the_behaviour_tests_red(tmp_path):
    """The editors change a fee in content/ (legitimately): the tests of the answers read
    their facts from tests/fixtures/content and stay green."""
    edited = tmp_path / "content"
    shutil.copytree(SHIPPED_CONTENT, edited)
    national = edited / "national.yml"
    text = national.read_text(encoding="utf-8")
    fee = text.index("  paspoort_18_plus:")
    value = text.index("value: ", fee)
    national.write_text(text[:value] + "value: 91.35" + text[text.index("\n", value):], encoding="utf-8")
    assert validate(edited).returncode == 0
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_actions.py",
         "-k", "fee_without_document_or_age or fee_without_age_answers_both or marriage_costs_known"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "APPCARE_CONTENT_DIR": str(edited)})
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 passed" in result.stdout
