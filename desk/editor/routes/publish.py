"""Gated publish and rollback (``/editor/publish``, ``/editor/rollback``) and the job's
status for the live page."""
from __future__ import annotations

from typing import Callable

from sanic import Blueprint, response
from sanic.request import Request

from desk.editor.routes.common import PERMISSION
from desk.editor.service import EditorService
from desk.service import DeskError
from desk.web import jsonr, needs, render, run, user_of

bp = Blueprint("desk_editor_publish")


@bp.get("/editor/publish")
@needs(PERMISSION)
async def publish_page(request: Request):
    service: EditorService = request.app.ctx.editor
    overview = await run(service.overview)
    return render(request, "editor_publish.html", overview=overview, error=None)


async def start(request: Request, fn: Callable, msg: str):
    service: EditorService = request.app.ctx.editor
    try:
        await run(fn, user_of(request))
    except DeskError as exc:
        if exc.code != "busy":
            raise
        overview = await run(service.overview)
        return render(request, "editor_publish.html", status=409, overview=overview, error=exc.message)
    return response.redirect(f"/editor/publish?msg={msg}")


@bp.post("/editor/publish")
@needs(PERMISSION)
async def publish_start(request: Request):
    service: EditorService = request.app.ctx.editor
    return await start(request, service.start_publish, "publish_started")


@bp.post("/editor/rollback")
@needs(PERMISSION)
async def rollback_start(request: Request):
    service: EditorService = request.app.ctx.editor
    return await start(request, service.start_rollback, "rollback_started")


@bp.get("/api/editor/publish")
@needs(PERMISSION)
async def api_publish(request: Request):
    service: EditorService = request.app.ctx.editor
    overview = await run(service.overview)
    if request.args.get("fragment") == "1":
        session = request.ctx.session
        overview["html"] = request.app.ctx.templates.get_template("_editor_job.html").render(
            overview=overview, csrf_token=session["csrf_token"])
    return jsonr(overview)


@bp.post("/api/editor/publish")
@needs(PERMISSION)
async def api_publish_start(request: Request):
    service: EditorService = request.app.ctx.editor
    return jsonr(await run(service.start_publish, user_of(request)), status=202)


@bp.post("/api/editor/rollback")
@needs(PERMISSION)
async def api_rollback_start(request: Request):
    service: EditorService = request.app.ctx.editor
    return jsonr(await run(service.start_rollback, user_of(request)), status=202)
