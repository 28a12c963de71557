"""Request helpers shared by every desk blueprint (desk/routes/, desk/editor/routes/).

The desk's objects live on ``request.app.ctx`` (built once by ``desk.app.create_app``):
``settings``, ``store``, ``handoff``, ``auth``, ``service``, ``editor``, ``templates``.
Handlers reach them through the request, so one blueprint serves every desk app in a
process (the tests start several).
"""
from __future__ import annotations

import asyncio
import functools
import json
from typing import Any, Callable, Dict, Optional
from urllib.parse import urlencode

from sanic import response
from sanic.request import Request

from desk.auth import SESSION_COOKIE, can
from desk.service import DeskError

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

_dumps = functools.partial(json.dumps, default=str, ensure_ascii=False, separators=(",", ":"))


async def run(fn: Callable, *args, **kwargs):
    """Run a blocking store or service call in the default thread pool."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))


def jsonr(body: Any, status: int = 200) -> response.HTTPResponse:
    """JSON response with the standard library encoder (dates as strings)."""
    return response.json(body, status=status, dumps=_dumps)


def render(request: Request, name: str, status: int = 200, **context) -> response.HTTPResponse:
    """A full page: the template with the user, CSRF token, permissions and notice."""
    session = getattr(request.ctx, "session", None)
    user = session["user"] if session else None
    ctx = request.app.ctx
    html = ctx.templates.get_template(name).render(
        user=user,
        csrf_token=session["csrf_token"] if session else "",
        can=lambda permission: can(user, permission),
        notice=NOTICES.get(request.args.get("msg", "")),
        poll_ms=int(ctx.settings.poll_seconds * 1000),
        **context,
    )
    return response.html(html, status=status)


def render_fragment(request: Request, name: str, **context) -> str:
    """Part of a page for the live updates of desk.js (a logged-in request)."""
    session = request.ctx.session
    user = session["user"]
    return request.app.ctx.templates.get_template(name).render(
        user=user, csrf_token=session["csrf_token"], can=lambda p: can(user, p), **context
    )


def is_api(request: Request) -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def is_form(request: Request) -> bool:
    content_type = (request.content_type or "").lower()
    return content_type.startswith("application/x-www-form-urlencoded") or content_type.startswith(
        "multipart/form-data"
    )


def deny(request: Request, expired: bool = False) -> response.HTTPResponse:
    """Not logged in: 401 for the API, the login page (back here afterwards) for pages."""
    if is_api(request):
        return jsonr({"error": "niet ingelogd", "login": "/login"}, status=401)
    target = request.path if request.method in SAFE_METHODS else "/"
    if request.query_string and request.method in SAFE_METHODS:
        target += "?" + request.query_string
    params = {"next": target}
    if expired:
        params["msg"] = "expired"
    return response.redirect("/login?" + urlencode(params))


def forbidden(request: Request, message: str = "Je hebt geen toegang tot deze pagina.") -> response.HTTPResponse:
    if is_api(request):
        return jsonr({"error": message}, status=403)
    return render(request, "error.html", status=403, title="Geen toegang", message=message)


async def current_session(request: Request, activity: bool = True) -> Optional[Dict[str, Any]]:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await run(request.app.ctx.auth.session_for, token, activity)


def needs(permission: str):
    """Route decorator: 403 unless the logged-in user has ``permission`` (desk.auth.can)."""
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


def form_of(request: Request) -> Dict[str, Any]:
    """The posted form as a plain dict (first value of each field)."""
    return {k: request.form.get(k) for k in request.form.keys()}


def body_of(request: Request) -> Dict[str, Any]:
    """The posted fields: a form (pages) or a JSON object (API)."""
    if is_form(request):
        return form_of(request)
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise DeskError(400, "bad_json", "Ongeldige JSON.")
    if not isinstance(data, dict):
        raise DeskError(400, "bad_json", "Verwacht een JSON-object.")
    return data


def flag(value: Any) -> bool:
    """A checkbox or JSON boolean: "1" from a form, true from JSON."""
    return value is True or str(value).lower() in ("1", "true", "on")


def safe_next(value: Optional[str]) -> str:
    """Only local paths (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or value.startswith("/login"):
        return "/"
    return value


def local_time_label(moment: Any, fmt: str = "%d-%m-%Y %H:%M") -> str:
    """Jinja filter ``localtime``: a stored (UTC) moment in Amsterdam time; "–" for none."""
    if not moment:
        return "–"
    from desk.service import local

    return local(moment).strftime(fmt)
