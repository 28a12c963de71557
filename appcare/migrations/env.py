"""Alembic environment of appcare's tables (run by ``alembic.command``).

At start-up :func:`appcare.migrations.upgrade` hands over the connection that holds
the schema lock (``config.attributes["connection"]``). From the command line
(``python -m appcare.migrations ...``) this file connects to ``APPCARE_DB_URL`` itself
and compares with the models (:mod:`appcare.migrations.models`) for autogenerate.
"""
from __future__ import annotations

from alembic import context

from appcare.migrations import runner

config = context.config

if context.is_offline_mode():
    runner.run_offline(context)
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        runner.run_online(context, connection)
    else:
        runner.run_from_command_line(context)
