"""The KCC desk: a Sanic 21.12 web app for staff of the klantcontactcentrum.

``create_app(db_url=None, rasa_url=None, **settings)`` builds an app (each with a
unique Sanic name, so tests can run several in one process). Pages are rendered on
the server (Jinja2, Dutch); ``/static/desk.js`` polls the JSON API for live updates.

Without a valid session every page redirects to ``/login`` and every ``/api/*``
answers 401 (the integration endpoints use an HMAC signature instead). Every POST
needs the session's CSRF token (form field ``csrf_token`` or ``X-CSRF-Token``).
"""
from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import os
import secrets
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sanic import Sanic, response
from sanic.exceptions import MethodNotSupported, NotFound, SanicException
from sanic.request import Request

from appcare.handoff_store import HandoffStore
from appcare.ops.metrics import mount_desk

from desk import report_routes, user_routes
from desk.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Auth, can, throttle_message, tokens_equal
from desk.editor import routes as editor_routes
from desk.editor.service import EditorService
from desk.rasa_client import RasaClient
from desk.service import CHANNEL_LABELS, OUTCOME_LABELS, QUEUE_SORTS, REASON_LABELS, DeskError, DeskService
from desk.settings import Settings
from desk.store import DeskStore, utcnow
from desk.webhooks import (
    SIGNATURE_HEADER,
    BackgroundWorker,
    WebhookDispatcher,
    claim_stale_after,
    inbound_problem,
    verify,
)

logger = logging.getLogger(__name__)

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
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

# Notices after a form post (codes in the query string, never free text).
NOTICES = {
    "claimed": ("ok", "Je hebt dit gesprek opgepakt."),
    "released": ("ok", "Het gesprek staat weer in de wachtrij."),
    "sent": ("ok", "Je antwoord is verstuurd."),
    "failed": ("error", "Je antwoord is niet afgeleverd. Probeer het opnieuw met de knop bij het bericht."),
    "deferred": ("warn", "WhatsApp stelt je antwoord uit: de inwoner schreef meer dan 24 uur geleden. "
                 "Die kreeg een sjabloonbericht; je antwoord volgt zodra die reageert."),
    "unknown": ("warn", "Nog niet bekend of je antwoord is aangekomen. Dat wordt vanzelf bijgewerkt bij het bericht; "
                "stuur het niet opnieuw, anders krijgt de inwoner het misschien twee keer."),
    "retry_unknown": ("warn", "We weten nog niet of dit bericht is aangekomen. "
                      "Opnieuw versturen kan pas als zeker is dat het niet is afgeleverd."),
    "noted": ("ok", "Notitie opgeslagen."),
    "closed": ("ok", "Het gesprek is gesloten; de inwoner praat weer met de assistent."),
    "forced": ("warn", "Het gesprek is gesloten zonder bericht aan de inwoner (assistent niet bereikbaar)."),
    "taken": ("error", "Dit gesprek is al opgepakt door een collega."),
    "taken_reply": ("error", "Je antwoord is niet verstuurd: een collega heeft dit gesprek opgepakt. "
                    "Overleg eerst, of vink 'Toch reageren' aan als je zeker weet dat je zelf wilt antwoorden."),
    "assigned": ("ok", "Het gesprek is toegewezen."),
    "assignee": ("error", "Kies een collega met een actief account."),
    "confirm_close": ("warn", "Het gesprek is niet gesloten. Vink 'Ja, sluiten' aan om het echt te sluiten."),
    "confirm_delete": ("warn", "Niet verwijderd. Vink 'Ja, verwijderen' aan om het standaardantwoord echt te verwijderen."),
    "not_yours": ("error", "Je kunt alleen een gesprek vrijgeven dat je zelf hebt opgepakt."),
    "closed_already": ("error", "Dit gesprek is al gesloten."),
    "close_failed": ("error", "Afsluiten is niet gelukt: de assistent is niet bereikbaar. Het gesprek staat nog open."),
    "empty": ("error", "Er was geen tekst ingevuld."),
    "too_long": ("error", "De tekst is te lang."),
    "outcome": ("error", "Kies een uitkomst om het gesprek te sluiten."),
    "saved": ("ok", "Standaardantwoord opgeslagen."),
    "deleted": ("ok", "Standaardantwoord verwijderd."),
    "logged_out": ("ok", "Je bent uitgelogd."),
    "publish_started": ("ok", "Publiceren is gestart: controleren, trainen en testen duurt een paar minuten."),
    "rollback_started": ("ok", "Terugdraaien is gestart."),
    "inbox_assigned": ("ok", "Toegevoegd als voorbeeldvraag. Publiceer om de assistent het te leren."),
    "inbox_wish": ("ok", "Gemarkeerd als wens voor een nieuw onderwerp."),
    "inbox_dismissed": ("ok", "Genegeerd."),
    "expired": ("warn", "Je sessie is verlopen. Log opnieuw in."),
}


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
    app.ctx.settings = settings
    mount_desk(app, lambda: handoff)
    app.ctx.handoff = handoff
    app.ctx.store = store
    app.ctx.auth = auth
    app.ctx.service = service
    app.ctx.dispatcher = dispatcher
    app.ctx.worker = None
    editor = EditorService(settings, store)
    app.ctx.editor = editor

    templates = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.globals["outcome_labels"] = OUTCOME_LABELS
    templates.filters["localtime"] = local_time_label
    app.ctx.templates = templates
    app.static("/static", str(HERE / "static"), name="desk_static")

    async def run(fn: Callable, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))

    def render(request: Request, name: str, status: int = 200, **context) -> response.HTTPResponse:
        session = getattr(request.ctx, "session", None)
        user = session["user"] if session else None
        notice = NOTICES.get(request.args.get("msg", ""))
        html = templates.get_template(name).render(
            user=user,
            csrf_token=session["csrf_token"] if session else "",
            can=lambda permission: can(user, permission),
            notice=notice,
            poll_ms=int(settings.poll_seconds * 1000),
            **context,
        )
        return response.html(html, status=status)

    def render_fragment(request: Request, name: str, **context) -> str:
        session = request.ctx.session
        user = session["user"]
        return templates.get_template(name).render(
            user=user, csrf_token=session["csrf_token"], can=lambda p: can(user, p), **context
        )

    def is_api(request: Request) -> bool:
        return request.path == "/api" or request.path.startswith("/api/")

    def deny(request: Request, expired: bool = False):
        if is_api(request):
            return jsonr({"error": "niet ingelogd", "login": "/login"}, status=401)
        target = request.path if request.method in SAFE_METHODS else "/"
        if request.query_string and request.method in SAFE_METHODS:
            target += "?" + request.query_string
        params = {"next": target}
        if expired:
            params["msg"] = "expired"
        return response.redirect("/login?" + urlencode(params))

    def forbidden(request: Request, message: str = "Je hebt geen toegang tot deze pagina."):
        if is_api(request):
            return jsonr({"error": message}, status=403)
        return render(request, "error.html", status=403, title="Geen toegang", message=message)

    async def current_session(request: Request, activity: bool = True):
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        return await run(auth.session_for, token, activity)

    # ------------------------------------------------------------------ guards
    @app.middleware("request")
    async def guard(request: Request):
        request.ctx.session = None
        path = request.path
        if path in ("/health", "/metrics"):
            return None  # monitoring: aggregate numbers only, no personal data
        if path.startswith("/static/") or path == "/login" or path.startswith("/api/integrations/"):
            return None
        if path == "/favicon.ico":
            return response.empty(status=204)
        poll = request.headers.get("X-Desk-Poll") == "1"
        session = await current_session(request, activity=not poll)
        if session is None:
            return deny(request, expired=bool(request.cookies.get(SESSION_COOKIE)))
        request.ctx.session = session
        if request.method not in SAFE_METHODS:
            provided = request.headers.get("X-CSRF-Token")
            if not provided and _is_form(request):
                provided = request.form.get("csrf_token")
            if not tokens_equal(provided, session["csrf_token"]):
                await run(store.audit, session["user"]["username"], "csrf_rejected", None, {"path": path})
                if is_api(request):
                    return jsonr({"error": "CSRF-token ontbreekt of klopt niet"}, status=403)
                return render(
                    request,
                    "error.html",
                    status=403,
                    title="Verzoek geweigerd",
                    message="Dit formulier is verlopen of kwam niet van de desk. Ga terug en probeer het opnieuw.",
                )
        return None

    @app.middleware("response")
    async def security_headers(request: Request, resp):
        headers = resp.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
        if not request.path.startswith("/static/"):
            headers["Cache-Control"] = "no-store"

    @app.exception(NotFound, MethodNotSupported)
    async def not_found(request: Request, exc: SanicException):
        # Routing failed before the guard ran: never tell a stranger what exists.
        if not request.path.startswith("/static/"):
            session = await current_session(request, activity=False)
            if session is None:
                return deny(request)
            request.ctx.session = session
        status = getattr(exc, "status_code", 404)
        if is_api(request):
            return jsonr({"error": "niet gevonden"}, status=status)
        return render(request, "error.html", status=status, title="Niet gevonden", message="Deze pagina bestaat niet.")

    @app.exception(DeskError)
    async def desk_error(request: Request, exc: DeskError):
        if is_api(request):
            return jsonr({"error": exc.message, "code": exc.code}, status=exc.status)
        return render(request, "error.html", status=exc.status, title="Niet gelukt", message=exc.message)

    @app.exception(Exception)
    async def unexpected(request: Request, exc: Exception):
        status = exc.status_code if isinstance(exc, SanicException) and getattr(exc, "status_code", None) else 500
        if status >= 500:
            logger.error("desk error on %s %s: %s", request.method, request.path, type(exc).__name__, exc_info=exc)
            message = "Er ging iets mis in de desk. Probeer het opnieuw; blijft het misgaan, meld het dan."
        else:
            message = "Dit verzoek kon de desk niet verwerken."
        if is_api(request):
            return jsonr({"error": message}, status=status)
        return render(request, "error.html", status=status, title="Fout", message=message)

    def needs(permission: str):
        def decorator(handler):
            @functools.wraps(handler)
            async def wrapped(request: Request, *args, **kwargs):
                if not can(request.ctx.session["user"], permission):
                    return forbidden(request)
                return await handler(request, *args, **kwargs)

            return wrapped

        return decorator

    def user_of(request: Request) -> Dict[str, Any]:
        return request.ctx.session["user"]

    def body_of(request: Request) -> Dict[str, Any]:
        if _is_form(request):
            return {k: request.form.get(k) for k in request.form.keys()}
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            raise DeskError(400, "bad_json", "Ongeldige JSON.")
        if not isinstance(data, dict):
            raise DeskError(400, "bad_json", "Verwacht een JSON-object.")
        return data

    @app.get("/favicon.ico")
    async def favicon(request: Request):
        return response.empty(status=204)

    # ------------------------------------------------------------------ login
    @app.get("/login")
    async def login_page(request: Request):
        session = await current_session(request, activity=False)
        if session:
            return response.redirect(_safe_next(request.args.get("next")))
        # Reuse the form token of this browser: a second tab (or a redirected favicon
        # request) must not invalidate the login form that is already open.
        login_csrf = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
        if not (20 <= len(login_csrf) <= 64 and login_csrf.replace("-", "").replace("_", "").isalnum()):
            login_csrf = secrets.token_urlsafe(24)
        resp = render(
            request,
            "login.html",
            login_csrf=login_csrf,
            next=_safe_next(request.args.get("next")),
            error=None,
        )
        auth.set_login_csrf_cookie(resp, login_csrf)
        return resp

    @app.post("/login")
    async def login_submit(request: Request):
        form = request.form if _is_form(request) else {}
        provided = form.get("csrf_token") if form else request.headers.get("X-CSRF-Token")
        if not tokens_equal(provided, request.cookies.get(LOGIN_CSRF_COOKIE)):
            return render(
                request,
                "error.html",
                status=403,
                title="Verzoek geweigerd",
                message="Het inlogformulier is verlopen. Open de inlogpagina opnieuw.",
            )
        username = (form.get("username") or "").strip()[:128]
        password = form.get("password") or ""
        next_url = _safe_next(form.get("next"))
        # Throttled per account and per client address, audited by desk.auth (no hard lock).
        result = await run(auth.authenticate, username, password, request.remote_addr or request.ip)
        user = result.user
        if user is None:
            login_csrf = secrets.token_urlsafe(24)
            throttled = result.reason == "throttled"
            message = throttle_message(result.retry_after) if throttled else "Gebruikersnaam of wachtwoord klopt niet."
            resp = render(
                request, "login.html", status=429 if throttled else 401, login_csrf=login_csrf, next=next_url,
                error=message, username=username,
            )
            if throttled:
                resp.headers["Retry-After"] = str(result.retry_after)
            auth.set_login_csrf_cookie(resp, login_csrf)
            return resp
        token, _csrf = await run(auth.start_session, user)
        await run(store.audit, user["username"], "login", None, {"role": user["role"]})
        if next_url == "/" and not can(user, "desk") and can(user, "edit"):
            next_url = "/editor"  # content editors start at their own pages
        resp = response.redirect(next_url)
        auth.set_session_cookie(resp, token)
        return resp

    @app.post("/logout")
    async def logout(request: Request):
        await run(auth.end_session, request.cookies.get(SESSION_COOKIE))
        await run(store.audit, user_of(request)["username"], "logout")
        resp = response.redirect("/login?msg=logged_out")
        auth.clear_session_cookie(resp)
        return resp

    def queue_params(request: Request) -> Dict[str, str]:
        return {key: request.args.get(key) for key in request.args}

    # ------------------------------------------------------------------ pages
    @app.get("/")
    async def queue_page(request: Request):
        if not can(user_of(request), "desk"):
            return render(request, "error.html", status=403, title="Geen toegang",
                          message="Je account heeft geen toegang tot de KCC-desk.",
                          link=("/editor", "Naar de redactie") if can(user_of(request), "edit") else None)
        queue = await run(service.queue, queue_params(request), user_of(request)["username"])
        choices = await run(service.queue_choices)
        return render(request, "queue.html", queue=queue, settings=settings, choices=choices,
                      reasons=REASON_LABELS, sorts=QUEUE_SORTS, channel_labels=CHANNEL_LABELS)

    @app.get("/tickets/<ticket_id:int>")
    @needs("desk")
    async def ticket_page(request: Request, ticket_id: int):
        ticket = await run(service.ticket_detail, ticket_id)
        answers = await run(service.answers_for, ticket["municipality"])
        colleagues = await run(service.assignable) if can(user_of(request), "release_any") else []
        earlier = await run(service.earlier_tickets, ticket_id)
        return render(request, "ticket.html", ticket=ticket, answers=answers, outcomes=settings.outcomes,
                      colleagues=colleagues, earlier=earlier)

    def back_to_ticket(ticket_id: int, msg: str, anchor: str = ""):
        return response.redirect(f"/tickets/{ticket_id}?msg={quote(msg)}{anchor}")

    async def form_action(request: Request, ticket_id: int, fn: Callable, ok_msg: str, *args, **kwargs):
        try:
            result = await run(fn, *args, **kwargs)
        except DeskError as exc:
            code = {"closed": "closed_already", "unknown": "retry_unknown"}.get(exc.code, exc.code)
            if code not in NOTICES or exc.status == 404:
                raise
            return back_to_ticket(ticket_id, code)
        if isinstance(result, dict) and result.get("delivery") in ("failed", "deferred", "unknown"):
            return back_to_ticket(ticket_id, result["delivery"])
        if isinstance(result, dict) and result.get("forced"):
            return back_to_ticket(ticket_id, "forced")
        if ok_msg == "closed" or ok_msg == "released":
            return response.redirect(f"/?msg={ok_msg}")
        return back_to_ticket(ticket_id, ok_msg)

    @app.post("/tickets/<ticket_id:int>/claim")
    @needs("desk")
    async def claim_form(request: Request, ticket_id: int):
        return await form_action(request, ticket_id, service.claim, "claimed", ticket_id, user_of(request))

    @app.post("/tickets/<ticket_id:int>/release")
    @needs("desk")
    async def release_form(request: Request, ticket_id: int):
        return await form_action(request, ticket_id, service.release, "released", ticket_id, user_of(request))

    @app.post("/tickets/<ticket_id:int>/reply")
    @needs("desk")
    async def reply_form(request: Request, ticket_id: int):
        text = request.form.get("text", "")
        override = request.form.get("override") == "1"
        return await form_action(
            request, ticket_id, service.reply, "sent", ticket_id, text, user_of(request), override=override
        )

    @app.post("/tickets/<ticket_id:int>/assign")
    @needs("release_any")
    async def assign_form(request: Request, ticket_id: int):
        assignee = request.form.get("assignee", "")
        return await form_action(request, ticket_id, service.assign, "assigned", ticket_id, assignee, user_of(request))

    @app.post("/tickets/<ticket_id:int>/messages/<message_id:int>/retry")
    @needs("desk")
    async def retry_form(request: Request, ticket_id: int, message_id: int):
        return await form_action(request, ticket_id, service.retry, "sent", ticket_id, message_id, user_of(request))

    @app.post("/tickets/<ticket_id:int>/note")
    @needs("desk")
    async def note_form(request: Request, ticket_id: int):
        text = request.form.get("text", "")
        return await form_action(request, ticket_id, service.note, "noted", ticket_id, text, user_of(request))

    @app.post("/tickets/<ticket_id:int>/close")
    @needs("desk")
    async def close_form(request: Request, ticket_id: int):
        outcome = request.form.get("outcome", "")
        force = request.form.get("force") == "1"
        if request.form.get("confirm") != "1":  # a real confirmation step, also without JavaScript
            return back_to_ticket(ticket_id, "confirm_close", "#close-form")
        return await form_action(
            request, ticket_id, service.close, "closed", ticket_id, outcome, user_of(request), force=force
        )

    @app.get("/answers")
    @needs("answers")
    async def answers_page(request: Request):
        answers = await run(store.list_answers)
        edit = None
        if request.args.get("edit", "").isdigit():
            edit = await run(store.get_answer, int(request.args.get("edit")))
        return render(request, "answers.html", answers=answers, edit=edit)

    @app.post("/answers")
    @needs("answers")
    async def answers_save(request: Request):
        await run(save_answer, body_of(request), user_of(request))
        return response.redirect("/answers?msg=saved")

    @app.post("/answers/<answer_id:int>/delete")
    @needs("answers")
    async def answers_delete(request: Request, answer_id: int):
        if request.form.get("confirm") != "1":  # a real confirmation step, also without JavaScript
            return response.redirect("/answers?msg=confirm_delete")
        await run(delete_answer, answer_id, user_of(request))
        return response.redirect("/answers?msg=deleted")

    @app.get("/overview")
    @needs("overview")
    async def overview_page(request: Request):
        overview = await run(service.overview)
        return render(request, "overview.html", overview=overview)

    def save_answer(data: Dict[str, Any], user: Dict[str, Any]) -> Dict[str, Any]:
        title = str(data.get("title") or "").strip()
        text = str(data.get("text") or "").strip()
        if not title or not text:
            raise DeskError(400, "empty", "Vul een titel en een tekst in.")
        if len(text) > 4000 or len(title) > 120:
            raise DeskError(400, "too_long", "De titel (120) of tekst (4000 tekens) is te lang.")
        answer_id = data.get("id")
        answer_id = int(answer_id) if str(answer_id or "").isdigit() else None
        saved = store.save_answer(title, text, user["username"], str(data.get("municipality") or "").strip() or None, answer_id)
        store.audit(user["username"], "answer_saved", None, {"answer_id": saved["id"], "title": title})
        return saved

    def delete_answer(answer_id: int, user: Dict[str, Any]) -> bool:
        if not store.delete_answer(answer_id):
            raise DeskError(404, "not_found", "Dit standaardantwoord bestaat niet.")
        store.audit(user["username"], "answer_deleted", None, {"answer_id": answer_id})
        return True

    # ------------------------------------------------------------------ JSON API
    @app.get("/api/me")
    async def api_me(request: Request):
        user = user_of(request)
        return jsonr(
            {"username": user["username"], "role": user["role"], "csrf_token": request.ctx.session["csrf_token"]}
        )

    @app.get("/api/queue")
    @needs("desk")
    async def api_queue(request: Request):
        queue = await run(service.queue, queue_params(request), user_of(request)["username"])
        if request.args.get("fragment") == "1":
            queue["html"] = render_fragment(request, "_queue_rows.html", queue=queue)
        # The sections by their ticket ids (the tickets themselves are in "tickets").
        queue["sections"] = [{"key": s["key"], "title": s["title"], "more": s["more"],
                              "ids": [t["id"] for t in s["tickets"]]} for s in queue["sections"]]
        return jsonr(queue)

    @app.get("/api/tickets/<ticket_id:int>")
    @needs("desk")
    async def api_ticket(request: Request, ticket_id: int):
        ticket = await run(service.ticket_detail, ticket_id)
        if request.args.get("fragment") == "1":
            ticket["html"] = {
                "messages": render_fragment(request, "_messages.html", ticket=ticket),
                "status": render_fragment(request, "_ticket_status.html", ticket=ticket),
            }
        return jsonr(ticket)

    @app.post("/api/tickets/<ticket_id:int>/claim")
    @needs("desk")
    async def api_claim(request: Request, ticket_id: int):
        return jsonr(await run(service.claim, ticket_id, user_of(request)))

    @app.post("/api/tickets/<ticket_id:int>/release")
    @needs("desk")
    async def api_release(request: Request, ticket_id: int):
        return jsonr(await run(service.release, ticket_id, user_of(request)))

    @app.post("/api/tickets/<ticket_id:int>/reply")
    @needs("desk")
    async def api_reply(request: Request, ticket_id: int):
        data = body_of(request)
        result = await run(
            service.reply, ticket_id, str(data.get("text") or ""), user_of(request), override=bool(data.get("override"))
        )
        return jsonr(result, status=200 if result["ok"] else 502)

    @app.post("/api/tickets/<ticket_id:int>/assign")
    @needs("release_any")
    async def api_assign(request: Request, ticket_id: int):
        data = body_of(request)
        return jsonr(await run(service.assign, ticket_id, str(data.get("assignee") or ""), user_of(request)))

    @app.post("/api/tickets/<ticket_id:int>/messages/<message_id:int>/retry")
    @needs("desk")
    async def api_retry(request: Request, ticket_id: int, message_id: int):
        result = await run(service.retry, ticket_id, message_id, user_of(request))
        return jsonr(result, status=200 if result["ok"] else 502)

    @app.post("/api/tickets/<ticket_id:int>/note")
    @needs("desk")
    async def api_note(request: Request, ticket_id: int):
        data = body_of(request)
        return jsonr(await run(service.note, ticket_id, str(data.get("text") or ""), user_of(request)))

    @app.post("/api/tickets/<ticket_id:int>/close")
    @needs("desk")
    async def api_close(request: Request, ticket_id: int):
        data = body_of(request)
        result = await run(
            service.close, ticket_id, str(data.get("outcome") or ""), user_of(request), force=bool(data.get("force"))
        )
        return jsonr(result)

    @app.get("/api/answers")
    @needs("desk")
    async def api_answers(request: Request):
        return jsonr({"answers": await run(service.answers_for, request.args.get("municipality"))})

    @app.post("/api/answers")
    @needs("answers")
    async def api_answers_save(request: Request):
        return jsonr(await run(save_answer, body_of(request), user_of(request)))

    @app.post("/api/answers/<answer_id:int>/delete")
    @needs("answers")
    async def api_answers_delete(request: Request, answer_id: int):
        return jsonr({"ok": await run(delete_answer, answer_id, user_of(request))})

    @app.get("/api/overview")
    @needs("overview")
    async def api_overview(request: Request):
        return jsonr(await run(service.overview))

    editor_routes.register(app, editor, render=render, run=run, needs=needs, user_of=user_of, body_of=body_of,
                           jsonr=jsonr)
    user_routes.register(app, auth, render=render, run=run, needs=needs, user_of=user_of, body_of=body_of)
    report_routes.register(app, store=store, endpoints=lambda: editor.endpoints, tickets_url=settings.db_url,
                           render=render, run=run, needs=needs, user_of=user_of, overview=service.overview)

    # ------------------------------------------------------------------ webcare integration
    async def integration(request: Request, action: str):
        body = request.body or b""
        if not verify(settings.webhook_secret, body, request.headers.get(SIGNATURE_HEADER)):
            await run(store.audit, "integration", "integration_rejected", None, {"path": request.path})
            return jsonr({"error": "ongeldige of ontbrekende handtekening"}, status=401)
        data = body_of(request)
        # Replay and retry protection (both required): a "timestamp" (Unix seconds) more
        # than five minutes off is refused; a "request_id" seen before gets the first
        # answer again instead of a second reply to the citizen.
        problem = inbound_problem(data)
        if problem is not None:
            await run(store.audit, "integration", "integration_rejected", None,
                      {"path": request.path, "reason": problem[1]["code"], "field": problem[1].get("field")})
            return jsonr(problem[1], status=problem[0])
        request_id = str(data["request_id"]).strip()
        earlier = await run(store.claim_request, request_id, action, utcnow() - claim_stale_after(settings))
        if earlier is not None:
            if earlier["status"] is None:
                return jsonr({"error": "dit verzoek wordt al verwerkt", "code": "in_progress"}, status=409)
            return jsonr(dict(earlier["response"] or {}, duplicate=True), status=earlier["status"])
        try:
            status, answer = await integration_action(action, data)
        except DeskError:
            await run(store.finish_request, request_id, 500, {})  # not done: the same id may be tried again
            raise
        await run(store.finish_request, request_id, status, answer)
        return jsonr(answer, status=status)

    async def integration_action(action: str, data: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        agent = str(data.get("agent") or "").strip()[:64]
        actor = f"integration:{agent}" if agent else "integration"
        ticket_id = await run(resolve_ticket, data)
        if action == "reply":
            result = await run(service.reply, ticket_id, str(data.get("text") or ""), None, actor=actor)
            return (200 if result["ok"] else 502), dict(result, ticket_id=ticket_id)
        result = await run(service.close, ticket_id, str(data.get("outcome") or ""), None, actor=actor)
        return 200, dict(result, ticket_id=ticket_id)

    def resolve_ticket(data: Dict[str, Any]) -> int:
        if str(data.get("ticket_id") or "").isdigit():
            return int(data["ticket_id"])
        conversation_id = str(data.get("conversation_id") or "")
        if conversation_id:
            ticket = handoff.open_ticket_for(conversation_id)
            if ticket:
                return ticket.id
        raise DeskError(404, "not_found", "Geen open ticket gevonden (geef ticket_id of conversation_id).")

    @app.post("/api/integrations/reply")
    async def api_integration_reply(request: Request):
        return await integration(request, "reply")

    @app.post("/api/integrations/close")
    async def api_integration_close(request: Request):
        return await integration(request, "close")

    # ------------------------------------------------------------------ background
    @app.listener("after_server_start")
    async def start_worker(app_: Sanic, _loop):
        if settings.background_interval > 0:
            worker = BackgroundWorker(service, dispatcher, auth, settings.background_interval)
            worker.start()
            app_.ctx.worker = worker

    @app.listener("before_server_stop")
    async def stop_editor_jobs(app_: Sanic, _loop):
        editor.shutdown()

    @app.listener("before_server_stop")
    async def stop_worker(app_: Sanic, _loop):
        worker = app_.ctx.worker
        if worker is not None:
            worker.stop()
            await run(worker.join, 10)
            app_.ctx.worker = None

    return app


_dumps = functools.partial(json.dumps, default=str, ensure_ascii=False, separators=(",", ":"))


def local_time_label(moment: Any, fmt: str = "%d-%m-%Y %H:%M") -> str:
    """Jinja filter ``localtime``: a stored (UTC) moment in Amsterdam time; "–" for none."""
    if not moment:
        return "–"
    from desk.service import local

    return local(moment).strftime(fmt)


def jsonr(body: Any, status: int = 200) -> response.HTTPResponse:
    """JSON response with the standard library encoder (dates as strings)."""
    return response.json(body, status=status, dumps=_dumps)


def _is_form(request: Request) -> bool:
    content_type = (request.content_type or "").lower()
    return content_type.startswith("application/x-www-form-urlencoded") or content_type.startswith(
        "multipart/form-data"
    )


def _safe_next(value: Optional[str]) -> str:
    """Only local paths (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or value.startswith("/login"):
        return "/"
    return value
