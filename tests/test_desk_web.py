"""desk.web and desk.routes: the shared request helpers and the ticket actions that
are served both as a form post and as JSON."""
from __future__ import annotations

from pathlib import Path

import pytest

from desk.routes.tickets import TICKET_ACTIONS
from desk.web import flag, safe_next


@pytest.mark.parametrize("value, expected", [
    ("1", True), (True, True), ("true", True), ("on", True), (1, True),
    ("0", False), ("", False), (None, False), (False, False), ("false", False), (0, False),
])
def test_a_checkbox_or_json_boolean(value, expected) -> None:
    assert flag(value) is expected


@pytest.mark.parametrize("value, expected", [
    ("/tickets/3?msg=sent", "/tickets/3?msg=sent"), ("//evil.example/x", "/"), ("https://evil.example", "/"),
    ("/\\evil.example", "/"), ("/login?next=/", "/"), (None, "/"), ("", "/"),
])
def test_only_local_paths_after_login(value, expected) -> None:
    assert safe_next(value) == expected


def test_every_ticket_action_has_a_form_and_a_json_route(tmp_path: Path) -> None:
    """Who may use them is checked over HTTP for every route (tests/test_security_desk.py)."""
    from desk.app import create_app

    app = create_app(f"sqlite:///{tmp_path}/desk.db", "http://127.0.0.1:9")
    routes = {route.path: route for route in app.router.routes}
    for action in TICKET_ACTIONS:
        form = routes[f"tickets/<ticket_id:int>/{action.path}"]
        api = routes[f"api/tickets/<ticket_id:int>/{action.path}"]
        assert form.methods == api.methods == {"POST"}
