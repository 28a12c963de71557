"""Routes of the content editors (role ``editor``; coordinators may edit too), one
Sanic blueprint per part.

Pages (Dutch, server-rendered): ``/editor`` overview (home), ``/editor/facts``,
``/editor/facts/<scope>/<path>``, ``/editor/closures/<scope>`` (facts),
``/editor/intents``, ``/editor/intents/<name>`` (examples), ``/editor/inbox`` (inbox),
``/editor/publish`` (publish). JSON: ``/api/editor/...`` (same session and CSRF rules
as the rest of the desk).
"""
from __future__ import annotations

from desk.editor.content import EditorRefused
from desk.editor.routes import examples, facts, home, inbox, publish
from desk.editor.routes.common import editor_refused, template_globals

BLUEPRINTS = (home.bp, facts.bp, examples.bp, inbox.bp, publish.bp)
for _blueprint in BLUEPRINTS:  # an editor refusal reads the same on every editor page
    _blueprint.exception(EditorRefused)(editor_refused)

__all__ = ["BLUEPRINTS", "template_globals"]
