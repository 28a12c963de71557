"""Schema migrations of appcare's own tables (Alembic; docs/production.md, "Schema changes").

* ``versions/`` - the revisions; ``0001`` is the schema ``create_all`` made before;
* :func:`upgrade` - run by every store at start-up (``appcare.db.ensure_schema``):
  to head under the schema lock, once per engine;
* ``python -m appcare.migrations`` - Alembic's commands for developers and
  administrators (``revision --autogenerate -m ...``, ``upgrade``, ``current``, ...);
* :mod:`appcare.migrations.models` - the models' tables as one ``MetaData``.

Rasa's ``events`` table is Rasa's and is never touched.
"""
from __future__ import annotations

from appcare.migrations.runner import BASELINE, alembic_config, head, upgrade

__all__ = ["BASELINE", "alembic_config", "head", "upgrade"]
