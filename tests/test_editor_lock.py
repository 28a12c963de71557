"""Only one training at a time: the lock in the desk database, the publish
comparison rules, and what the desk does when a publish cannot start."""
from __future__ import annotations

import datetime as dt
import threading

import pytest

from desk.editor.service import compare
from desk.editor.store import EditorStore, LockBusy



@pytest.fixture
def store(tmp_path):
    return EditorStore(f"sqlite:///{tmp_path}/desk.db")


def test_second_training_is_refused_until_the_first_is_done(store):
    store.acquire_lock("eddy", owner="host:1")
    with pytest.raises(LockBusy) as busy:
        store.acquire_lock("carla", owner="host:2")
    assert busy.value.lock["holder"] == "eddy"
    assert not store.release_lock(owner="host:2")  # only the holder releases
    assert store.release_lock(owner="host:1")
    store.acquire_lock("carla", owner="host:2")
    assert store.lock()["holder"] == "carla"


def test_a_lock_without_heartbeat_is_taken_over(store):
    start = dt.datetime(2026, 11, 25, 12, 0)
    store.acquire_lock("eddy", owner="host:1", now=start)
    with pytest.raises(LockBusy):
        store.acquire_lock("carla", owner="host:2", now=start + dt.timedelta(minutes=4))
    store.acquire_lock("carla", owner="host:2", now=start + dt.timedelta(minutes=6))
    assert store.lock()["holder"] == "carla"
    assert not store.heartbeat(owner="host:1")  # the old holder no longer owns it


def test_concurrent_attempts_one_wins(store):
    winners, losers = [], []
    barrier = threading.Barrier(8)

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            store.acquire_lock(f"user{n}", owner=f"host:{n}")
            winners.append(n)
        except LockBusy:
            losers.append(n)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(winners) == 1 and len(losers) == 7
    assert store.lock()["holder"] == f"user{winners[0]}"


def test_two_stores_on_one_database_share_the_lock(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    first, second = EditorStore(url), EditorStore(url)
    first.acquire_lock("eddy", owner="desk-a")
    with pytest.raises(LockBusy):
        second.acquire_lock("carla", owner="desk-b")


FIGURES = {"macro_f1": 0.80, "accuracy": 0.82, "stories_total": 38, "stories_failed": 0, "failed_stories": [],
           "per_intent": {"passport_fees": 0.9, "opening_hours": 0.8}}


def test_publish_rules():
    assert compare(FIGURES, dict(FIGURES, macro_f1=0.81), 0.01) == []
    assert compare(FIGURES, dict(FIGURES, macro_f1=0.795), 0.01) == []  # within the tolerance
    worse = compare(FIGURES, dict(FIGURES, macro_f1=0.70, per_intent={"passport_fees": 0.2, "opening_hours": 0.8}), 0.01)
    assert len(worse) == 1 and "daalt van 0,800 naar 0,700" in worse[0] and "passport_fees 0,90 → 0,20" in worse[0]
    story = compare(FIGURES, dict(FIGURES, stories_failed=1, failed_stories=["open now then thanks"]), 0.01)
    assert len(story) == 1 and "1 van de 38 testverhalen mislukt" in story[0] and "open now then thanks" in story[0]
    assert compare(None, FIGURES, 0.01) and "onbekend" in compare(None, FIGURES, 0.01)[0]
    assert "niet getest" in compare(FIGURES, {"error": "boom"}, 0.01)[0]


def test_training_uses_the_effective_config_of_the_project(tmp_path):
    """Without APPCARE_TRAIN_CONFIG the publish trains with the config written by
    ``python -m appcare.plugins.nlp_pipeline config``; for a project copy outside the
    repository the spaCy pipeline path is made absolute (Rasa runs from the repo)."""
    from ruamel.yaml import YAML

    from appcare.plugins.nlp_pipeline import OFFLINE_DIR, STOCK_NAME, pipeline_in_use
    from desk.editor.service import EditorService
    from desk.settings import Settings
    from desk.store import DeskStore
    from tests.support.editor_helpers import make_project

    project = make_project(tmp_path / "project")
    settings = Settings.from_env(db_url=f"sqlite:///{tmp_path}/desk.db", project_dir=str(project), train_config=None)
    service = EditorService(settings, DeskStore(settings.db_url))
    config = service._train_config()  # noqa: SLF001
    assert config == project / "models" / "config.effective.yml"
    spacy = next(c for c in YAML(typ="safe").load(config.read_text())["pipeline"] if c["name"] == "SpacyNLP")
    expected = STOCK_NAME if pipeline_in_use() == STOCK_NAME else str(OFFLINE_DIR)
    assert spacy["model"] == expected
    assert config.read_text().startswith("# Generated from config.yml by appcare.plugins.nlp_pipeline")
