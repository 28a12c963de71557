"""The not-understood inbox (``/editor/inbox``): assign a question to an intent as an
example, mark it as a wish for a new topic, or dismiss it; grouped by likeness."""
from __future__ import annotations

import re
from typing import Any, Dict, List

from sanic import Blueprint, response
from sanic.request import Request

from desk.editor.content import EditorRefused
from desk.editor.routes.common import PERMISSION, refused
from desk.editor.service import EditorService
from desk.service import DeskError
from desk.web import body_of, form_of, jsonr, needs, render, run, user_of

bp = Blueprint("desk_editor_inbox")

INBOX_PAGE_SIZE = 25


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
