"""Facts and closures of a municipality as forms (``/editor/facts``, ``/editor/closures``)
and their JSON API (``/api/editor/facts``)."""
from __future__ import annotations

from typing import Any, Dict, Optional

from sanic import Blueprint
from sanic.request import Request

from desk.editor.content import EditorRefused
from desk.editor.routes.common import PERMISSION, WEEKDAYS, refused
from desk.editor.service import EditorService
from desk.service import DeskError
from desk.web import body_of, form_of, jsonr, needs, render, run, user_of

bp = Blueprint("desk_editor_facts")


async def facts_context(service: EditorService, scope: str) -> Dict[str, Any]:
    facts = await run(service.content.facts, scope)
    return {
        "scope": scope,
        "scopes": service.scopes(),
        "facts": facts,
        "exceptions": await run(service.content.exceptions, scope),
        "desks": await run(service.content.desks, scope),
        "version": await run(service.content.version, scope),
        "unverified": sum(1 for f in facts if not f.verified and not f.missing),
    }


@bp.get("/editor/facts")
@needs(PERMISSION)
async def facts_page(request: Request):
    service: EditorService = request.app.ctx.editor
    scopes = service.scopes()
    scope = service.check_scope(request.args.get("scope") or scopes[0]["id"])
    try:
        context = await facts_context(service, scope)
    except EditorRefused as exc:
        return render(request, "editor_facts.html", status=500, scope=scope, scopes=scopes, facts=[],
                      broken=exc.problems, exceptions=[], desks=[], version="", unverified=0)
    return render(request, "editor_facts.html", **context)


def fact_page_scope(request: Request, scope: str) -> str:
    service: EditorService = request.app.ctx.editor
    page = request.args.get("page") or (request.form.get("page") if request.form else None) or scope
    return page if page in service.content.scopes() else scope


@bp.get("/editor/facts/<scope>/<path>")
@needs(PERMISSION)
async def fact_page(request: Request, scope: str, path: str):
    service: EditorService = request.app.ctx.editor
    service.check_scope(scope)
    page = fact_page_scope(request, scope)
    try:
        fact = await run(service.content.fact, scope, path, page)
    except EditorRefused as exc:
        raise DeskError(404, "not_found", exc.problems[0])
    return render(request, "editor_fact.html", fact=fact, page=page, form=fact.form,
                  version=await run(service.content.version, scope), result=None, problems=None)


@bp.post("/editor/facts/<scope>/<path>")
@needs(PERMISSION)
async def fact_save(request: Request, scope: str, path: str):
    service: EditorService = request.app.ctx.editor
    service.check_scope(scope)
    page = fact_page_scope(request, scope)
    fact = await run(service.content.fact, scope, path, page)
    data = form_of(request)
    preview = data.get("action") == "preview"
    form = dict(data)
    if fact.kind == "hours":
        form["days"] = {day: data.get(f"day_{day}", "") for day in WEEKDAYS}
    form["verified"] = bool(data.get("verified"))
    try:
        result = await run(service.save_fact, scope, path, fact.kind, data, user_of(request), preview)
    except EditorRefused as exc:
        return render(request, "editor_fact.html", status=409 if exc.code == "conflict" else 422, fact=fact,
                      page=page, form=form, version=data.get("version") or "", result=None, problems=exc.problems)
    fresh = await run(service.content.fact, scope, path, page)
    return render(request, "editor_fact.html", fact=fresh, page=page,
                  form=form if preview else fresh.form, version=data.get("version") if preview else result.version,
                  result=result, problems=None, preview=preview)


@bp.post("/editor/closures/<scope>")
@needs(PERMISSION)
async def closure_add(request: Request, scope: str):
    return await closure_change(request, scope, None)


@bp.post("/editor/closures/<scope>/<index:int>")
@needs(PERMISSION)
async def closure_edit(request: Request, scope: str, index: int):
    return await closure_change(request, scope, index)


async def closure_change(request: Request, scope: str, index: Optional[int]):
    service: EditorService = request.app.ctx.editor
    service.check_scope(scope)
    data = form_of(request)
    delete = data.get("action") == "delete"
    problems, result = None, None
    try:
        result = await run(service.save_exception, scope, data, user_of(request), index, delete)
    except EditorRefused as exc:
        problems = exc.problems
    context = await facts_context(service, scope)
    return render(request, "editor_facts.html", status=422 if problems else 200, closure_result=result,
                  closure_problems=problems, closure_form=data if problems else None, **context)

# JSON


@bp.get("/api/editor/facts")
@needs(PERMISSION)
async def api_facts(request: Request):
    service: EditorService = request.app.ctx.editor
    scope = service.check_scope(request.args.get("scope") or service.scopes()[0]["id"])
    facts = await run(service.content.facts, scope)
    return jsonr({
        "scope": scope, "version": await run(service.content.version, scope),
        "facts": [dict(vars(f), key=f.key) for f in facts],
        "exceptions": await run(service.content.exceptions, scope),
    })


@bp.post("/api/editor/facts/<scope>/<path>")
@needs(PERMISSION)
async def api_fact_save(request: Request, scope: str, path: str):
    service: EditorService = request.app.ctx.editor
    service.check_scope(scope)
    data = body_of(request)
    page = str(data.get("page") or scope)
    try:
        fact = await run(service.content.fact, scope, path, page if page in service.content.scopes() else scope)
        result = await run(service.save_fact, scope, path, fact.kind, data, user_of(request), bool(data.get("preview")))
    except EditorRefused as exc:
        return refused(request, exc)
    return jsonr({"ok": True, "written": result.written, "file": result.file, "diff": result.diff,
                  "version": result.version})
