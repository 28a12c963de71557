"""The action server (rasa-sdk) with authentication and a safe bind address.

``rasa run actions`` listens on 0.0.0.0, answers any caller and allows CORS from
every origin. This entry point serves the same rasa-sdk application with:

* ``--interface`` (default ``127.0.0.1``; an internal address in containers);
* ``ACTION_SERVER_TOKEN``: when set, ``/webhook`` and ``/actions`` require
  ``Authorization: Bearer <token>`` (compared in constant time); Rasa sends it from
  endpoints.prod.yml (``action_endpoint: headers:``). In production
  (``APPCARE_ENV=production``) the server refuses to start without a strong token;
* no CORS (browsers have no business here); ``/health`` stays open for load balancers.

Usage::

    python -m appcare.plugins.action_server --port 5055 [--interface 127.0.0.1] [--actions actions]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from appcare import secrets

logger = logging.getLogger(__name__)
TOKEN_VAR = "ACTION_SERVER_TOKEN"
OPEN_PATHS = ("/health",)


def create_app(package: str = "actions", token: Optional[str] = None):  # -> sanic.Sanic
    """rasa-sdk's application for ``package`` with the token check added."""
    from rasa_sdk.endpoint import create_app as sdk_create_app
    from sanic import response

    app = sdk_create_app(package, cors_origins=None)

    @app.on_request
    async def require_token(request):  # noqa: ANN001 - Sanic middleware
        if not token or request.path in OPEN_PATHS:
            return None
        provided = secrets.bearer_token(request.headers.get("Authorization"))
        if secrets.same_secret(provided, token):
            return None
        logger.warning("action server: refused a call without a valid token (path %s)", request.path)
        return response.json({"error": "missing or wrong bearer token"}, status=401)

    return app


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("ACTION_PORT", "5055")))
    parser.add_argument("--interface", default=os.environ.get("ACTION_SERVER_INTERFACE", "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--actions", default="actions", help="action package (default actions)")
    args = parser.parse_args(argv)

    from appcare.ops import quiet
    from appcare.ops.logging_setup import configure

    quiet.install()  # no library deprecation warnings unless VERBOSE=1
    configure("actions")  # the same redacting handler as deploy/logging.yml
    token = os.environ.get(TOKEN_VAR) or None
    try:
        secrets.check("action server", {TOKEN_VAR: token}, optional=() if secrets.production() else [TOKEN_VAR])
    except secrets.SecretError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = create_app(args.actions, token)
    logger.info("action server on http://%s:%d (token %s)", args.interface, args.port,
                "required" if token else "not set")
    app.run(args.interface, args.port, workers=1, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
