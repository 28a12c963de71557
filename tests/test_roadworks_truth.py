"""Roadworks answers say where they come from (issue 17).

* Works from a feed marked as example data (``"example": true``, the shipped
  content/roadworks/*.json) come with "Let op: dit is voorbeeldinformatie" and the
  municipality's roadworks page, in the same WhatsApp message.
* Strict mode (APPCARE_STRICT_FACTS=1) and production (APPCARE_ENV=production) never
  answer from example data: the citizen gets the page; start-up says so.
* "No known works" names the date of the overview; without a feed (none configured,
  unreachable) the citizen is referred to the page instead of getting an all-clear.

Real actions on real trackers; feeds are local files in a copy of the test content or a
real HTTP server on 127.0.0.1.
"""
from __future__ import annotations

import json
import logging
import shutil

import pytest

from actions.roadworks import ActionRoadworks
from appcare import content, roadworks_feed
from channels import formatting
from channels.formatting import BotMessage
from tests.conftest import FIXTURE_CONTENT, fake_model, run_action
from tests.support.http_server import ScriptedServer

TERNEUZEN = {"municipality": "terneuzen"}
LELYSTAD = {"municipality": "lelystad"}
TERNEUZEN_PAGE = "https://www.terneuzen.nl/Inwoners_Terneuzen/Verkeer_en_vervoer/Werk_in_uitvoering/Werkzaamheden_Terneuzen"
NOTICE = "Let op: dit is voorbeeldinformatie, geen echte werkzaamheden."
WORK = {"id": "t-1", "street": "Serlippensstraat", "area": "Terneuzen", "description": "Groot onderhoud asfalt",
        "start": "2026-11-16", "end": "2026-12-18", "hindrance": "afgesloten voor doorgaand verkeer",
        "detour": "via de Zuidlandstraat"}


@pytest.fixture
def content_dir(tmp_path, monkeypatch, fixture_content):
    """A copy of the test content whose feed files a test may rewrite."""
    target = tmp_path / "content"
    shutil.copytree(FIXTURE_CONTENT, target)
    monkeypatch.setattr(content, "CONTENT_DIR", target)
    content.clear_cache()
    yield target
    content.clear_cache()


def write_feed(directory, municipality: str, **fields) -> None:
    document = {"municipality": municipality, "roadworks": [WORK], **fields}
    (directory / "roadworks" / f"{municipality}.json").write_text(json.dumps(document), encoding="utf-8")


def ask(street=None, slots=TERNEUZEN, text=None, intent="roadworks_status"):
    entities = [("street", street)] if street else []
    return run_action(ActionRoadworks(), text or f"is de {street} afgesloten?", intent, entities, slots=slots)


def whatsapp_bodies(result) -> list:
    """The WhatsApp messages this turn becomes (the channel joins a turn's texts)."""
    plan = formatting.plan_turn("31", [BotMessage("text", text=t) for t in result.texts])
    return [p["text"]["body"] for p in plan]


# ------------------------------------------------------------------ example data
def test_works_from_an_example_feed_say_so_in_the_same_message(content_dir, frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    write_feed(content_dir, "terneuzen", example=True)
    result = ask("Serlippensstraat")
    bodies = whatsapp_bodies(result)
    assert len(bodies) == 1, bodies
    assert NOTICE in bodies[0] and "Serlippensstraat: Groot onderhoud asfalt" in bodies[0]
    assert bodies[0].index(NOTICE) < bodies[0].index("Serlippensstraat:")  # read before the works
    assert TERNEUZEN_PAGE in bodies[0]  # the municipality's real roadworks page


def test_example_overview_and_detour_say_so(content_dir, frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    write_feed(content_dir, "terneuzen", example=True)
    overview = ask(text="zijn er wegwerkzaamheden")
    assert NOTICE in overview.text and "- Serlippensstraat" in overview.text
    assert overview.responses[-1] == "utter_roadworks_ask_street"
    detour = ask("Serlippensstraat", text="omleiding serlippensstraat", intent="roadworks_detour")
    assert NOTICE in whatsapp_bodies(detour)[0] and "Omleiding: via de Zuidlandstraat" in detour.text


def test_no_works_in_an_example_feed_is_no_all_clear(content_dir, frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    write_feed(content_dir, "terneuzen", example=True, generated="2026-11-25")
    result = ask("Vlietstraat")
    assert "Ik ken geen" not in result.text and "staan geen" not in result.text
    assert "alleen voorbeeldinformatie" in result.text and TERNEUZEN_PAGE in result.text


@pytest.mark.parametrize("variable,value", [("APPCARE_STRICT_FACTS", "1"), ("APPCARE_ENV", "production")])
def test_strict_mode_and_production_never_answer_from_example_data(content_dir, frozen_now, monkeypatch,
                                                                  variable, value):
    frozen_now(2026, 11, 25, 10, 0)
    write_feed(content_dir, "terneuzen", example=True)
    monkeypatch.setenv(variable, value)
    for result in (ask("Serlippensstraat"), ask("Vlietstraat"), ask(text="zijn er wegwerkzaamheden")):
        assert result.responses == ["utter_roadworks_no_feed"], result.text
        assert "Serlippensstraat" not in result.text and "Zuidlandstraat" not in result.text
        assert "Ik ken geen" not in result.text and TERNEUZEN_PAGE in result.text
        assert result.slot("pending_question") is None  # no question for a street nobody can look up


def test_strict_mode_with_the_shipped_files_gives_only_the_page(monkeypatch, frozen_now):
    """The shipped content/ with its example feeds, as `make run` with strict mode would use it."""
    monkeypatch.setenv("APPCARE_STRICT_FACTS", "1")
    monkeypatch.setattr(roadworks_feed, "_client", None)
    content.clear_cache()
    frozen_now(2026, 11, 25, 10, 0)
    for slots in (TERNEUZEN, LELYSTAD):
        shipped = content.load(slots["municipality"])
        result = ask(text="zijn er wegwerkzaamheden", slots=slots)
        assert result.responses == ["utter_roadworks_no_feed"], result.text
        assert shipped.roadworks.page_url.value in result.text


def test_a_real_feed_is_answered_without_the_notice_in_strict_mode(content_dir, frozen_now, monkeypatch):
    frozen_now(2026, 11, 25, 10, 0)
    monkeypatch.setenv("APPCARE_STRICT_FACTS", "1")
    with ScriptedServer() as server:
        server.default = (200, {"municipality": "terneuzen", "generated": "2026-11-25", "roadworks": [WORK]}, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url + "/{municipality}.json")
        result = ask("Serlippensstraat")
    assert "Serlippensstraat: Groot onderhoud asfalt" in result.text and "voorbeeld" not in result.text


# ------------------------------------------------------------------ no known works
def test_no_works_names_todays_overview(content_dir, frozen_now, monkeypatch):
    frozen_now(2026, 12, 7, 10, 0)
    with ScriptedServer() as server:
        server.default = (200, {"municipality": "terneuzen", "generated": "2026-12-07", "roadworks": [WORK]}, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        result = ask("Vlietstraat")
    assert "In het overzicht van vandaag staan geen wegwerkzaamheden op Vlietstraat." in result.text
    assert TERNEUZEN_PAGE in result.text


def test_no_works_names_the_date_of_an_older_overview(content_dir, frozen_now, monkeypatch):
    frozen_now(2026, 12, 7, 10, 0)
    with ScriptedServer() as server:
        server.default = (200, {"municipality": "terneuzen", "generated": "2026-12-03", "roadworks": [WORK]}, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        street = ask("Vlietstraat")
        area = run_action(ActionRoadworks(), "werkzaamheden in Axel?", "roadworks_status", [("area", "Axel")],
                          slots=TERNEUZEN)
        english = run_action(ActionRoadworks(), "roadworks on the Vlietstraat?", "roadworks_status",
                             [("street", "Vlietstraat")], slots={**TERNEUZEN, "language": "en"})
    assert "In het overzicht van 3 december staan geen wegwerkzaamheden op Vlietstraat." in street.text
    assert "In het overzicht van 3 december staan geen wegwerkzaamheden in Axel." in area.text
    assert "The overview of 3 December lists no roadworks on Vlietstraat." in english.text


def test_no_feed_configured_refers_to_the_page(content_dir, frozen_now):
    frozen_now(2026, 11, 25, 10, 0)
    path = content_dir / "terneuzen.yml"
    text = path.read_text(encoding="utf-8")
    assert "  feed_file: roadworks/terneuzen.json\n" in text
    path.write_text(text.replace("  feed_file: roadworks/terneuzen.json\n", ""), encoding="utf-8")
    content.clear_cache()
    result = ask("Vlietstraat")
    assert result.responses == ["utter_roadworks_no_feed"]
    assert "Ik ken geen" not in result.text and "geen actueel overzicht" in result.text
    assert TERNEUZEN_PAGE in result.text


def test_unreachable_feed_refers_to_the_page(content_dir, frozen_now, monkeypatch):
    frozen_now(2026, 11, 25, 10, 0)
    with ScriptedServer() as server:
        server.default = (503, {}, 0)
        monkeypatch.setenv("ROADWORKS_URL", server.url)
        result = ask("Vlietstraat")
    assert result.responses == ["utter_roadworks_unavailable"] and TERNEUZEN_PAGE in result.text
    assert "Ik ken geen" not in result.text


# ------------------------------------------------------------------ start-up
def test_startup_report_says_the_example_feed_is_not_used_in_strict_mode(content_dir, tmp_path, monkeypatch,
                                                                         capsys):
    from tools import run

    write_feed(content_dir, "terneuzen", example=True)
    monkeypatch.setenv("APPCARE_STRICT_FACTS", "1")
    run.startup_report(fake_model(tmp_path))
    out = capsys.readouterr().out
    assert "[appcare] roadworks terneuzen: example feed - not used in strict mode; set ROADWORKS_URL" in out
    assert "[appcare] roadworks lelystad: local feed lelystad.json" in out  # the test feed is no example

    monkeypatch.delenv("APPCARE_STRICT_FACTS")
    run.startup_report(fake_model(tmp_path))
    assert "[appcare] roadworks terneuzen: example feed - answers say it is example data" in capsys.readouterr().out


def test_action_server_logs_the_example_feed_at_start_up(content_dir, monkeypatch, caplog):
    write_feed(content_dir, "terneuzen", example=True)
    monkeypatch.setenv("APPCARE_STRICT_FACTS", "1")
    with caplog.at_level(logging.INFO, logger="appcare.roadworks_feed"):
        roadworks_feed.log_startup_status()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "roadworks terneuzen: example feed - not used in strict mode; set ROADWORKS_URL" in warnings
