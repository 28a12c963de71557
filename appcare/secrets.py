"""Secrets from the environment: checked at start-up, compared in constant time.

Production mode is ``APPCARE_ENV=production`` (deploy/env.example sets it). In
production every component refuses to start when one of its secrets is missing,
a placeholder (``CHANGE-ME``, ``secret``, ...) or shorter than
:data:`MIN_LENGTH` characters; the error names the variable, never its value. In
development (the default, ``make run``) a weak secret only gives a warning, so a
newcomer can start without setting anything.

Compare a secret a client sent with :func:`same_secret` (``hmac.compare_digest``),
never with ``==``.
"""
from __future__ import annotations

import hmac
import logging
import os
import secrets as _random
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional

logger = logging.getLogger(__name__)

ENV_VAR = "APPCARE_ENV"
MIN_LENGTH = 16
# HS256 keys: RFC 7518 asks for at least 256 bits (PyJWT warns below 32 bytes).
MIN_LENGTHS = {"RASA_JWT_SECRET": 32}
# Values people leave in a config file; compared case-insensitively, without - and _.
PLACEHOLDERS = frozenset(
    p.replace("-", "").replace("_", "")
    for p in (
        "change-me", "changeme", "change_me_please", "secret", "password", "passwd", "token",
        "example", "test", "testing", "dev", "development", "default", "xxx", "todo", "fixme",
        "placeholder", "your-secret", "your-token", "replace-me", "insert-secret-here", "none", "null",
    )
)
PSEUDONYM_KEY_VAR = "APPCARE_PSEUDONYM_KEY"
PSEUDONYM_KEY_FILE = Path("var") / "pseudonym.key"


class SecretError(RuntimeError):
    """A production component was asked to start with a missing or weak secret."""


def production() -> bool:
    """True when ``APPCARE_ENV`` says production."""
    return os.environ.get(ENV_VAR, "").strip().lower() in ("production", "prod")


def weakness(value: Optional[str], min_length: int = MIN_LENGTH) -> Optional[str]:
    """Why ``value`` is no usable secret (``None`` when it is fine)."""
    if value is None or not value.strip():
        return "missing or empty"
    folded = value.strip().lower().replace("-", "").replace("_", "")
    if folded in PLACEHOLDERS or "changeme" in folded or set(folded) <= {"x", "*", "."}:
        return "a placeholder"
    if len(value.strip()) < min_length:
        return f"shorter than {min_length} characters"
    return None


def check(component: str, values: Mapping[str, Optional[str]], optional: Iterable[str] = ()) -> List[str]:
    """Check the named secrets of one component.

    ``values`` maps an environment variable name to its value. Names in
    ``optional`` may be missing (a feature that is off), but a value that is set
    must be strong. In production any problem raises :class:`SecretError` listing
    every weak variable; otherwise the problems are logged as a warning and
    returned.
    """
    optional = set(optional)
    problems = []
    for name, value in values.items():
        if name in optional and (value is None or value == ""):
            continue
        why = weakness(value, MIN_LENGTHS.get(name, MIN_LENGTH))
        if why:
            problems.append(f"{name} is {why}")
    if problems and production():
        raise SecretError(
            f"{component} refuses to start in production ({ENV_VAR}=production): "
            + "; ".join(problems)
            + f". Set each to a random value of at least {MIN_LENGTH} characters, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` (see deploy/env.example)."
        )
    for problem in problems:
        logger.warning("%s: %s (acceptable in development only)", component, problem)
    return problems


def check_env(component: str, names: Iterable[str], optional: Iterable[str] = ()) -> List[str]:
    """:func:`check` for variables read from the environment."""
    return check(component, {name: os.environ.get(name) for name in names}, optional)


def same_secret(provided: Optional[str], expected: Optional[str]) -> bool:
    """Constant-time comparison; False when either side is missing or empty."""
    if not provided or not expected:
        return False
    return hmac.compare_digest(provided.encode("utf-8"), expected.encode("utf-8"))


def bearer_token(authorization: Optional[str]) -> Optional[str]:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


_pseudonym_key_cache: Dict[str, bytes] = {}


def pseudonym_key() -> bytes:
    """Key of the pseudonyms in logs and ``sender_hash`` columns.

    ``APPCARE_PSEUDONYM_KEY`` from the environment (required in production: all
    components of an installation must share it, or one citizen gets several
    pseudonyms). Without it, outside production, a random key is generated once
    and kept in ``var/pseudonym.key`` (mode 0600), so pseudonyms stay stable
    across restarts of an embedded installation.
    """
    value = os.environ.get(PSEUDONYM_KEY_VAR)
    if value:
        check("pseudonyms", {PSEUDONYM_KEY_VAR: value})
        return value.encode("utf-8")
    if production():
        check("pseudonyms", {PSEUDONYM_KEY_VAR: value})  # raises
    path = PSEUDONYM_KEY_FILE.resolve()
    cached = _pseudonym_key_cache.get(str(path))
    if cached:
        return cached
    try:
        key = path.read_text(encoding="ascii").strip().encode("ascii")
    except (OSError, UnicodeDecodeError):
        key = b""
    if len(key) < MIN_LENGTH:
        key = _random.token_hex(32).encode("ascii")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key.decode("ascii") + "\n")
        try:
            os.link(str(tmp), str(path))  # first writer wins when two processes start at once
        except FileExistsError:
            key = path.read_text(encoding="ascii").strip().encode("ascii")
        finally:
            tmp.unlink(missing_ok=True)
    _pseudonym_key_cache[str(path)] = key
    return key
