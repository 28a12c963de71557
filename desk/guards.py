"""What every desk request passes: the login and CSRF guard, security headers and
the error pages. Installed on the app (not on a blueprint), so it also covers
requests that match no route.

Without a valid session every page redirects to ``/login`` and every ``/api/*``
answers 401 (the integration endpoints use an HMAC signature instead). Every POST
needs the session's CSRF token (form field ``csrf_token`` or ``X-CSRF-Token``).
"""
from __future__ import annotations

import logging

from sanic import Sanic, response
from sanic.exceptions import MethodNotSupported, NotFound, SanicException
from sanic.request import Request

from desk.auth import SESSION_COOKIE, tokens_equal
from desk.service import DeskError
from desk.web import SAFE_METHODS, current_session, deny, is_api, is_form, jsonr, render, run

logger = logging.getLogger(__name__)

# Without a session: monitoring (aggregate numbers only), the login page, static
# files and the signed integration endpoints.
PUBLIC_PATHS = ("/health", "/metrics", "/login")
PUBLIC_PREFIXES = ("/static/", "/api/integrations/")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


async def guard(request: Request):
    request.ctx.session = None
    path = request.path
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
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
        if not provided and is_form(request):
            provided = request.form.get("csrf_token")
        if not tokens_equal(provided, session["csrf_token"]):
            await run(request.app.ctx.store.audit, session["user"]["username"], "csrf_rejected", None, {"path": path})
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


async def security_headers(request: Request, resp):
    headers = resp.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    if not request.path.startswith("/static/"):
        headers["Cache-Control"] = "no-store"


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


async def desk_error(request: Request, exc: DeskError):
    if is_api(request):
        return jsonr({"error": exc.message, "code": exc.code}, status=exc.status)
    return render(request, "error.html", status=exc.status, title="Niet gelukt", message=exc.message)


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


def install(app: Sanic) -> None:
    app.register_middleware(guard, "request")
    app.register_middleware(security_headers, "response")
    app.exception(NotFound, MethodNotSupported)(not_found)
    app.exception(DeskError)(desk_error)
    app.exception(Exception)(unexpected)
