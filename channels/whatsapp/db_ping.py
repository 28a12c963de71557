"""The checkout ping on every SQLAlchemy pool of the process, registered once when
:mod:`channels.whatsapp` is imported."""
from __future__ import annotations

from typing import Any


def _ping_pooled_connections() -> None:
    """Pessimistic disconnect handling for every SQLAlchemy pool in this process
    (also Rasa's SQL tracker store, which has no ``pool_pre_ping``): a connection
    that died in a database outage is replaced at checkout instead of failing the
    next turn - Rasa would otherwise answer that turn from an empty in-memory
    tracker (its FailSafeTrackerStore) and not store it."""
    from sqlalchemy import event, exc
    from sqlalchemy.pool import Pool

    if getattr(Pool, "_appcare_ping", False):
        return

    @event.listens_for(Pool, "checkout")
    def _ping(dbapi_connection: Any, _record: Any, proxy: Any) -> None:
        module = type(dbapi_connection).__module__ or ""
        if not module.startswith("psycopg2"):
            return
        if getattr(getattr(proxy, "_pool", None), "_pre_ping", False):
            return  # the pool pings (pool_pre_ping) already: one round trip per checkout is enough
        try:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SELECT 1")
            finally:
                cursor.close()
        except Exception as error:  # noqa: BLE001
            raise exc.DisconnectionError() from error

    Pool._appcare_ping = True  # type: ignore[attr-defined]


_ping_pooled_connections()
