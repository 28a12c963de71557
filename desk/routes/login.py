"""Logging in and out (``/login``, ``/logout``). Throttling, sessions and the audit of
failed attempts live in desk.auth; this module only speaks HTTP."""
from __future__ import annotations

import secrets

from sanic import Blueprint, response
from sanic.request import Request

from desk.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, can, throttle_message, tokens_equal
from desk.web import current_session, is_form, render, run, safe_next, user_of

bp = Blueprint("desk_login")


@bp.get("/favicon.ico")
async def favicon(request: Request):
    return response.empty(status=204)


@bp.get("/login")
async def login_page(request: Request):
    session = await current_session(request, activity=False)
    if session:
        return response.redirect(safe_next(request.args.get("next")))
    # Reuse the form token of this browser: a second tab (or a redirected favicon
    # request) must not invalidate the login form that is already open.
    login_csrf = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not (20 <= len(login_csrf) <= 64 and login_csrf.replace("-", "").replace("_", "").isalnum()):
        login_csrf = secrets.token_urlsafe(24)
    resp = render(request, "login.html", login_csrf=login_csrf, next=safe_next(request.args.get("next")), error=None)
    request.app.ctx.auth.set_login_csrf_cookie(resp, login_csrf)
    return resp


@bp.post("/login")
async def login_submit(request: Request):
    auth = request.app.ctx.auth
    form = request.form if is_form(request) else {}
    provided = form.get("csrf_token") if form else request.headers.get("X-CSRF-Token")
    if not tokens_equal(provided, request.cookies.get(LOGIN_CSRF_COOKIE)):
        return render(request, "error.html", status=403, title="Verzoek geweigerd",
                      message="Het inlogformulier is verlopen. Open de inlogpagina opnieuw.")
    username = (form.get("username") or "").strip()[:128]
    password = form.get("password") or ""
    next_url = safe_next(form.get("next"))
    # Throttled per account and per client address, audited by desk.auth (no hard lock).
    result = await run(auth.authenticate, username, password, request.remote_addr or request.ip)
    user = result.user
    if user is None:
        login_csrf = secrets.token_urlsafe(24)
        throttled = result.reason == "throttled"
        message = throttle_message(result.retry_after) if throttled else "Gebruikersnaam of wachtwoord klopt niet."
        resp = render(request, "login.html", status=429 if throttled else 401, login_csrf=login_csrf, next=next_url,
                      error=message, username=username)
        if throttled:
            resp.headers["Retry-After"] = str(result.retry_after)
        auth.set_login_csrf_cookie(resp, login_csrf)
        return resp
    token, _csrf = await run(auth.start_session, user)
    await run(request.app.ctx.store.audit, user["username"], "login", None, {"role": user["role"]})
    if next_url == "/" and not can(user, "desk") and can(user, "edit"):
        next_url = "/editor"  # content editors start at their own pages
    resp = response.redirect(next_url)
    auth.set_session_cookie(resp, token)
    return resp


@bp.post("/logout")
async def logout(request: Request):
    ctx = request.app.ctx
    await run(ctx.auth.end_session, request.cookies.get(SESSION_COOKIE))
    await run(ctx.store.audit, user_of(request)["username"], "logout")
    resp = response.redirect("/login?msg=logged_out")
    ctx.auth.clear_session_cookie(resp)
    return resp
