"""Moved to :mod:`desk.editor.store`. This name stays only for appcare/migrations/models.py
and tests/test_migrations.py, which are being changed on another branch: remove this file
once they import ``desk.editor.store``."""
from desk.editor.store import Base, EditorStore  # noqa: F401 - the names those two files use
