"""Round-trip writing of the content files by the editors' tools: comments, order,
quoting and blank lines survive; validation uses appcare.content's own rules on a
copy; a refused change leaves the file byte for byte as it was; a saved change is
seen by the running bot's cached loader at once (mtime moves)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from appcare import content as content_module
from desk.editor import yaml_edit
from desk.editor.content import NATIONAL, ContentRepo, EditorRefused
from tests.support.editor_helpers import make_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(tmp_path):
    project = make_project(tmp_path / "project")
    return ContentRepo(project / "content", project)


def fact_form(repo, scope, path, page=None, **changes):
    form = dict(repo.fact(scope, path, page or scope).form)
    form.update(changes)
    return form


@pytest.mark.parametrize("path", sorted((ROOT / "content").glob("*.yml")) + sorted((ROOT / "data" / "nlu").glob("*.yml")))
def test_every_project_file_round_trips_unchanged(path):
    text = path.read_text(encoding="utf-8")
    document, yaml = yaml_edit.load(text)
    assert yaml_edit.dump(document, yaml) == text


def test_fee_change_keeps_comments_order_and_other_facts(repo):
    before = repo.read(NATIONAL)
    result = repo.save_fact(NATIONAL, "passport.fees.paspoort_18_plus", "fee",
                            fact_form(repo, NATIONAL, "passport.fees.paspoort_18_plus", value="84,50", year="2025",
                                      verified="1"),
                            version=yaml_edit.sha(before))
    after = repo.read(NATIONAL)
    assert result.written and result.file == "content/national.yml"
    assert "-      value: 77.87" in result.diff and "+      value: 84.50" in result.diff
    changed = [line for line in after.splitlines() if line not in before.splitlines()]
    assert changed == ["      value: 84.50", "      year: 2025"]
    # every comment line is still there, in the same order
    comments = lambda text: [line for line in text.splitlines() if line.strip().startswith("#")]  # noqa: E731
    assert comments(after) == comments(before) and len(comments(before)) > 10
    assert len(after.splitlines()) == len(before.splitlines())


def test_unverified_fact_made_verified_drops_flag_and_note_but_keeps_blank_line(repo):
    before = repo.read("terneuzen")
    repo.save_fact("terneuzen", "contact.privacy_url", "text",
                   fact_form(repo, "terneuzen", "contact.privacy_url", value="https://www.terneuzen.nl/privacyverklaring",
                             verified="1", note=""))
    after = repo.read("terneuzen")
    block = after.split("  privacy_url:")[1].split("desks:")[0]
    assert "verified" not in block and "note:" not in block
    assert block.endswith("\n\n"), "the blank line before the next section is kept"
    assert "# When KCC staff answer WhatsApp" in after and "# Days the desks are closed" in after
    assert "year: null" in after  # nulls stay null (ruamel would write an empty value)
    import difflib

    changes = [d for d in difflib.ndiff(before.splitlines(), after.splitlines()) if d[:1] in "+-"]
    assert sorted(changes) == sorted([
        "-     value: https://www.terneuzen.nl/privacy", "+     value: https://www.terneuzen.nl/privacyverklaring",
        "-     verified: false", "-     note: Privacy statement URL to be confirmed by the municipality.",
    ])


def test_hours_keep_flow_style_and_quotes(repo):
    repo.save_fact("terneuzen", "desks.balie.hours", "hours",
                   fact_form(repo, "terneuzen", "desks.balie.hours", day_maandag="08:30-12:00, 13:00-16:30",
                             verified="1", note=""))
    text = repo.read("terneuzen")
    assert 'maandag: ["08:30-12:00", "13:00-16:30"]' in text
    assert 'dinsdag: ["08:30-16:30"]' in text and "zaterdag: []" in text
    loaded = repo.loaded("terneuzen")
    assert loaded.desks["balie"].hours.value["maandag"] == ["08:30-12:00", "13:00-16:30"]
    assert loaded.desks["balie"].hours.verified is True


def test_refused_change_names_file_line_and_leaves_file_untouched(repo):
    path = repo.file_of("terneuzen")
    raw = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    with pytest.raises(EditorRefused) as refused:
        repo.save_fact("terneuzen", "desks.balie.hours", "hours",
                       fact_form(repo, "terneuzen", "desks.balie.hours", day_maandag="9-17"))
    assert refused.value.problems == [
        "content/terneuzen.yml:44: desks.balie.hours.value: maandag: '9-17' is not a time range like 08:30-17:00"
    ]
    with pytest.raises(EditorRefused) as missing_year:
        repo.save_fact(NATIONAL, "passport.fees.id_kaart_18_plus", "fee",
                       fact_form(repo, NATIONAL, "passport.fees.id_kaart_18_plus", "terneuzen", year="", verified="1"))
    assert "a fee without a year must be marked `verified: false`" in missing_year.value.problems[0]
    with pytest.raises(EditorRefused) as no_source:
        repo.save_fact("terneuzen", "contact.phone", "text", fact_form(repo, "terneuzen", "contact.phone", source="www.x.nl"))
    assert "source must be a web address" in no_source.value.problems[0]
    with pytest.raises(EditorRefused) as no_checked:
        repo.save_fact("terneuzen", "contact.phone", "text", fact_form(repo, "terneuzen", "contact.phone", checked=""))
    assert "contact.phone.checked: required field is missing" in no_checked.value.problems[0]
    assert path.read_bytes() == raw and path.stat().st_mtime_ns == mtime


def test_national_change_is_checked_against_every_municipality(repo):
    with pytest.raises(EditorRefused) as refused:
        repo.save_fact(NATIONAL, "passport.validity_years_adult", "int",
                       fact_form(repo, NATIONAL, "passport.validity_years_adult", "terneuzen", value="tien"))
    assert len(refused.value.problems) == 1  # same problem, reported once for lelystad and terneuzen
    assert "content/national.yml" in refused.value.problems[0] and "integer" in refused.value.problems[0]


def test_version_conflict_is_refused(repo):
    old_version = repo.version("terneuzen")
    repo.save_fact("terneuzen", "contact.phone", "text", fact_form(repo, "terneuzen", "contact.phone", value="14 0115 1"))
    with pytest.raises(EditorRefused) as conflict:
        repo.save_fact("terneuzen", "contact.phone", "text", fact_form(repo, "terneuzen", "contact.phone", value="x"),
                       version=old_version)
    assert conflict.value.code == "conflict"


def test_closures_add_and_delete_keep_layout(repo):
    original = repo.read("terneuzen")
    for day in ("2026-12-24", "2026-12-31"):
        repo.save_exception("terneuzen", {"date": day, "desk": "balie", "hours": "08:30-12:00", "reason": "Feestdag",
                                          "source": "https://www.terneuzen.nl", "checked": "2026-11-25", "verified": "1"})
    text = repo.read("terneuzen")
    assert "  exceptions:\n    - date: 2026-12-24\n      desk: balie\n      hours: [\"08:30-12:00\"]" in text
    assert "      checked: 2026-11-25\n    - date: 2026-12-31" in text  # no blank line between items
    assert "checked: 2026-11-25\n\nmarriage:" in text  # the blank line before the next section stays
    loaded = repo.loaded("terneuzen")
    assert [str(e.date) for e in loaded.closures.exceptions] == ["2026-12-24", "2026-12-31"]
    repo.save_exception("terneuzen", {}, index=0, delete=True)
    repo.save_exception("terneuzen", {}, index=0, delete=True)
    assert repo.read("terneuzen") == original


def test_missing_optional_fact_can_be_filled_in(repo):
    views = {v.path: v for v in repo.facts("lelystad")}
    assert views["marriage.cost_weekday"].missing
    repo.save_fact("lelystad", "marriage.cost_weekday", "fee",
                   fact_form(repo, "lelystad", "marriage.cost_weekday", value="540", year="2026",
                             source="https://www.lelystad.nl/trouweninlelystad", checked="2026-11-25", verified="1"))
    text = repo.read("lelystad")
    assert "  cost_weekday:\n    value: 540.00\n    year: 2026\n" in text
    assert "checked: 2026-11-25\n\nroadworks:" in text
    assert repo.loaded("lelystad").marriage.cost_weekday.value == 540.0


def test_unverified_facts_are_listed_first(repo):
    views = repo.facts("terneuzen")
    flags = [(v.missing, v.verified) for v in views]
    first_verified = next(i for i, (missing, verified) in enumerate(flags) if verified)
    assert all(not verified for _missing, verified in flags[:first_verified]) and first_verified >= 5
    assert all(missing for missing, _verified in flags[flags.index((True, False)):])
    inherited = [v for v in views if v.inherited]
    assert inherited and all(v.scope == NATIONAL for v in inherited)


def test_facts_checked_long_ago_are_marked_for_a_new_check(repo, frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    assert not any(v.stale for v in repo.facts("terneuzen"))  # all checked in 2026
    frozen_now(2028, 1, 5, 10, 0)
    assert all(v.stale for v in repo.facts("terneuzen") if not v.missing)


def test_saved_fact_reaches_the_cached_loader_at_once(repo, monkeypatch):
    monkeypatch.setattr(content_module, "CONTENT_DIR", repo.dir)
    content_module.clear_cache()
    try:
        assert content_module.load("terneuzen").passport.fees.paspoort_18_plus.value == 77.87
        path = repo.file_of(NATIONAL)
        future = path.stat().st_mtime + 3600  # a file dated ahead: the write must still move the mtime
        os.utime(path, (future, future))
        content_module.load("terneuzen")
        repo.save_fact(NATIONAL, "passport.fees.paspoort_18_plus", "fee",
                       fact_form(repo, NATIONAL, "passport.fees.paspoort_18_plus", "terneuzen", value="84.5", year="2025",
                                 verified="1"))
        assert path.stat().st_mtime > future
        assert content_module.load("terneuzen").passport.fees.paspoort_18_plus.value == 84.5
    finally:
        content_module.clear_cache()


def test_atomic_write_keeps_permissions(tmp_path):
    target = tmp_path / "x.yml"
    target.write_text("a: 1\n")
    os.chmod(target, 0o640)
    yaml_edit.atomic_write(target, "a: 2\n")
    assert target.read_text() == "a: 2\n" and (target.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["x.yml"]
