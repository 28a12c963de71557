"""appcare.db on the real PostgreSQL of this machine (skipped when it is absent):
components that start together on an empty database all come up."""
from __future__ import annotations

import threading
from typing import List

import pytest

from tests.support.postgres import needs_pg, pg_url  # noqa: F401 - pg_url is a fixture

pytestmark = pytest.mark.timeout(120)


@needs_pg
def test_components_starting_together_on_an_empty_database(pg_url: str) -> None:
    """docker compose up starts both Rasa instances and the desk at once on an empty
    database: every one of them must come up (no CREATE TABLE race)."""
    from appcare.handoff_store import HandoffStore
    from channels.inbox import InboxStore
    from desk.editor.store import EditorStore
    from desk.store import DeskStore

    barrier = threading.Barrier(8)
    errors: List[BaseException] = []

    def start(kind: type) -> None:
        try:
            barrier.wait(10)
            kind(pg_url)  # each on its own connection of the pool, like separate processes
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    kinds = [InboxStore, InboxStore, HandoffStore, HandoffStore, DeskStore, DeskStore, EditorStore, EditorStore]
    threads = [threading.Thread(target=start, args=(kind,)) for kind in kinds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors


def test_epoch_seconds_and_stored_datetimes_convert_both_ways_to_the_microsecond() -> None:
    """The WhatsApp channel's times: epoch seconds in the code, naive UTC DateTime in the
    database (appcare.db.from_epoch / to_epoch at the store's boundary)."""
    import datetime as dt

    from appcare.db import from_epoch, to_epoch

    assert from_epoch(None) is None and to_epoch(None) is None
    assert from_epoch(1796650000.123456) == dt.datetime(2026, 12, 7, 13, 26, 40, 123456)
    assert from_epoch(1796650000.0000004) == dt.datetime(2026, 12, 7, 13, 26, 40)  # rounded to the microsecond
    for ts in (0.0, 1.5, 1796650000.123456, 1796650000.999999):
        assert to_epoch(from_epoch(ts)) == pytest.approx(ts, abs=5e-7)
        assert from_epoch(to_epoch(from_epoch(ts))) == from_epoch(ts)  # a stored time survives a round trip
    assert from_epoch(1796650000.123456) < from_epoch(1796650000.123457)
    aware = dt.datetime(2026, 12, 7, 14, 26, 40, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert to_epoch(aware) == 1796650000.0
