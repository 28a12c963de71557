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
