"""Staff authentication for the desk.

* Passwords: bcrypt hashes (``DESK_BCRYPT_ROUNDS``, default 12).
* Sessions: server-side rows in ``desk_sessions`` keyed by the sha256 of a random
  cookie value; absolute lifetime ``DESK_SESSION_HOURS`` (8 h) and idle timeout
  ``DESK_SESSION_IDLE_MINUTES`` (30 min). The background polling of the pages does
  not count as activity.
* Cookie: HttpOnly, SameSite=Strict, Path=/, Secure unless the desk serves plain http
  on this machine (``Settings.cookie_secure``, desk/settings.py).
* CSRF: a random token per session, required on every POST as form field
  ``csrf_token`` or header ``X-CSRF-Token``. The login form itself uses a
  double-submit token (cookie + field) since there is no session yet.
* Failed logins: no hard lock (anyone knowing a user name could lock a colleague
  out). Each attempt is throttled per client address and per account name with an
  exponential back-off (:data:`ACCOUNT_THROTTLE`, :data:`ADDRESS_THROTTLE`): the
  per-account back-off is short (at most a minute), the per-address one long (up to
  15 minutes), so a correct password from another address works again a minute after
  an attack at the latest. Every attempt that is not throttled runs exactly one bcrypt
  check (a dummy hash for unknown or disabled names, the first 72 bytes of an
  over-long password), so the answer time tells nothing about the account. Rejected
  attempts are audited at most once a minute per account and address, with a count.
* Roles: ``staff`` (queue and tickets), ``coordinator`` (also overview, standard
  answers, force-close and release of others' tickets, and the editors' pages);
  ``editor`` has the content editors' pages (``/editor``: facts, example
  questions, not-understood inbox, publish) and no access to tickets.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import bcrypt

from desk.settings import Settings
from desk.store import ROLES, DeskStore, utcnow

SESSION_COOKIE = "appcare_desk_session"
LOGIN_CSRF_COOKIE = "appcare_desk_login"
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_BYTES = 72  # bcrypt's limit
TOUCH_EVERY = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class Throttle:
    """Back-off after ``free`` failures: ``first`` seconds, doubling per further
    failure up to ``cap``; the count starts again after ``reset`` without failures."""

    free: int
    first: float
    cap: float
    reset: dt.timedelta

    def backoff(self, failures: int) -> Optional[dt.timedelta]:
        if failures < self.free:
            return None
        return dt.timedelta(seconds=min(self.cap, self.first * 2 ** min(failures - self.free, 30)))


# Short per account (an attacker cannot keep a colleague out for long), long per address.
ACCOUNT_THROTTLE = Throttle(free=5, first=1.0, cap=60.0, reset=dt.timedelta(minutes=15))
ADDRESS_THROTTLE = Throttle(free=10, first=1.0, cap=900.0, reset=dt.timedelta(hours=1))
LOGIN_AUDIT_EVERY = dt.timedelta(minutes=1)  # at most one audit row per account and address
THROTTLE_KEY_NAME = "login.throttle.key"


@dataclass
class LoginResult:
    user: Optional[Dict[str, Any]]
    reason: str = ""  # "" (logged in), "invalid" or "throttled"
    retry_after: int = 0  # seconds, with "throttled"

    def __iter__(self):  # user, reason = auth.authenticate(...)
        return iter((self.user, self.reason))


def throttle_message(seconds: int) -> str:
    """The colleague's message while a login is throttled."""
    minutes = max(1, math.ceil(seconds / 60))
    return f"Te veel pogingen. Probeer het over {minutes} {'minuut' if minutes == 1 else 'minuten'} opnieuw."

PERMISSIONS: Dict[str, frozenset] = {
    "staff": frozenset({"desk"}),
    "coordinator": frozenset({"desk", "overview", "answers", "force_close", "release_any", "edit", "users"}),
    "editor": frozenset({"edit"}),  # content editors: facts, examples, inbox, publish (desk/editor/routes/)
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
    """One bcrypt check, also for an empty or over-long password (bcrypt 5 refuses more
    than 72 bytes: the first 72 are checked and the answer is no, since no password that
    long can be set), so every answer takes the same time."""
    data = (password or "").encode("utf-8", "replace")
    acceptable = 0 < len(data) <= MAX_PASSWORD_BYTES
    try:
        matches = bcrypt.checkpw(data[:MAX_PASSWORD_BYTES], password_hash.encode("ascii"))
    except ValueError:
        return False
    return matches and acceptable


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def tokens_equal(a: Optional[str], b: Optional[str]) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


class Auth:
    def __init__(self, store: DeskStore, settings: Settings):
        self.store = store
        self.settings = settings
        self._dummy_hash = bcrypt.hashpw(
            secrets.token_bytes(16).hex().encode("ascii"), bcrypt.gensalt(rounds=max(4, min(settings.bcrypt_rounds, 16)))
        ).decode("ascii")
        self._throttle_key: Optional[bytes] = None

    # ------------------------------------------------------------------ accounts
    def create_user(self, username: str, password: str, role: str) -> Dict[str, Any]:
        username = (username or "").strip()
        if not username or len(username) > 128 or any(c.isspace() for c in username):
            raise ValueError("ongeldige gebruikersnaam (geen spaties, maximaal 128 tekens)")
        if role not in ROLES:
            raise ValueError(f"onbekende rol {role!r} (kies uit {', '.join(ROLES)})")
        return self.store.create_user(username, hash_password(password, self.settings.bcrypt_rounds), role)

    def _throttle_secret(self) -> bytes:
        """Key of the throttle rows (kept in desk_kv, shared by every desk process)."""
        if self._throttle_key is None:
            self._throttle_key = self.store.value_or_add(THROTTLE_KEY_NAME, secrets.token_hex(32)).encode("ascii")
        return self._throttle_key

    def _key(self, kind: str, value: str) -> str:
        return hmac.new(self._throttle_secret(), f"{kind}:{value}".encode("utf-8", "replace"), hashlib.sha256).hexdigest()

    def authenticate(self, username: str, password: str, client: str = "") -> LoginResult:
        """A login attempt from address ``client``: ``LoginResult(user)`` or
        ``LoginResult(None, "invalid" | "throttled", retry_after)``.

        The attempt counts as a failure before the password is checked (parallel
        attempts cannot slip through together); a correct one is taken back."""
        username = (username or "").strip()[:128]
        client = (client or "").strip()[:64] or "-"
        now = utcnow()
        account_key = self._key("account", username.lower())
        address_key = self._key("address", client)
        blocked = self.store.login_blocked_until([account_key, address_key])
        if blocked is not None and blocked <= now:
            blocked = None
        # Counted before the check (atomically with the block test): a parallel burst of
        # attempts cannot all slip through; blocked at that moment means throttled.
        if blocked is None:
            if self.store.count_login_failure(address_key, now, ADDRESS_THROTTLE.reset, ADDRESS_THROTTLE.backoff) is None:
                blocked = self.store.login_blocked_until([address_key]) or now
            elif self.store.count_login_failure(account_key, now, ACCOUNT_THROTTLE.reset, ACCOUNT_THROTTLE.backoff) is None:
                self.store.forgive_login_failure(address_key, ADDRESS_THROTTLE.free)
                blocked = self.store.login_blocked_until([account_key]) or now
        if blocked is not None:
            wait = max(1, math.ceil((blocked - now).total_seconds()))
            self._audit_rejected(username, client, "throttled", now)
            return LoginResult(None, "throttled", wait)
        user = self.store.user_with_hash(username) if username else None
        known = user is not None and user["active"]
        # Exactly one bcrypt check either way: a dummy hash for unknown or disabled names.
        correct = verify_password(password, user["password_hash"] if known else self._dummy_hash)
        if not (known and correct):
            self._audit_rejected(username, client, "invalid", now, known=user is not None)
            return LoginResult(None, "invalid")
        self.store.reset_login_failures(account_key)
        self.store.forgive_login_failure(address_key, ADDRESS_THROTTLE.free)
        user.pop("password_hash", None)
        return LoginResult(user)

    def _audit_rejected(self, username: str, client: str, reason: str, now: dt.datetime,
                        known: Optional[bool] = None) -> None:
        """At most one audit row per minute per account name and address for wrong
        passwords (bounded by the address back-off), and per address for throttled
        attempts (whatever names they try), with the number of rejections since the
        previous row. The actor is the name only when such an account exists (a typed
        name may be a password in the wrong field)."""
        scope = "throttled" if reason == "throttled" else f"account:{username.lower()}"
        count = self.store.login_audit_due(self._key("audit", f"{scope}\n{client}"), now, LOGIN_AUDIT_EVERY)
        if count is None:
            return
        if known is None:
            known = bool(username) and self.store.user_with_hash(username) is not None
        detail = {"reason": reason, "count": count, "client": self._key("client", client)[:12]}
        if not known:
            detail["unknown_account"] = True
        self.store.audit(username if known else "-", "login_failed", None, detail)

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
        self.store.purge_login_throttle(now - max(ADDRESS_THROTTLE.reset, ACCOUNT_THROTTLE.reset, LOGIN_AUDIT_EVERY))
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
