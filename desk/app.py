"""The KCC desk: a Sanic 21.12 web app for staff of the klantcontactcentrum.

``create_app(db_url=None, rasa_url=None, **settings)`` builds an app (each with a
unique Sanic name, so tests can run several in one process): the stores and services
on ``app.ctx``, the guards (desk/guards.py: login, CSRF, headers, error pages) and the
routes as blueprints (desk/routes/, desk/editor/routes/). Pages are rendered on the
server (Jinja2, Dutch); ``/static/desk.js`` polls the JSON API for live updates.
"""
from __future__ import annotations

import itertools
import os
import uuid
from pathlib import Path
from typing import Any, Dict, Optional

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sanic import Sanic

from appcare.handoff_store import HandoffStore
from appcare.ops.metrics import mount_desk
from appcare.staff_labels import intent_labels

from desk import guards
from desk.auth import Auth
from desk.editor import routes as editor_routes
from desk.editor.service import EditorService
from desk.rasa_client import RasaClient
from desk.routes import BLUEPRINTS, TEMPLATE_GLOBALS
from desk.service import OUTCOME_LABELS, DeskService
from desk.settings import Settings
from desk.store import DeskStore
from desk.web import local_time_label, run
from desk.webhooks import BackgroundWorker, WebhookDispatcher

HERE = Path(__file__).resolve().parent


def _keep_touchup_originals() -> bool:
    """Sanic 21.12 rewrites a few class methods ("touchup") when an app starts, and a
    second app in the same process then fails to start. Keeping the original methods
    (Sanic's own test-mode mechanism) lets every desk app start from them."""
    from sanic.touchup import TouchUp

    complete = True
    for target, name in list(TouchUp._registry):  # noqa: SLF001
        if not hasattr(target, f"_{name}"):
            if getattr(target, "__touched__", False):
                complete = False
                continue
            setattr(target, f"_{name}", getattr(target, name))
    return complete


_TOUCHUP_ORIGINALS = _keep_touchup_originals()


class DeskSanic(Sanic):
    """Sanic app whose touchup starts from the kept originals (see above)."""

    test_mode = _TOUCHUP_ORIGINALS


_counter = itertools.count(1)


def create_app(db_url: Optional[str] = None, rasa_url: Optional[str] = None, **overrides: Any) -> Sanic:
    settings = Settings.from_env(db_url=db_url, rasa_url=rasa_url, **overrides)
    settings.check_secrets()  # production: refuses missing or weak secrets (appcare.secrets)
    handoff = HandoffStore(settings.db_url)
    store = DeskStore(settings.db_url)
    auth = Auth(store, settings)
    rasa = RasaClient(settings.rasa_url, settings.rasa_jwt_secret, settings.rasa_timeout)
    service = DeskService(settings, handoff, store, rasa)
    dispatcher = WebhookDispatcher(settings, handoff, store)
    if dispatcher.enabled:
        dispatcher.init_cursors()

    app = DeskSanic(f"appcare_desk_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}")
    app.config.REQUEST_MAX_SIZE = 1_000_000
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.MOTD = False
    app.config.PROXIES_COUNT = settings.proxies_count  # X-Forwarded-For of a reverse proxy (login throttling)
    # A staff reply waits for Rasa up to rasa_timeout (+ 5 s connect): answer it, don't cut it off.
    app.config.RESPONSE_TIMEOUT = max(60.0, settings.rasa_timeout + 30.0)
    # What the handlers of the blueprints reach through request.app.ctx (desk/web.py).
    app.ctx.settings = settings
    app.ctx.handoff = handoff
    app.ctx.store = store
    app.ctx.auth = auth
    app.ctx.service = service
    app.ctx.dispatcher = dispatcher
    app.ctx.worker = None
    app.ctx.editor = EditorService(settings, store)
    app.ctx.intent_labels = intent_labels()
    app.ctx.templates = templates(app.ctx.intent_labels)

    mount_desk(app, lambda: handoff)  # /health and /metrics
    app.static("/static", str(HERE / "static"), name="desk_static")
    guards.install(app)
    for blueprint in (*BLUEPRINTS, *editor_routes.BLUEPRINTS):
        app.blueprint(blueprint)
    app.register_listener(start_worker, "after_server_start")
    app.register_listener(stop_editor_jobs, "before_server_stop")
    app.register_listener(stop_worker, "before_server_stop")
    return app


def templates(labels: Dict[str, str]) -> Environment:
    """The Jinja environment of the pages (desk/templates/, Dutch)."""
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["outcome_labels"] = OUTCOME_LABELS
    env.globals.update(TEMPLATE_GLOBALS)
    env.globals.update(editor_routes.template_globals(labels))
    env.filters["localtime"] = local_time_label
    return env


async def start_worker(app: Sanic, _loop) -> None:
    settings = app.ctx.settings
    if settings.background_interval > 0:
        worker = BackgroundWorker(app.ctx.service, app.ctx.dispatcher, app.ctx.auth, settings.background_interval)
        worker.start()
        app.ctx.worker = worker


async def stop_editor_jobs(app: Sanic, _loop) -> None:
    app.ctx.editor.shutdown()


async def stop_worker(app: Sanic, _loop) -> None:
    worker = app.ctx.worker
    if worker is not None:
        worker.stop()
        await run(worker.join, 10)
        app.ctx.worker = None
