"""Standard answers ("snelle antwoorden") that staff paste into a reply: the page
``/answers`` for coordinators, and ``/api/answers`` for desk.js."""
from __future__ import annotations

from sanic import Blueprint, response
from sanic.request import Request

from desk.web import body_of, jsonr, needs, render, run, user_of

bp = Blueprint("desk_answers")


@bp.get("/answers")
@needs("answers")
async def answers_page(request: Request):
    store = request.app.ctx.store
    answers = await run(store.list_answers)
    edit = None
    if request.args.get("edit", "").isdigit():
        edit = await run(store.get_answer, int(request.args.get("edit")))
    return render(request, "answers.html", answers=answers, edit=edit)


@bp.post("/answers")
@needs("answers")
async def answers_save(request: Request):
    await run(request.app.ctx.service.save_answer, body_of(request), user_of(request))
    return response.redirect("/answers?msg=saved")


@bp.post("/answers/<answer_id:int>/delete")
@needs("answers")
async def answers_delete(request: Request, answer_id: int):
    if request.form.get("confirm") != "1":  # a real confirmation step, also without JavaScript
        return response.redirect("/answers?msg=confirm_delete")
    await run(request.app.ctx.service.delete_answer, answer_id, user_of(request))
    return response.redirect("/answers?msg=deleted")


@bp.get("/api/answers")
@needs("desk")
async def api_answers(request: Request):
    return jsonr({"answers": await run(request.app.ctx.service.answers_for, request.args.get("municipality"))})


@bp.post("/api/answers")
@needs("answers")
async def api_answers_save(request: Request):
    return jsonr(await run(request.app.ctx.service.save_answer, body_of(request), user_of(request)))


@bp.post("/api/answers/<answer_id:int>/delete")
@needs("answers")
async def api_answers_delete(request: Request, answer_id: int):
    return jsonr({"ok": await run(request.app.ctx.service.delete_answer, answer_id, user_of(request))})
