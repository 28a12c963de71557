"""The editors' pages and JSON API of the desk over real HTTP, on a temporary copy
of the project (content/, data/) with a fake Rasa HTTP API and an SQLite tracker
store. Training itself is covered by tests/e2e/test_editor_e2e.py."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.desk_helpers import DeskClient, make_user, start_desk
from tests.support.editor_helpers import FakeRasaApi, TrackerDB, make_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path):
    project = make_project(tmp_path / "project")
    db_url = f"sqlite:///{tmp_path}/desk.db"
    tracker = TrackerDB(tmp_path / "tracker.db")
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(f"tracker_store:\n  type: SQL\n  dialect: sqlite\n  db: {tmp_path}/tracker.db\n", encoding="utf-8")
    (project / "models" / "baseline.tar.gz").write_bytes(b"not a real model")
    (project / "models" / "previous.tar.gz").write_bytes(b"not a real model either")
    rasa = FakeRasaApi("baseline.tar.gz")
    for name, role in (("eddy", "editor"), ("anna", "staff"), ("carla", "coordinator")):
        make_user(db_url, name, role)
    desk = start_desk(db_url, rasa.url, project_dir=str(project), endpoints=str(endpoints))
    yield type("Env", (), {"project": project, "db_url": db_url, "tracker": tracker, "rasa": rasa, "desk": desk,
                           "app": desk.app})
    desk.stop()
    rasa.stop()
    tracker.close()


def login(env, name: str) -> DeskClient:
    client = DeskClient(env.desk.url)
    response = client.login(name)
    assert response.status_code == 302
    return client


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_roles_and_landing_page(env):
    editor = DeskClient(env.desk.url)
    assert editor.login("eddy").headers["Location"] == "/editor"
    assert editor.get("/editor").status_code == 200
    assert "Redactie" in editor.get("/editor").text
    assert editor.get("/").status_code == 403 and "/editor" in editor.get("/").text
    staff = login(env, "anna")
    for path in ("/editor", "/editor/facts", "/editor/intents", "/editor/inbox", "/editor/publish", "/api/editor/intents"):
        assert staff.get(path).status_code == 403, path
    assert staff.post("/api/editor/publish", {}).status_code == 403
    coordinator = login(env, "carla")
    assert coordinator.get("/editor/facts?scope=lelystad").status_code == 200
    assert DeskClient(env.desk.url).get("/api/editor/intents").status_code == 401


def test_fact_form_saves_validates_and_audits(env):
    editor = login(env, "eddy")
    national = env.project / "content" / "national.yml"
    facts = editor.get("/editor/facts?scope=terneuzen").text
    assert facts.index("niet geverifieerd") < facts.index("Leges paspoort 18 jaar en ouder")
    page = editor.get("/editor/facts/national/passport.fees.paspoort_18_plus?page=terneuzen")
    assert page.status_code == 200 and 'value="77,87"' in page.text
    version = re.search(r'name="version" value="([^"]+)"', page.text).group(1)
    form = {"csrf_token": csrf_of(page.text), "version": version, "page": "terneuzen", "value": "84,50", "year": "2025",
            "source": "https://www.rvig.nl/reisdocumenten/tarieven-reisdocumenten", "checked": "2026-11-25",
            "verified": "1", "note": "", "action": "preview"}
    preview = editor.http.post(editor.url("/editor/facts/national/passport.fees.paspoort_18_plus"), data=form)
    assert preview.status_code == 200 and "Controle geslaagd" in preview.text and "value: 84.50" in preview.text
    assert "77.87" in national.read_text()
    saved = editor.http.post(editor.url("/editor/facts/national/passport.fees.paspoort_18_plus"), data=dict(form, action="save"))
    assert saved.status_code == 200 and "Opgeslagen in content/national.yml" in saved.text
    assert "value: 84.50\n      year: 2025" in national.read_text()
    from desk.store import DeskStore

    entry = DeskStore(env.db_url).audit_log(action="fact_changed")[0]
    assert entry["actor"] == "eddy" and entry["detail"]["fact"] == "passport.fees.paspoort_18_plus"
    assert entry["detail"]["old"]["value"] == 77.87 and entry["detail"]["new"]["value"] == 84.5
    home = editor.get("/editor").text  # who changed what, for the other editors
    recent = home[home.index('id="recent-changes"'):]
    assert "eddy" in recent and "feit gewijzigd: <code>passport.fees.paspoort_18_plus</code>" in recent
    assert "UTC" not in home  # times in Amsterdam time, as everywhere in the desk

    # The same (now stale) form again: refused, someone else changed the file meanwhile.
    stale = editor.http.post(editor.url("/editor/facts/national/passport.fees.paspoort_18_plus"),
                             data=dict(form, action="save", value="90"))
    assert stale.status_code == 409 and "intussen" in stale.text


def test_invalid_fact_is_refused_and_file_untouched(env):
    editor = login(env, "eddy")
    path = env.project / "content" / "terneuzen.yml"
    before = path.read_bytes()
    page = editor.get("/editor/facts/terneuzen/desks.balie.hours").text
    form = {"csrf_token": csrf_of(page), "version": re.search(r'name="version" value="([^"]+)"', page).group(1),
            "day_maandag": "9-17", "day_dinsdag": "08:30-16:30", "day_woensdag": "", "day_donderdag": "",
            "day_vrijdag": "", "day_zaterdag": "", "day_zondag": "", "source": "https://www.terneuzen.nl",
            "checked": "2026-11-25", "action": "save"}
    refused = editor.http.post(editor.url("/editor/facts/terneuzen/desks.balie.hours"), data=form)
    assert refused.status_code == 422
    assert "Niet opgeslagen" in refused.text
    assert "content/terneuzen.yml:44: desks.balie.hours.value: maandag: &#39;9-17&#39; is not a time range" in refused.text
    assert 'value="9-17"' in refused.text  # the editor's input is kept for correcting
    assert path.read_bytes() == before
    missing_csrf = editor.http.post(editor.url("/editor/facts/terneuzen/desks.balie.hours"),
                                    data=dict(form, csrf_token="wrong", day_maandag="08:00-12:00"))
    assert missing_csrf.status_code == 403 and path.read_bytes() == before
    api = editor.post("/api/editor/facts/terneuzen/contact.phone",
                      {"value": "14 0115", "source": "geen-url", "checked": "2026-11-25", "verified": True})
    assert api.status_code == 422 and "source must be a web address" in api.json()["problems"][0]


def test_closure_days(env):
    editor = login(env, "eddy")
    page = editor.get("/editor/facts?scope=terneuzen").text
    form = {"csrf_token": csrf_of(page), "date": "2026-12-24", "desk": "balie", "hours": "08:30-12:00",
            "reason": "Kerstavond", "source": "https://www.terneuzen.nl", "checked": "2026-11-25", "verified": "1"}
    added = editor.http.post(editor.url("/editor/closures/terneuzen"), data=form)
    assert added.status_code == 200 and "Opgeslagen in content/terneuzen.yml" in added.text
    assert "    - date: 2026-12-24\n      desk: balie" in (env.project / "content" / "terneuzen.yml").read_text()
    bad = editor.http.post(editor.url("/editor/closures/terneuzen"), data=dict(form, desk="zolder", date="2026-12-31"))
    assert bad.status_code == 422 and "unknown desk" in bad.text
    deleted = editor.http.post(editor.url("/editor/closures/terneuzen/0"), data=dict(form, action="delete"))
    assert deleted.status_code == 200 and "exceptions: []" in (env.project / "content" / "terneuzen.yml").read_text()


def test_examples_pages_and_api(env):
    editor = login(env, "eddy")
    listing = editor.get("/editor/intents").text
    assert "passport_fees" in listing and "Paspoort/ID-kaart: wat kost het" in listing  # Dutch name for editors
    page = editor.get("/editor/intents/passport_fees").text
    assert '<option value="passport_apply">Paspoort/ID-kaart: aanvragen en afspraak</option>' in page
    added = editor.http.post(editor.url("/editor/intents/passport_fees/add"),
                             data={"csrf_token": csrf_of(page), "text": "wat moet ik neertellen voor zo'n reisboekje"})
    assert added.status_code == 200 and "Voorbeeld toegevoegd" in added.text
    nlu = (env.project / "data" / "nlu" / "passport_id.yml").read_text()
    assert "    - wat moet ik neertellen voor zo'n reisboekje\n" in nlu
    again = editor.http.post(editor.url("/editor/intents/passport_apply/add"),
                             data={"csrf_token": csrf_of(page), "text": "Wat moet ik neertellen voor zo'n reisboekje?"})
    assert again.status_code == 409 and "staat al bij een ander onderwerp (passport_fees)" in again.text
    moved = editor.post("/api/editor/intents/passport_fees/move",
                        {"examples": ["wat moet ik neertellen voor zo'n reisboekje"], "target": "passport_apply"})
    assert moved.status_code == 200 and moved.json()["files"] == ["data/nlu/passport_id.yml"]
    detail = editor.get("/api/editor/intents/passport_apply").json()
    assert "wat moet ik neertellen voor zo'n reisboekje" in detail["examples"]
    deleted = editor.post("/api/editor/intents/passport_apply/delete", {"examples": ["wat moet ik neertellen voor zo'n reisboekje"]})
    assert deleted.status_code == 200
    from desk.store import DeskStore

    actions = [e["action"] for e in DeskStore(env.db_url).audit_log(actor="eddy")]
    assert {"example_add", "example_move", "example_delete"} <= set(actions)


def test_every_intent_with_examples_has_a_dutch_name():
    from desk.editor.nlu import NluRepo
    from appcare.staff_labels import intent_labels

    repo = NluRepo(ROOT / "data" / "nlu", ROOT / "domain", 0.85, ROOT)
    missing = sorted(set(repo.intents()) - set(intent_labels()))
    assert not missing, f"add these intents to desk/intent_labels.yml: {missing}"


def test_inbox_masks_assigns_and_counts(env):
    db = env.tracker
    db.turn("31612345678", "Hoi, ik ben Jan de Vries, 06-12345678, wat moet ik neertellen voor zo'n reisboekje?",
            "nlu_fallback", 0.31, ["action_clarify"])
    db.turn("31612345678", "mijn bsn is 123456782, kan ik mijn hond aanmelden", "nlu_fallback", 0.2, ["action_clarify"])
    db.turn("31655555555", "moet mijn dochter mee als ik voor haar een id kaart aanvraag", "passport_child", 0.41,
            ["action_passport_id"])
    db.turn("31699999999", "wat kost een paspoort", "passport_fees", 0.97, ["action_passport_id"])
    editor = login(env, "eddy")
    page = editor.get("/editor/inbox")
    assert page.status_code == 200
    assert "Hoi, ik ben [naam], [telefoon], wat moet ik neertellen voor zo&#39;n reisboekje?" in page.text
    for secret in ("Vries", "12345678", "123456782", "31612345678"):
        assert secret not in page.text
    assert "wat kost een paspoort" not in page.text
    api = editor.get("/api/editor/inbox").json()
    assert len(api["items"]) == 3 and api["weeks"][0]["total"] == 3 and api["weeks"][0]["new"] == 3
    child = next(i for i in api["items"] if "dochter" in i["text"])
    # the suggested example marks what the training data always marks
    assert child["suggestion"] == "moet mijn [dochter](relation) mee als ik voor haar een [id kaart](document_type) aanvraag"
    assert 'value="moet mijn [dochter](relation) mee' in page.text
    item = next(i for i in api["items"] if "reisboekje" in i["text"])
    hond = next(i for i in api["items"] if "hond" in i["text"])
    assigned = editor.http.post(editor.url(f"/editor/inbox/{item['id']}/assign"),
                                data={"csrf_token": csrf_of(page.text), "intent": "passport_fees",
                                      "text": "Hoi, ik ben, wat moet ik neertellen voor zo'n reisboekje?"},
                                allow_redirects=False)
    assert assigned.status_code == 302
    nlu = (env.project / "data" / "nlu" / "passport_id.yml").read_text()
    assert "    - Hoi, ik ben, wat moet ik neertellen voor zo'n reisboekje?\n" in nlu
    assert editor.post(f"/api/editor/inbox/{hond['id']}/wish", {}).status_code == 200
    assert editor.post(f"/api/editor/inbox/{hond['id']}/dismiss", {}).status_code == 409  # already handled
    weeks = editor.get("/api/editor/inbox").json()["weeks"][0]
    assert (weeks["assigned"], weeks["wish"], weeks["new"]) == (1, 1, 1)
    assert "kan ik mijn hond aanmelden" in editor.get("/editor/inbox?status=wish").text
    # Nothing new: syncing again adds nothing.
    assert editor.get("/api/editor/inbox").json()["sync"] == {"ok": True, "added": 0}


def test_publish_refused_while_another_runs_and_rollback(env):
    editor = login(env, "eddy")
    store = env.app.ctx.editor.editor
    store.acquire_lock("carla", owner="another-desk")
    busy = editor.post("/api/editor/publish", {})
    assert busy.status_code == 409 and "Er loopt al een training" in busy.json()["error"]
    page = editor.get("/editor/publish").text
    form = editor.http.post(editor.url("/editor/publish"), data={"csrf_token": csrf_of(page)})
    assert form.status_code == 409 and "gestart door carla" in form.text
    store.release_lock(owner="another-desk")

    # Rollback: the live model came from a publish that replaced previous.tar.gz.
    models = env.project / "models"
    store.save_model(str(models / "previous.tar.gz"), status="retired")
    store.set_live(str(models / "baseline.tar.gz"), "eddy", previous=str(models / "previous.tar.gz"))
    assert "Terugdraaien naar previous.tar.gz" in editor.get("/editor/publish").text
    started = editor.post("/api/editor/rollback", {})
    assert started.status_code == 202
    env.app.ctx.editor.wait(30)
    job = editor.get("/api/editor/publish").json()["job"]
    assert job["status"] == "rolled_back", job
    assert env.rasa.loads == [str(models / "previous.tar.gz")]
    assert not (models / "baseline.tar.gz").exists() and (models / "retired" / "baseline.tar.gz").exists()
    assert (models / "live-model.txt").read_text().strip() == "previous.tar.gz"  # make run keeps it
    assert store.lock() is None
    assert editor.get("/api/editor/publish").json()["live_name"] == "previous.tar.gz"


def test_rollback_loads_every_instance_or_none(env):
    """With several Rasa instances (APPCARE_RASA_INSTANCES) a model goes to each in turn;
    when one cannot load it, the others get the live model back: all answer alike."""
    second = FakeRasaApi("baseline.tar.gz")
    try:
        service = env.app.ctx.editor
        service.settings.rasa_instances = (env.rasa.url, second.url)
        store = service.editor
        models = env.project / "models"
        store.save_model(str(models / "previous.tar.gz"), status="retired")
        store.set_live(str(models / "baseline.tar.gz"), "eddy", previous=str(models / "previous.tar.gz"))
        editor = login(env, "eddy")

        second.put_status = 500
        assert editor.post("/api/editor/rollback", {}).status_code == 202
        service.wait(30)
        job = editor.get("/api/editor/publish").json()["job"]
        assert job["status"] == "failed" and "instantie 2 van 2" in job["message"], job
        assert env.rasa.loads == [str(models / "previous.tar.gz"), str(models / "baseline.tar.gz")]
        assert env.rasa.model_file == second.model_file == "baseline.tar.gz"
        assert (models / "baseline.tar.gz").exists() and store.lock() is None

        second.put_status = 204
        assert editor.post("/api/editor/rollback", {}).status_code == 202
        service.wait(30)
        assert editor.get("/api/editor/publish").json()["job"]["status"] == "rolled_back"
        assert env.rasa.model_file == second.model_file == "previous.tar.gz"
    finally:
        second.stop()


def test_model_loading_authenticates_with_a_jwt_header_not_a_url_token(env):
    """Rasa runs with --jwt-secret in production: the editors' rollback loads the model
    with ``Authorization: Bearer <JWT>``, and no secret ends up in a URL (access logs)."""
    secret = "rasa-jwt-" + "s" * 32
    guarded = FakeRasaApi("baseline.tar.gz", jwt_secret=secret)
    try:
        service = env.app.ctx.editor
        service.settings.rasa_instances = (guarded.url,)
        models = env.project / "models"
        service.editor.save_model(str(models / "previous.tar.gz"), status="retired")
        service.editor.set_live(str(models / "baseline.tar.gz"), "eddy", previous=str(models / "previous.tar.gz"))
        editor = login(env, "eddy")

        service.settings.rasa_jwt_secret = None  # a desk without the secret is refused by Rasa
        assert editor.post("/api/editor/rollback", {}).status_code == 202
        service.wait(30)
        assert editor.get("/api/editor/publish").json()["job"]["status"] == "failed"
        assert guarded.loads == [] or guarded.model_file == "baseline.tar.gz"

        service.settings.rasa_jwt_secret = secret
        assert editor.post("/api/editor/rollback", {}).status_code == 202
        service.wait(30)
        assert editor.get("/api/editor/publish").json()["job"]["status"] == "rolled_back"
        assert guarded.model_file == "previous.tar.gz"
        assert guarded.paths and not [p for p in guarded.paths if "token" in p]
    finally:
        guarded.stop()


def test_publish_fails_fast_when_rasa_is_down(env):
    env.app.ctx.editor.settings.rasa_url = "http://127.0.0.1:9"
    editor = login(env, "eddy")
    assert editor.post("/api/editor/publish", {}).status_code == 202
    env.app.ctx.editor.wait(30)
    job = editor.get("/api/editor/publish").json()["job"]
    assert job["status"] == "failed" and "niet bereikbaar" in job["message"]
    assert env.app.ctx.editor.editor.lock() is None
    assert not (env.project / "models" / "candidates").exists()


def test_unknown_things_answer_404(env):
    editor = login(env, "eddy")
    assert editor.get("/editor/facts/terneuzen/no.such.fact").status_code == 404
    assert editor.get("/editor/facts/nowhere/contact.phone").status_code == 404
    assert editor.get("/editor/intents/no_such_intent").status_code == 404
    page = editor.get("/editor/facts?scope=terneuzen").text
    post = editor.http.post(editor.url("/editor/facts/terneuzen/no.such.fact"), data={"csrf_token": csrf_of(page)})
    assert post.status_code == 404 and "bestaat niet" in post.text
    assert editor.post("/api/editor/inbox/999/assign", {"intent": "passport_fees", "text": "x y"}).status_code == 404


def test_inbox_pages_groups_and_assigns_several_at_once(env):
    db = env.tracker
    for n in range(60):  # many different questions the assistant was unsure about
        db.turn(f"3161000{n:04d}", f"vraag nummer {n} over het afval ophalen in straat {n}", "nlu_fallback", 0.2,
                ["action_clarify"])
    for n in range(3):  # the same question three times, with different spelling
        db.turn(f"3162000{n:04d}", ["Wat kost een paspoort?", "wat kost een paspoort", "WAT KOST EEN PASPOORT!"][n],
                "passport_fees", 0.45, ["action_passport_id"])
    db.turn("31630000001", "wat vragen jullie ervoor als ik een nieuw pasje nodig heb", "passport_fees", 0.5, ["action_passport_id"])
    editor = login(env, "eddy")
    page = editor.get("/editor/inbox").text
    assert page.count('class="inbox-item"') == 25 and "Pagina 1 van 3" in page
    assert page.count("<select") <= 3  # one subject choice per group, not one per question
    second = editor.get("/editor/inbox?page=2").text
    assert "Pagina 2 van 3" in second and second.count('class="inbox-item"') == 25
    last = editor.get("/editor/inbox?page=3").text
    assert "Pagina 3 van 3" in last
    # The passport group: the same question once, with how often it was asked.
    grouped = next(p for p in (page, second, last) if 'data-intent="passport_fees"' in p)
    assert "3 keer gevraagd" in grouped and grouped.lower().count("kost een paspoort") == 1
    section = grouped[grouped.index('data-intent="passport_fees"'):]
    section = section[:section.index("</section>")]
    assert "(4 berichten)" in section and '<option value="passport_fees" selected' in section
    ids = re.findall(r'name="item" value="([\d,]+)"', section)
    assert len(ids) == 2 and any(len(v.split(",")) == 3 for v in ids)
    form = {"csrf_token": csrf_of(grouped), "intent": "passport_fees", "action": "assign", "item": ids}
    for value in ids:
        first = value.split(",")[0]
        form[f"text_{first}"] = re.search(rf'name="text_{first}" value="([^"]*)"', section).group(1).replace("&#39;", "'")
    assert editor.http.post(editor.url("/editor/inbox/bulk"), data=dict(form, csrf_token="wrong"),
                            allow_redirects=False).status_code == 403
    done = editor.http.post(editor.url("/editor/inbox/bulk"), data=form, allow_redirects=False)
    assert done.status_code == 302 and "msg=inbox_assigned" in done.headers["Location"]
    nlu = (env.project / "data" / "nlu" / "passport_id.yml").read_text()
    assert "wat vragen jullie ervoor" in nlu
    weeks = editor.get("/api/editor/inbox").json()["weeks"][0]
    assert (weeks["assigned"], weeks["new"]) == (4, 60)
    assigned = editor.get("/editor/inbox?status=assigned").text
    assert assigned.count('class="inbox-item"') == 2 and "3 keer gevraagd" in assigned
    from desk.store import DeskStore

    entry = DeskStore(env.db_url).audit_log(action="inbox_assigned")[0]
    assert entry["actor"] == "eddy" and entry["detail"]["count"] == 4 and entry["detail"]["intent"] == "passport_fees"
    assert "paspoort" not in str(entry["detail"]) and "betalen" not in str(entry["detail"])  # no citizen text
    # Nothing ticked: a Dutch message, nothing changes.
    empty = editor.http.post(editor.url("/editor/inbox/bulk"),
                             data={"csrf_token": csrf_of(page), "intent": "passport_fees", "action": "assign"})
    assert empty.status_code == 422 and "Vink eerst een of meer vragen aan" in empty.text
    # Several at once as "ignore".
    rest = editor.get("/editor/inbox").text
    picks = re.findall(r'name="item" value="([\d,]+)"', rest)[:5]
    ignored = editor.http.post(editor.url("/editor/inbox/bulk"),
                               data={"csrf_token": csrf_of(rest), "action": "dismiss", "item": picks},
                               allow_redirects=False)
    assert ignored.status_code == 302
    assert editor.get("/api/editor/inbox").json()["weeks"][0]["dismissed"] == 5
