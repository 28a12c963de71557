"""The webcare integration: an outside tool replies to or closes a ticket
(``POST /api/integrations/reply|close``), signed with HMAC instead of a session.

Replay and retry protection (both required): a ``timestamp`` (Unix seconds) more than
five minutes off is refused; a ``request_id`` seen before gets the first answer again
instead of a second reply to the citizen.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

from sanic import Blueprint
from sanic.request import Request

from desk.service import DeskError
from desk.store import utcnow
from desk.web import body_of, jsonr, run
from desk.webhooks import SIGNATURE_HEADER, claim_stale_after, inbound_problem, verify

bp = Blueprint("desk_integrations")


async def integration(request: Request, action: str):
    ctx = request.app.ctx
    body = request.body or b""
    if not verify(ctx.settings.webhook_secret, body, request.headers.get(SIGNATURE_HEADER)):
        await run(ctx.store.audit, "integration", "integration_rejected", None, {"path": request.path})
        return jsonr({"error": "ongeldige of ontbrekende handtekening"}, status=401)
    data = body_of(request)
    problem = inbound_problem(data)
    if problem is not None:
        await run(ctx.store.audit, "integration", "integration_rejected", None,
                  {"path": request.path, "reason": problem[1]["code"], "field": problem[1].get("field")})
        return jsonr(problem[1], status=problem[0])
    request_id = str(data["request_id"]).strip()
    earlier = await run(ctx.store.claim_request, request_id, action, utcnow() - claim_stale_after(ctx.settings))
    if earlier is not None:
        if earlier["status"] is None:
            return jsonr({"error": "dit verzoek wordt al verwerkt", "code": "in_progress"}, status=409)
        return jsonr(dict(earlier["response"] or {}, duplicate=True), status=earlier["status"])
    try:
        status, answer = await integration_action(ctx, action, data)
    except DeskError:
        await run(ctx.store.finish_request, request_id, 500, {})  # not done: the same id may be tried again
        raise
    await run(ctx.store.finish_request, request_id, status, answer)
    return jsonr(answer, status=status)


async def integration_action(ctx: Any, action: str, data: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
    agent = str(data.get("agent") or "").strip()[:64]
    actor = f"integration:{agent}" if agent else "integration"
    ticket_id = await run(resolve_ticket, ctx.handoff, data)
    if action == "reply":
        result = await run(ctx.service.reply, ticket_id, str(data.get("text") or ""), None, actor=actor)
        return (200 if result["ok"] else 502), dict(result, ticket_id=ticket_id)
    result = await run(ctx.service.close, ticket_id, str(data.get("outcome") or ""), None, actor=actor)
    return 200, dict(result, ticket_id=ticket_id)


def resolve_ticket(handoff: Any, data: Dict[str, Any]) -> int:
    if str(data.get("ticket_id") or "").isdigit():
        return int(data["ticket_id"])
    conversation_id = str(data.get("conversation_id") or "")
    if conversation_id:
        ticket = handoff.open_ticket_for(conversation_id)
        if ticket:
            return ticket.id
    raise DeskError(404, "not_found", "Geen open ticket gevonden (geef ticket_id of conversation_id).")


@bp.post("/api/integrations/reply")
async def api_integration_reply(request: Request):
    return await integration(request, "reply")


@bp.post("/api/integrations/close")
async def api_integration_close(request: Request):
    return await integration(request, "close")
