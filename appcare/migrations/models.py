"""The models' tables as one ``MetaData``: what the newest migration must produce.

Alembic's autogenerate (``python -m appcare.migrations revision --autogenerate``)
and tests/test_migrations.py compare a database with :func:`target_metadata`. The
start-up upgrade never needs it: migrations spell out their own tables.

Only appcare's tables: Rasa's ``events`` table (the tracker store) may live in the
same database and is Rasa's (:func:`include_object` leaves it out of comparisons).
"""
from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import MetaData


def model_metadatas() -> list:
    """The ``MetaData`` of every store that owns appcare tables."""
    from appcare import handoff_store
    from channels import inbox
    from desk import store
    from desk.editor import store as editor_store

    return [handoff_store.Base.metadata, inbox.metadata, store.Base.metadata, editor_store.Base.metadata]


def target_metadata() -> MetaData:
    """One ``MetaData`` with a copy of every appcare table (the stores keep their own)."""
    combined = MetaData()
    for metadata in model_metadatas():
        for table in metadata.sorted_tables:
            if table.name in combined.tables:
                raise ValueError(f"table {table.name} is defined twice")
            table.to_metadata(combined)
    return combined


def include_object(target: MetaData):
    """Alembic ``include_object`` hook: a table found in the database but not in
    ``target`` (Rasa's ``events``, anything else sharing the database) is not ours:
    autogenerate must not drop it."""
    names = set(target.tables)

    def include(obj: Any, name: Optional[str], type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table" and reflected and compare_to is None:
            return name in names
        return True

    return include
