"""Editors see plain Dutch: what is wrong, at the field that is wrong, and a readable
before/after of a fact; the technical line (file:line, YAML diff) stays in a fold."""
from __future__ import annotations

import re

from desk.editor.messages import explain, fact_changes
from tests.test_editor_desk import csrf_of, env, login  # noqa: F401



def test_technical_problems_become_dutch_with_their_field():
    hours = explain("content/lelystad.yml:44: desks.balie.hours.value: donderdag: '25:00-20:00' is not a time range "
                    "like 08:30-17:00")
    assert hours["message"] == "Donderdag: '25:00-20:00' is geen geldige tijd. Schrijf het zo: 08:30-17:00."
    assert hours["field"] == "day_donderdag" and hours["technical"].startswith("content/lelystad.yml:44:")
    source = explain("content/terneuzen.yml:12: contact.phone.source: source must be a web address starting with "
                     "http:// or https://")
    assert source["field"] == "source" and "webadres" in source["message"] and "http" in source["message"]
    fee = explain("content/national.yml:7: passport.fees.paspoort_18_plus.__root__: a fee without a year must be "
                  "marked `verified: false`")
    assert "jaar" in fee["message"]
    already_dutch = explain("content/national.yml is intussen door iemand anders gewijzigd. Open de pagina opnieuw.")
    assert already_dutch["technical"] is None and already_dutch["message"].startswith("content/national.yml is intussen")


def test_fact_changes_read_like_the_form():
    changes = fact_changes({"value": 77.87, "year": 2024, "source": "https://a.nl", "checked": "2025-01-02"},
                           {"value": 84.5, "year": 2025, "source": "https://a.nl", "checked": "2026-11-25"})
    assert changes == [{"label": "Waarde", "old": "77,87", "new": "84,50"},
                       {"label": "Gecontroleerd op", "old": "02-01-2025", "new": "25-11-2026"},
                       {"label": "Jaar", "old": "2024", "new": "2025"}]


def test_wrong_hours_are_explained_at_the_day(env):
    editor = login(env, "eddy")
    page = editor.get("/editor/facts/terneuzen/desks.balie.hours").text
    assert "Technische details" in page
    form = {"csrf_token": csrf_of(page), "version": re.search(r'name="version" value="([^"]+)"', page).group(1),
            "day_maandag": "08:30-16:30", "day_dinsdag": "08:30-16:30", "day_woensdag": "",
            "day_donderdag": "25:00-20:00", "day_vrijdag": "", "day_zaterdag": "", "day_zondag": "",
            "source": "https://www.terneuzen.nl", "checked": "2026-11-25", "action": "save"}
    refused = editor.http.post(editor.url("/editor/facts/terneuzen/desks.balie.hours"), data=form)
    assert refused.status_code == 422
    text = refused.text
    dutch = "Donderdag: &#39;25:00-20:00&#39; is geen geldige tijd. Schrijf het zo: 08:30-17:00."
    # at the field: right after the Thursday input, which is marked invalid
    field = text[text.index('id="day-donderdag"'):text.index('id="day-vrijdag"')]
    assert 'aria-invalid="true"' in field and dutch in field and 'id="error-day_donderdag"' in field
    # the technical line only inside the fold
    fold = text[text.index("<summary>Technische details</summary>", text.index('id="problems"')):]
    assert "content/terneuzen.yml:" in fold and "is not a time range" in fold
    notice = text[text.index('id="problems"'):text.index("Technische details", text.index('id="problems"'))]
    assert "is not a time range" not in notice and dutch in notice


def test_preview_shows_old_and_new_value_and_folds_the_yaml(env):
    editor = login(env, "eddy")
    page = editor.get("/editor/facts/national/passport.fees.paspoort_18_plus?page=terneuzen")
    version = re.search(r'name="version" value="([^"]+)"', page.text).group(1)
    form = {"csrf_token": csrf_of(page.text), "version": version, "page": "terneuzen", "value": "84,50",
            "year": "2025", "source": "https://www.rvig.nl/reisdocumenten/tarieven-reisdocumenten",
            "checked": "2026-11-25", "verified": "1", "note": "", "action": "preview"}
    preview = editor.http.post(editor.url("/editor/facts/national/passport.fees.paspoort_18_plus"), data=form).text
    table = preview[preview.index('id="fact-changes"'):preview.index("</table>", preview.index('id="fact-changes"'))]
    assert "Leges paspoort 18 jaar en ouder" in table
    assert re.search(r"<th scope=\"row\">Waarde</th><td class=\"old\">77,87</td><td class=\"new\">84,50</td>", table)
    diff_fold = preview[preview.index('class="diff-box technical"'):]
    assert "<summary>Technische details" in diff_fold and "value: 84.50" in diff_fold
    assert 'class="diff-box technical" open' not in preview  # folded: not for the editor's eyes first


def test_subjects_by_their_dutch_name_ids_and_files_folded(env):
    editor = login(env, "eddy")
    listing = editor.get("/editor/intents").text
    table = listing[listing.index('id="intents-table"'):listing.index("</table>", listing.index('id="intents-table"'))]
    assert "Paspoort/ID-kaart: wat kost het" in table and "passport_fees</span>" not in table
    assert "data/nlu/" not in table and "data/nlu/passport_id.yml" in listing  # the file only in the fold
    page = editor.get("/editor/intents/passport_fees").text
    editor.http.post(editor.url("/editor/intents/passport_fees/add"),
                     data={"csrf_token": csrf_of(page), "text": "wat moet ik neertellen voor zo'n reisboekje"})
    again = editor.http.post(editor.url("/editor/intents/passport_apply/add"),
                             data={"csrf_token": csrf_of(page), "text": "Wat moet ik neertellen voor zo'n reisboekje?"})
    assert again.status_code == 409
    notice = again.text[again.text.index('id="problems"'):again.text.index("Technische details", again.text.index('id="problems"'))]
    assert "staat al bij een ander onderwerp (Paspoort/ID-kaart: wat kost het)" in notice
    assert "passport_fees" not in notice
