"""The editors' start page ``/editor``: the model that is live, open questions, recent changes."""
from __future__ import annotations

from sanic import Blueprint
from sanic.request import Request

from desk.editor.routes.common import PERMISSION
from desk.editor.service import EditorService
from desk.web import needs, render, run

bp = Blueprint("desk_editor_home")


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
