"""Staff authentication for the desk.

* Passwords: bcrypt hashes (``DESK_BCRYPT_ROUNDS``, default 12).
* Sessions: server-side rows in ``desk_sessions`` keyed by the sha256 of a random
  cookie value; absolute lifetime ``DESK_SESSION_HOURS`` (8 h) and idle timeout
  ``DESK_SESSION_IDLE_MINUTES`` (30 min). The background polling of the pages does
  not count as activity.
* Cookie: HttpOnly, SameSite=Strict, Path=/ (Secure with ``DESK_COOKIE_SECURE=1``).
* CSRF: a random token per session, required on every POST as form field
  ``csrf_token`` or header ``X-CSRF-Token``. The login form itself uses a
  double-submit token (cookie + field) since there is no session yet.
* Roles: ``staff`` (queue and tickets), ``coordinator`` (also overview, standard
  answers, force-close and release of others' tickets, and the editors' pages);
  ``editor`` has the content editors' pages (``/editor``: facts, example
  questions, not-understood inbox, publish) and no access to tickets.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from typing import Any, Dict, Optional, Tuple

import bcrypt

from desk.settings import Settings
from desk.store import ROLES, DeskStore, utcnow

SESSION_COOKIE = "appcare_desk_session"
LOGIN_CSRF_COOKIE = "appcare_desk_login"
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_BYTES = 72  # bcrypt's limit
TOUCH_EVERY = dt.timedelta(seconds=30)
MAX_FAILED_LOGINS = 10  # per user name within FAILED_LOGIN_WINDOW
FAILED_LOGIN_WINDOW = dt.timedelta(minutes=15)

PERMISSIONS: Dict[str, frozenset] = {
    "staff": frozenset({"desk"}),
    "coordinator": frozenset({"desk", "overview", "answers", "force_close", "release_any", "edit", "users"}),
    "editor": frozenset({"edit"}),  # content editors: facts, examples, inbox, publish (desk/editor_routes.py)
}
assert set(PERMISSIONS) == set(ROLES)


def can(user: Optional[Dict[str, Any]], permission: str) -> bool:
    return bool(user) and permission in PERMISSIONS.get(user.get("role", ""), frozenset())


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"wachtwoord te kort (minimaal {MIN_PASSWORD_LENGTH} tekens)")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise ValueError(f"wachtwoord te lang (maximaal {MAX_PASSWORD_BYTES} bytes)")


def hash_password(password: str, rounds: int = 12) -> str:
    check_password_policy(password)
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=max(4, min(rounds, 16)))).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    data = (password or "").encode("utf-8")
    if not data or len(data) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(data, password_hash.encode("ascii"))
    except ValueError:
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def tokens_equal(a: Optional[str], b: Optional[str]) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


class Auth:
    def __init__(self, store: DeskStore, settings: Settings):
        self.store = store
        self.settings = settings
        self._dummy_hash = bcrypt.hashpw(b"dummy-password", bcrypt.gensalt(rounds=max(4, settings.bcrypt_rounds)))

    # ------------------------------------------------------------------ accounts
    def create_user(self, username: str, password: str, role: str) -> Dict[str, Any]:
        username = (username or "").strip()
        if not username or len(username) > 128 or any(c.isspace() for c in username):
            raise ValueError("ongeldige gebruikersnaam (geen spaties, maximaal 128 tekens)")
        if role not in ROLES:
            raise ValueError(f"onbekende rol {role!r} (kies uit {', '.join(ROLES)})")
        return self.store.create_user(username, hash_password(password, self.settings.bcrypt_rounds), role)

    def authenticate(self, username: str, password: str) -> Tuple[Optional[Dict[str, Any]], str]:
        """Returns (user, "") or (None, reason) where reason is "invalid" or "locked"."""
        username = (username or "").strip()
        since = utcnow() - FAILED_LOGIN_WINDOW
        failures = self.store.audit_log(action="login_failed", actor=username[:128] or "-", since=since, limit=MAX_FAILED_LOGINS)
        if len(failures) >= MAX_FAILED_LOGINS:
            return None, "locked"
        user = self.store.user_with_hash(username) if username else None
        if user is None or not user["active"]:
            bcrypt.checkpw(b"wrong-password", self._dummy_hash)  # same work for unknown names
            return None, "invalid"
        if not verify_password(password, user["password_hash"]):
            return None, "invalid"
        user.pop("password_hash", None)
        return user, ""

    # ------------------------------------------------------------------ sessions
    def start_session(self, user: Dict[str, Any]) -> Tuple[str, str]:
        """Creates a session; returns (cookie token, csrf token)."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        expires = utcnow() + dt.timedelta(hours=self.settings.session_hours)
        self.store.create_session(token_hash(token), user["id"], csrf, expires)
        self.store.touch_login(user["id"])
        return token, csrf

    def session_for(self, token: Optional[str], activity: bool = True) -> Optional[Dict[str, Any]]:
        """The valid session for a cookie value, or None (expired ones are deleted)."""
        if not token or len(token) > 200:
            return None
        sid = token_hash(token)
        session = self.store.get_session(sid)
        if session is None:
            return None
        now = utcnow()
        idle_limit = dt.timedelta(minutes=self.settings.idle_minutes)
        if session["expires_at"] <= now or session["last_seen_at"] + idle_limit <= now:
            self.store.delete_session(sid)
            return None
        if activity and now - session["last_seen_at"] >= TOUCH_EVERY:
            self.store.touch_session(sid, now)
        return session

    def end_session(self, token: Optional[str]) -> None:
        if token:
            self.store.delete_session(token_hash(token))

    def purge_expired(self) -> int:
        now = utcnow()
        return self.store.purge_sessions(now - dt.timedelta(minutes=self.settings.idle_minutes), now)

    # ------------------------------------------------------------------ cookies
    def set_session_cookie(self, response, token: str) -> None:
        response.cookies[SESSION_COOKIE] = token
        cookie = response.cookies[SESSION_COOKIE]
        cookie["httponly"] = True
        cookie["samesite"] = "Strict"
        cookie["path"] = "/"
        cookie["max-age"] = int(self.settings.session_hours * 3600)
        if self.settings.cookie_secure:
            cookie["secure"] = True

    def clear_session_cookie(self, response) -> None:
        response.cookies[SESSION_COOKIE] = ""
        cookie = response.cookies[SESSION_COOKIE]
        cookie["httponly"] = True
        cookie["samesite"] = "Strict"
        cookie["path"] = "/"
        cookie["max-age"] = 0

    def set_login_csrf_cookie(self, response, value: str) -> None:
        response.cookies[LOGIN_CSRF_COOKIE] = value
        cookie = response.cookies[LOGIN_CSRF_COOKIE]
        cookie["httponly"] = True
        cookie["samesite"] = "Strict"
        cookie["path"] = "/login"
        cookie["max-age"] = 3600
        if self.settings.cookie_secure:
            cookie["secure"] = True
