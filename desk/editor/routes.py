"""Routes of the content editors (role ``editor``; coordinators may edit too).

Pages (Dutch, server-rendered): ``/editor`` overview, ``/editor/facts``,
``/editor/facts/<scope>/<path>``, ``/editor/closures/<scope>``, ``/editor/intents``,
``/editor/intents/<name>``, ``/editor/inbox``, ``/editor/publish``.
JSON: ``/api/editor/...`` (same session and CSRF rules as the rest of the desk).
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional

from sanic import Blueprint, response
from sanic.request import Request

from appcare.clock import WEEKDAY_NAMES
from desk.editor.content import KIND_LABELS, NATIONAL, EditorRefused
from desk.editor.inbox import REASON_LABELS
from desk.editor.messages import explain_all, fact_changes, name_intents
from desk.editor.nlu import strip_placeholders
from desk.editor.service import EditorService
from desk.service import DeskError
from desk.web import body_of, form_of, jsonr, needs, render, run, user_of

PERMISSION = "edit"
WEEKDAYS = WEEKDAY_NAMES
JOB_STATUS = {
    "running": "bezig",
    "published": "gepubliceerd",
    "refused": "geweigerd",
    "failed": "mislukt",
    "rolled_back": "teruggedraaid",
}


def _texts(request: Request, data: Dict[str, Any]) -> List[str]:
    if request.form:
        return [t for t in request.form.getlist("example") or [] if t]
    value = data.get("examples") or data.get("example") or []
    return [value] if isinstance(value, str) else [str(v) for v in value]


INBOX_PAGE_SIZE = 25
EXAMPLE_ACTIONS = ("add", "edit", "delete", "move")


def _same_question(text: str) -> str:
    """Text for spotting the same question asked again (case, punctuation and spacing ignored)."""
    return " ".join(re.sub(r"[^\w\[\]]+", " ", text.lower()).split())


def inbox_groups(items: List[Dict[str, Any]], page: int, per_page: int = INBOX_PAGE_SIZE) -> Dict[str, Any]:
    """The inbox as groups of similar questions (same intent the assistant guessed), one page at a time.

    The same question asked several times becomes one row (``ids`` holds all of them).
    Groups are ordered by size, the biggest first; the page counts rows, not items."""
    by_intent: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for item in items:
        rows = by_intent.setdefault(item.get("intent") or "", {})
        row = rows.get(_same_question(item["text"]))
        if row is None:
            rows[_same_question(item["text"])] = dict(item, ids=[item["id"]], times=1)
        else:
            row["ids"].append(item["id"])
            row["times"] += 1
    ordered = sorted(by_intent.items(), key=lambda kv: (-sum(r["times"] for r in kv[1].values()), kv[0]))
    flat = []
    for intent, rows in ordered:
        size = sum(r["times"] for r in rows.values())
        for row in sorted(rows.values(), key=lambda r: (-r["times"], _same_question(r["text"]))):
            flat.append((intent, size, row))
    pages = max(1, -(-len(flat) // per_page))
    page = min(max(1, page), pages)
    groups: List[Dict[str, Any]] = []
    for intent, size, row in flat[(page - 1) * per_page:page * per_page]:
        if not groups or groups[-1]["intent"] != intent:
            groups.append({"intent": intent, "size": size, "rows": []})
        groups[-1]["rows"].append(row)
    return {"groups": groups, "page": page, "pages": pages, "rows": len(flat), "items": len(items)}


bp = Blueprint("desk_editor")


def template_globals(labels: Dict[str, str]) -> Dict[str, Any]:
    """What the editor's templates use besides the page context (``labels``: the
    Dutch intent names, desk/intent_labels.yml)."""
    return {
        "kind_labels": KIND_LABELS, "weekdays": WEEKDAYS, "reason_labels": REASON_LABELS,
        "job_status": JOB_STATUS, "national": NATIONAL, "strip_placeholders": strip_placeholders,
        "fact_changes": fact_changes,
        "intent_label": lambda name: labels.get(name or "", name or "–"),
        "explain_all": lambda problems: explain_all(problems, labels),
        "name_intents": lambda text: name_intents(text, labels),
    }


@bp.exception(EditorRefused)
async def editor_refused(request: Request, exc: EditorRefused):
    status = {"not_found": 404, "conflict": 409}.get(exc.code, 422)
    if request.path.startswith("/api/"):
        return jsonr({"error": "Niet gelukt", "code": exc.code, "problems": exc.problems}, status=status)
    return render(request, "error.html", status=status, title="Niet gelukt", message=" ".join(exc.problems),
                  link=("/editor", "Terug naar de redactie"))


def refused(request: Request, exc: EditorRefused, status: int = 422):
    return jsonr({"error": "Niet opgeslagen", "code": exc.code, "problems": exc.problems},
                 status=409 if exc.code == "conflict" else status)


# ------------------------------------------------------------------ overview
@bp.get("/editor")
@needs(PERMISSION)
async def editor_home(request: Request):
    service: EditorService = request.app.ctx.editor
    overview = await run(service.overview)
    await run(service.sync_inbox)
    counts = await run(service.editor.inbox_counts, 1)
    open_items = len(await run(service.editor.inbox, "new", 1000))
    changes = await run(service.recent_changes)
    return render(request, "editor_home.html", overview=overview, open_items=open_items, counts=counts,
                  changes=changes)


# ------------------------------------------------------------------ facts
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


# ------------------------------------------------------------------ examples
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


# ------------------------------------------------------------------ inbox
@bp.get("/editor/inbox")
@needs(PERMISSION)
async def inbox_page(request: Request):
    service: EditorService = request.app.ctx.editor
    status = request.args.get("status") or "new"
    if status not in ("new", "assigned", "wish", "dismissed"):
        status = "new"
    sync = await run(service.sync_inbox)
    try:
        page = int(request.args.get("page") or 1)
    except ValueError:
        page = 1
    return await inbox_render(request, status, page, sync)


async def inbox_render(request: Request, status: str, page: int, sync: Dict[str, Any], http_status: int = 200,
                       **extra):
    service: EditorService = request.app.ctx.editor
    items = await run(service.editor.inbox, status, 5000)
    paged = inbox_groups(items, page)
    if status == "new":
        for group in paged["groups"]:
            group["rows"] = await run(service.with_suggestions, group["rows"])
    return render(request, "editor_inbox.html", status=http_status, tab=status, sync=sync, **paged,
                  counts=await run(service.editor.inbox_counts, 12),
                  intents=[i["name"] for i in await run(service.intents)], **extra)


@bp.post("/editor/inbox/bulk")
@needs(PERMISSION)
async def inbox_bulk(request: Request):
    """Several questions at once: assign to one intent, or mark as wish / ignore."""
    service: EditorService = request.app.ctx.editor
    form = request.form
    ids: List[int] = []
    for value in form.getlist("item") or []:
        ids.extend(int(part) for part in str(value).split(",") if part.strip().isdigit())
    action = form.get("action") or "assign"
    try:
        page = int(form.get("page") or 1)
    except ValueError:
        page = 1
    try:
        if action == "assign":
            texts = {}
            for key in form.keys():
                if key.startswith("text_") and key[5:].isdigit():
                    texts[int(key[5:])] = form.get(key) or ""
            await run(service.assign_many, ids, str(form.get("intent") or ""), texts, user_of(request))
            msg = "inbox_assigned"
        elif action in ("wish", "dismiss"):
            if not ids:
                raise EditorRefused(["Vink eerst een of meer vragen aan."], code="empty")
            for item_id in ids:
                try:
                    await run(service.mark, item_id, "wish" if action == "wish" else "dismissed",
                              user_of(request))
                except DeskError as exc:
                    if exc.code != "handled":
                        raise
            msg = "inbox_wish" if action == "wish" else "inbox_dismissed"
        else:
            raise DeskError(404, "not_found", "Deze pagina bestaat niet.")
    except EditorRefused as exc:
        return await inbox_render(request, "new", page, {"ok": True}, http_status=422, problems=exc.problems)
    return response.redirect(f"/editor/inbox?page={page}&msg={msg}")


async def decide(request: Request, item_id: int, action: str, data: Dict[str, Any]) -> Dict[str, Any]:
    """One not-understood question: ``assign`` it to an intent as an example, mark it as a
    ``wish`` for a new topic, or ``dismiss`` it (page and API)."""
    service: EditorService = request.app.ctx.editor
    if action == "assign":
        return await run(service.assign, item_id, str(data.get("intent") or ""), str(data.get("text") or ""),
                         user_of(request))
    if action in ("wish", "dismiss"):
        await run(service.mark, item_id, "wish" if action == "wish" else "dismissed", user_of(request))
        return {}
    raise DeskError(404, "not_found", "Deze pagina bestaat niet.")


@bp.post("/editor/inbox/<item_id:int>/<action>")
@needs(PERMISSION)
async def inbox_action(request: Request, item_id: int, action: str):
    try:
        await decide(request, item_id, action, form_of(request))
    except EditorRefused as exc:
        return await inbox_render(request, "new", 1, {"ok": True}, http_status=422, problems=exc.problems,
                                  problem_item=item_id)
    return response.redirect("/editor/inbox?msg=" + {"assign": "inbox_assigned", "wish": "inbox_wish",
                                                     "dismiss": "inbox_dismissed"}[action])


@bp.get("/api/editor/inbox")
@needs(PERMISSION)
async def api_inbox(request: Request):
    service: EditorService = request.app.ctx.editor
    sync = await run(service.sync_inbox)
    status = request.args.get("status") or "new"
    items = await run(service.editor.inbox, status, 500)
    if status == "new":
        items = await run(service.with_suggestions, items)
    return jsonr({"sync": sync, "items": items, "weeks": await run(service.editor.inbox_counts, 12)})


@bp.post("/api/editor/inbox/<item_id:int>/<action>")
@needs(PERMISSION)
async def api_inbox_action(request: Request, item_id: int, action: str):
    try:
        result = await decide(request, item_id, action, body_of(request))
    except EditorRefused as exc:
        return refused(request, exc)
    return jsonr(dict(result, ok=True))


# ------------------------------------------------------------------ publish
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
