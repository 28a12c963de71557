"""The desk's HTTP routes as Sanic blueprints, one module per part of the desk.
Handlers reach the desk's objects through ``request.app.ctx`` (desk/web.py)."""
from __future__ import annotations

from desk.routes import answers, integrations, login, overview, tickets, users

BLUEPRINTS = (login.bp, tickets.bp, answers.bp, overview.bp, users.bp, integrations.bp)
TEMPLATE_GLOBALS = dict(users.TEMPLATE_GLOBALS)

__all__ = ["BLUEPRINTS", "TEMPLATE_GLOBALS"]
