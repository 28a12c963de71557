"""Alembic's command line for appcare's tables, without an ini file.

    python -m appcare.migrations upgrade                      # to head, as at start-up
    python -m appcare.migrations current
    python -m appcare.migrations revision --autogenerate -m "add ticket topic"
    python -m appcare.migrations upgrade head --sql           # the SQL, for a DBA
    python -m appcare.migrations -x url=postgresql://... current

The database is ``APPCARE_DB_URL`` (or ``-x url=...``). ``upgrade`` and ``upgrade head``
run the start-up upgrade (schema lock, a pre-migration installation stamped first);
every other command is Alembic's own, under the same lock. ``revision`` numbers the
new revision after the newest one (``0002``, ...) unless ``--rev-id`` is given.
"""
from __future__ import annotations

import logging
import re
import sys
from typing import List, Optional

from alembic.config import CommandLine

from appcare.migrations import runner


def next_revision_id() -> str:
    numbers = [int(s.revision) for s in runner.script_directory().walk_revisions() if re.fullmatch(r"\d+", s.revision)]
    return f"{max(numbers, default=0) + 1:04d}"


def main(argv: Optional[List[str]] = None) -> int:
    cli = CommandLine(prog="python -m appcare.migrations")
    options = cli.parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not hasattr(options, "cmd"):
        cli.parser.print_help()
        return 2
    name = options.cmd[0].__name__
    if not options.quiet:  # Alembic's own command reads this from alembic.ini
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    x_url = dict(x.split("=", 1) for x in (options.x or []) if "=" in x).get("url")
    if name == "upgrade" and options.revision == "head" and not options.sql:
        from appcare import db

        engine = db.get_engine(x_url)
        with runner.locks.schema_lock(engine) as connection:
            outcome = runner.upgrade_connection(connection)
        print(f"{outcome}: {engine.url.render_as_string(hide_password=True)} at {runner.head()}")
        return 0
    if name == "revision" and not options.rev_id:
        options.rev_id = next_revision_id()
    config = runner.alembic_config()
    config.cmd_opts = options
    cli.run_cmd(config, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
