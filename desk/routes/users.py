"""Accounts page for coordinators (``/users``): add staff, coordinators and content
editors, set a new password, switch an account off or on. The same actions as
``python -m desk create-user|set-password``, for coordinators without a shell on the
server. Every action is audited; switching an account off ends its sessions.
"""
from __future__ import annotations

from typing import Any, Dict

from sanic import Blueprint, response
from sanic.request import Request

from desk.auth import check_password_policy, hash_password
from desk.service import DeskError
from desk.web import body_of, needs, render, run, user_of

PERMISSION = "users"
ROLE_LABELS = {"staff": "medewerker", "coordinator": "coördinator", "editor": "redacteur"}
TEMPLATE_GLOBALS = {"role_labels": ROLE_LABELS}

bp = Blueprint("desk_users")


async def page(request: Request, status: int = 200, **extra: Any):
    users = await run(request.app.ctx.store.list_users)
    return render(request, "users.html", status=status, users=users, **extra)


def account(store: Any, username: str) -> Dict[str, Any]:
    user = next((u for u in store.list_users() if u["username"] == username), None)
    if user is None:
        raise DeskError(404, "not_found", "Dit account bestaat niet.")
    return user


@bp.get("/users")
@needs(PERMISSION)
async def users_page(request: Request):
    return await page(request)


@bp.post("/users")
@needs(PERMISSION)
async def user_create(request: Request):
    auth = request.app.ctx.auth
    data = body_of(request)
    username, role = str(data.get("username") or "").strip(), str(data.get("role") or "")
    try:
        check_password_policy(str(data.get("password") or ""))
        user = await run(auth.create_user, username, str(data.get("password") or ""), role)
    except ValueError as exc:
        return await page(request, status=422, problem=f"Niet aangemaakt: {exc}.", form=data)
    await run(auth.store.audit, user_of(request)["username"], "user_created", None,
              {"username": user["username"], "role": user["role"]})
    return await page(request, done=f"Account {user['username']} ({ROLE_LABELS[user['role']]}) aangemaakt. "
                                     "Geef het wachtwoord persoonlijk door.")


@bp.post("/users/<username>/password")
@needs(PERMISSION)
async def user_password(request: Request, username: str):
    auth = request.app.ctx.auth
    await run(account, auth.store, username)
    password = str(body_of(request).get("password") or "")
    try:
        check_password_policy(password)
    except ValueError as exc:
        return await page(request, status=422, problem=f"Niet gewijzigd: {exc}.")
    await run(auth.store.set_password, username, hash_password(password, auth.settings.bcrypt_rounds))
    await run(auth.store.audit, user_of(request)["username"], "password_set", None, {"username": username})
    return await page(request, done=f"Nieuw wachtwoord voor {username} ingesteld; open sessies zijn beëindigd.")


async def switch(request: Request, username: str, active: bool):
    store = request.app.ctx.auth.store
    await run(account, store, username)
    if not active and username == user_of(request)["username"]:
        return await page(request, status=422, problem="Je kunt je eigen account niet uitzetten.")
    await run(store.set_active, username, active)
    await run(store.audit, user_of(request)["username"], "user_activated" if active else "user_deactivated",
              None, {"username": username})
    return response.redirect("/users")


@bp.post("/users/<username>/off")
@needs(PERMISSION)
async def user_off(request: Request, username: str):
    return await switch(request, username, False)


@bp.post("/users/<username>/on")
@needs(PERMISSION)
async def user_on(request: Request, username: str):
    return await switch(request, username, True)
