"""Example questions per intent (``/editor/intents``) and their JSON API."""
from __future__ import annotations

from typing import Any, Dict, List

from sanic import Blueprint
from sanic.request import Request

from desk.editor.content import EditorRefused
from desk.editor.routes.common import PERMISSION, refused
from desk.editor.service import EditorService
from desk.service import DeskError
from desk.web import body_of, form_of, jsonr, needs, render, run, user_of

bp = Blueprint("desk_editor_examples")

EXAMPLE_ACTIONS = ("add", "edit", "delete", "move")


def _texts(request: Request, data: Dict[str, Any]) -> List[str]:
    if request.form:
        return [t for t in request.form.getlist("example") or [] if t]
    value = data.get("examples") or data.get("example") or []
    return [value] if isinstance(value, str) else [str(v) for v in value]


@bp.get("/editor/intents")
@needs(PERMISSION)
async def intents_page(request: Request):
    service: EditorService = request.app.ctx.editor
    return render(request, "editor_intents.html", intents=await run(service.intents))


async def intent_render(request: Request, name: str, status: int = 200, **extra):
    service: EditorService = request.app.ctx.editor
    intent = await run(service.intent, name)
    return render(request, "editor_intent.html", status=status, intent=intent, **extra)


@bp.get("/editor/intents/<name>")
@needs(PERMISSION)
async def intent_page(request: Request, name: str):
    return await intent_render(request, name)


async def change_examples(request: Request, name: str, action: str, data: Dict[str, Any]) -> Any:
    """Add, edit, delete or move example questions of intent ``name`` (page and API)."""
    if action not in EXAMPLE_ACTIONS:
        raise DeskError(404, "not_found", "Deze pagina bestaat niet.")
    service: EditorService = request.app.ctx.editor
    return await run(service.change_examples, action, name, user_of(request), _texts(request, data),
                     str(data.get("text") or ""), str(data.get("target") or ""))


@bp.post("/editor/intents/<name>/<action>")
@needs(PERMISSION)
async def intent_change(request: Request, name: str, action: str):
    data = form_of(request)
    try:
        result = await change_examples(request, name, action, data)
    except EditorRefused as exc:
        return await intent_render(request, name, status=409 if exc.code == "conflict" else 422,
                                   problems=exc.problems, add_text=data.get("text") if action == "add" else "")
    target_label = request.app.ctx.intent_labels.get(str(data.get("target")), data.get("target"))
    done = {"add": "Voorbeeld toegevoegd.", "edit": "Voorbeeld gewijzigd.", "delete": "Verwijderd.",
            "move": f"Verplaatst naar {target_label}."}[action]
    if result.skipped:
        done += f" Al aanwezig en overgeslagen: {len(result.skipped)}."
    return await intent_render(request, name, done=done, warnings=result.warnings, diff=result.diff)


@bp.get("/api/editor/intents")
@needs(PERMISSION)
async def api_intents(request: Request):
    service: EditorService = request.app.ctx.editor
    return jsonr({"intents": await run(service.intents)})


@bp.get("/api/editor/intents/<name>")
@needs(PERMISSION)
async def api_intent(request: Request, name: str):
    service: EditorService = request.app.ctx.editor
    return jsonr(await run(service.intent, name))


@bp.post("/api/editor/intents/<name>/<action>")
@needs(PERMISSION)
async def api_intent_change(request: Request, name: str, action: str):
    try:
        result = await change_examples(request, name, action, body_of(request))
    except EditorRefused as exc:
        return refused(request, exc)
    return jsonr({"ok": True, "files": result.changed_files, "diff": result.diff, "warnings": result.warnings,
                  "skipped": result.skipped})
