"""The queue and the handed-over conversations ("tickets").

Pages: ``/`` (the queue) and ``/tickets/<id>``. Every action on a ticket (claim,
release, reply, assign, retry, note, close) is declared once in ``TICKET_ACTIONS``
and served twice: as a form post on ``/tickets/<id>/...`` that returns to the ticket
page with a notice, and as JSON on ``/api/tickets/<id>/...`` for desk.js.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional
from urllib.parse import quote

from sanic import Blueprint, response
from sanic.request import Request

from desk.auth import can
from desk.service import CHANNEL_LABELS, QUEUE_SORTS, REASON_LABELS, DeskError, DeskService
from desk.web import NOTICES, body_of, flag, jsonr, needs, render, render_fragment, run, user_of

bp = Blueprint("desk_tickets")

Fields = Dict[str, Any]
User = Dict[str, Any]


@dataclass(frozen=True)
class TicketAction:
    """One thing staff can do with a ticket, for both the form and the JSON route."""

    path: str  # after /tickets/<ticket_id:int>/
    permission: str
    done: str  # notice code (desk.web.NOTICES) after a successful form post
    call: Callable[..., Any]  # (service, ticket_id, fields, user, **route params) -> result
    delivers: bool = False  # the result says whether WhatsApp took the message: JSON 502 when not
    confirm: Optional[str] = None  # form field that must be "1" (a confirmation step without JavaScript)


TICKET_ACTIONS = (
    TicketAction("claim", "desk", "claimed", lambda s, t, f, u: s.claim(t, u)),
    TicketAction("release", "desk", "released", lambda s, t, f, u: s.release(t, u)),
    TicketAction("reply", "desk", "sent", delivers=True,
                 call=lambda s, t, f, u: s.reply(t, str(f.get("text") or ""), u, override=flag(f.get("override")))),
    TicketAction("assign", "release_any", "assigned",
                 lambda s, t, f, u: s.assign(t, str(f.get("assignee") or ""), u)),
    TicketAction("messages/<message_id:int>/retry", "desk", "sent", delivers=True,
                 call=lambda s, t, f, u, message_id: s.retry(t, message_id, u)),
    TicketAction("note", "desk", "noted", lambda s, t, f, u: s.note(t, str(f.get("text") or ""), u)),
    TicketAction("close", "desk", "closed", confirm="confirm",
                 call=lambda s, t, f, u: s.close(t, str(f.get("outcome") or ""), u, force=flag(f.get("force")))),
)


def back_to_ticket(ticket_id: int, msg: str, anchor: str = ""):
    return response.redirect(f"/tickets/{ticket_id}?msg={quote(msg)}{anchor}")


def form_route(action: TicketAction):
    async def handler(request: Request, ticket_id: int, **params):
        fields = body_of(request)
        if action.confirm and fields.get(action.confirm) != "1":
            return back_to_ticket(ticket_id, f"confirm_{action.path}", f"#{action.path}-form")
        service: DeskService = request.app.ctx.service
        try:
            result = await run(action.call, service, ticket_id, fields, user_of(request), **params)
        except DeskError as exc:
            code = {"closed": "closed_already", "unknown": "retry_unknown"}.get(exc.code, exc.code)
            if code not in NOTICES or exc.status == 404:
                raise
            return back_to_ticket(ticket_id, code)
        if isinstance(result, dict) and result.get("delivery") in ("failed", "deferred", "unknown"):
            return back_to_ticket(ticket_id, result["delivery"])
        if isinstance(result, dict) and result.get("forced"):
            return back_to_ticket(ticket_id, "forced")
        if action.done in ("closed", "released"):
            return response.redirect(f"/?msg={action.done}")
        return back_to_ticket(ticket_id, action.done)

    return needs(action.permission)(handler)


def api_route(action: TicketAction):
    async def handler(request: Request, ticket_id: int, **params):
        service: DeskService = request.app.ctx.service
        result = await run(action.call, service, ticket_id, body_of(request), user_of(request), **params)
        return jsonr(result, status=502 if action.delivers and not result["ok"] else 200)

    return needs(action.permission)(handler)


for _action in TICKET_ACTIONS:
    _name = _action.path.rsplit("/", 1)[-1]
    bp.add_route(form_route(_action), f"/tickets/<ticket_id:int>/{_action.path}", methods=["POST"],
                 name=f"{_name}_form")
    bp.add_route(api_route(_action), f"/api/tickets/<ticket_id:int>/{_action.path}", methods=["POST"],
                 name=f"api_{_name}")


def queue_params(request: Request) -> Dict[str, str]:
    return {key: request.args.get(key) for key in request.args}


@bp.get("/")
async def queue_page(request: Request):
    ctx = request.app.ctx
    user = user_of(request)
    if not can(user, "desk"):
        return render(request, "error.html", status=403, title="Geen toegang",
                      message="Je account heeft geen toegang tot de KCC-desk.",
                      link=("/editor", "Naar de redactie") if can(user, "edit") else None)
    queue = await run(ctx.service.queue, queue_params(request), user["username"])
    choices = await run(ctx.service.queue_choices)
    return render(request, "queue.html", queue=queue, settings=ctx.settings, choices=choices,
                  reasons=REASON_LABELS, sorts=QUEUE_SORTS, channel_labels=CHANNEL_LABELS)


@bp.get("/tickets/<ticket_id:int>")
@needs("desk")
async def ticket_page(request: Request, ticket_id: int):
    ctx = request.app.ctx
    service: DeskService = ctx.service
    ticket = await run(service.ticket_detail, ticket_id)
    answers = await run(service.answers_for, ticket["municipality"])
    colleagues = await run(service.assignable) if can(user_of(request), "release_any") else []
    earlier = await run(service.earlier_tickets, ticket_id)
    return render(request, "ticket.html", ticket=ticket, answers=answers, outcomes=ctx.settings.outcomes,
                  colleagues=colleagues, earlier=earlier)


@bp.get("/api/me")
async def api_me(request: Request):
    user = user_of(request)
    return jsonr({"username": user["username"], "role": user["role"], "csrf_token": request.ctx.session["csrf_token"]})


@bp.get("/api/queue")
@needs("desk")
async def api_queue(request: Request):
    queue = await run(request.app.ctx.service.queue, queue_params(request), user_of(request)["username"])
    if request.args.get("fragment") == "1":
        queue["html"] = render_fragment(request, "_queue_rows.html", queue=queue)
    # The sections by their ticket ids (the tickets themselves are in "tickets").
    queue["sections"] = [{"key": s["key"], "title": s["title"], "more": s["more"],
                          "ids": [t["id"] for t in s["tickets"]]} for s in queue["sections"]]
    return jsonr(queue)


@bp.get("/api/tickets/<ticket_id:int>")
@needs("desk")
async def api_ticket(request: Request, ticket_id: int):
    ticket = await run(request.app.ctx.service.ticket_detail, ticket_id)
    if request.args.get("fragment") == "1":
        ticket["html"] = {
            "messages": render_fragment(request, "_messages.html", ticket=ticket),
            "status": render_fragment(request, "_ticket_status.html", ticket=ticket),
        }
    return jsonr(ticket)
