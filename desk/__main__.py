"""Command line of the KCC desk.

    python -m desk                      # serve on 127.0.0.1:$DESK_PORT (default 5080)
    python -m desk serve --port 5081
    python -m desk create-user anna --role coordinator          # asks for the password
    echo "$PW" | python -m desk create-user bob --role staff --password-stdin
    python -m desk set-password anna [--password-stdin]
    python -m desk list-users
    python -m desk flag-overdue         # flag tickets not picked up in time (also done by the server)

All use ``APPCARE_DB_URL`` (default sqlite:///var/appcare.db).
"""
from __future__ import annotations

import argparse
import getpass
import logging
import sys
from typing import List, Optional


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Wachtwoord: ")
        again = getpass.getpass("Nogmaals: ")
        if password != again:
            raise SystemExit("De wachtwoorden zijn niet gelijk.")
    return password


def _auth(db_url: Optional[str]):
    from desk.auth import Auth
    from desk.settings import Settings
    from desk.store import DeskStore

    settings = Settings.from_env(db_url=db_url)
    return Auth(DeskStore(settings.db_url), settings)


def cmd_serve(args: argparse.Namespace) -> int:
    from desk.app import create_app

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    desk_logger = logging.getLogger("desk")
    desk_logger.addHandler(handler)
    desk_logger.setLevel(logging.INFO)
    overrides = {}
    if args.port:
        overrides["port"] = args.port
    if args.host:
        overrides["host"] = args.host
    app = create_app(db_url=args.db_url, **overrides)
    settings = app.ctx.settings
    if app.ctx.store.count_users() == 0:
        logging.getLogger("desk").warning(
            "no desk accounts yet: create one with `python -m desk create-user NAME --role coordinator`"
        )
    logging.getLogger("desk").info("KCC desk on http://%s:%s (Rasa at %s)", settings.host, settings.port, settings.rasa_url)
    app.run(host=settings.host, port=settings.port, workers=1, access_log=False, debug=False)
    return 0


def cmd_create_user(args: argparse.Namespace) -> int:
    auth = _auth(args.db_url)
    password = _read_password(args)
    try:
        user = auth.create_user(args.username, password, args.role)
    except ValueError as exc:
        print(f"Niet aangemaakt: {exc}", file=sys.stderr)
        return 1
    auth.store.audit("cli", "user_created", None, {"username": user["username"], "role": user["role"]})
    print(f"Account {user['username']} ({user['role']}) aangemaakt.")
    return 0


def cmd_set_password(args: argparse.Namespace) -> int:
    from desk.auth import hash_password

    auth = _auth(args.db_url)
    password = _read_password(args)
    try:
        changed = auth.store.set_password(args.username, hash_password(password, auth.settings.bcrypt_rounds))
    except ValueError as exc:
        print(f"Niet gewijzigd: {exc}", file=sys.stderr)
        return 1
    if not changed:
        print(f"Gebruiker {args.username!r} bestaat niet.", file=sys.stderr)
        return 1
    auth.store.audit("cli", "password_set", None, {"username": args.username})
    print("Wachtwoord gewijzigd.")
    return 0


def cmd_list_users(args: argparse.Namespace) -> int:
    auth = _auth(args.db_url)
    for user in auth.store.list_users():
        print(f"{user['username']}\t{user['role']}\t{'actief' if user['active'] else 'uit'}")
    return 0


def cmd_flag_overdue(args: argparse.Namespace) -> int:
    from appcare.handoff_store import HandoffStore

    from desk.rasa_client import RasaClient
    from desk.service import DeskService
    from desk.settings import Settings
    from desk.store import DeskStore

    settings = Settings.from_env(db_url=args.db_url)
    service = DeskService(settings, HandoffStore(settings.db_url), DeskStore(settings.db_url), RasaClient(settings.rasa_url, settings.rasa_jwt_secret))
    ids = service.flag_overdue()
    print(f"{len(ids)} ticket(s) gemarkeerd" + (": " + ", ".join(map(str, ids)) if ids else ""))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from appcare.ops import quiet

    quiet.install()  # no library deprecation warnings unless VERBOSE=1
    parser = argparse.ArgumentParser(prog="python -m desk", description="KCC-desk van appcare")
    parser.add_argument("--db-url", help="database (default: $APPCARE_DB_URL or sqlite:///var/appcare.db)")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="start the desk (default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    create = sub.add_parser("create-user", help="create an account")
    create.add_argument("username")
    create.add_argument("--role", choices=["staff", "coordinator", "editor"], default="staff")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    create.set_defaults(func=cmd_create_user)

    setpw = sub.add_parser("set-password", help="set a new password")
    setpw.add_argument("username")
    setpw.add_argument("--password-stdin", action="store_true")
    setpw.set_defaults(func=cmd_set_password)

    sub.add_parser("list-users", help="list accounts").set_defaults(func=cmd_list_users)
    sub.add_parser("flag-overdue", help="flag tickets not picked up in time").set_defaults(func=cmd_flag_overdue)

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not args.command:  # `python -m desk [--db-url URL]` serves
        args = parser.parse_args(argv + ["serve"])
    from appcare.secrets import SecretError
    from desk.settings import SettingsError

    try:
        return args.func(args)
    except (SecretError, SettingsError) as exc:  # one clear line, no traceback (names, never values)
        print(f"desk: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

