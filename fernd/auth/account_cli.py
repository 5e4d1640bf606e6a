"""Operator commands for fernd's own accounts, safe while the server runs:

* `fernd admin create-user --email ADDRESS [--name ...]` creates an account,
  also when `allow_registration` is false;
* `fernd admin reset-password --email ADDRESS` sets a new password and
  signs the account out everywhere;
* `fernd admin accounts` lists the accounts as JSON lines.

A password is read from standard input with `--password-stdin` (its first
line), asked for twice at a terminal, or made up with `--generate` and
printed once. It never appears on the command line.
"""

import argparse
import getpass
import json
import os
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import trio

from fernd.auth.accounts import (
    AccountRefused,
    AccountService,
    Registration,
    check_password,
)
from fernd.auth.tokens import LocalTokenIssuer
from fernd.cli import EXIT_USAGE, _add_config_option, _open_shared
from fernd.config import load_settings
from fernd.storage.accounts_db import AccountStore

# 18 random bytes make a 24-character URL-safe password.
GENERATED_PASSWORD_BYTES: Final = 18
EXIT_REFUSED: Final = 1
LIST_PAGE_SIZE: Final = 500


def register(commands: Any, admin_commands: Any) -> None:
    """Add `create-user`, `reset-password` and `accounts` to `fernd admin`."""
    create = admin_commands.add_parser(
        "create-user",
        help="create an account",
        description=(
            "Create a fernd account, whether or not registration is open, and"
            " print it as JSON. The password comes from --password-stdin,"
            " --generate or a prompt."
        ),
    )
    create.add_argument("--email", required=True, help="the account's email address")
    create.add_argument("--name", help="full name, shown to family and in emails")
    create.add_argument("--first-name", help="first name")
    create.add_argument("--last-name", help="last name")
    create.add_argument("--phone-number", help="phone number in E.164 form")
    _add_password_options(create)
    create.set_defaults(handler=_create_user)

    reset = admin_commands.add_parser(
        "reset-password",
        help="set a new password for an account",
        description=(
            "Set a new password for the account with this email address and"
            " revoke all of its refresh tokens, which signs it out on every"
            " device within the access token lifetime."
        ),
    )
    reset.add_argument("--email", required=True, help="the account's email address")
    _add_password_options(reset)
    reset.set_defaults(handler=_reset_password)

    accounts = admin_commands.add_parser(
        "accounts",
        help="list accounts as JSON lines",
        description="Print every account as one JSON object per line, oldest first.",
    )
    accounts.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory (default: the data_dir setting)",
    )
    _add_config_option(accounts)
    accounts.set_defaults(handler=_list_accounts)


def _add_password_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    source.add_argument(
        "--generate",
        action="store_true",
        help="make up a random password and print it once",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory (default: the data_dir setting)",
    )
    _add_config_option(parser)


class _PasswordError(Exception):
    pass


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """Return the password and whether it was generated."""
    if args.generate:
        return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES), True
    if args.password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n"), False
    if not sys.stdin.isatty():
        raise _PasswordError(
            "standard input is not a terminal; use --password-stdin or --generate"
        )
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat the password: ") != first:
        raise _PasswordError("the two passwords differ")
    return first, False


def _checked_password(args: argparse.Namespace) -> tuple[str, bool]:
    """Return the password and whether it was generated; raise _PasswordError
    when it cannot be read or breaks the password rule."""
    password, generated = _password(args)
    try:
        check_password(password)
    except AccountRefused as error:
        raise _PasswordError(error.message) from None
    return password, generated


def _service(args: argparse.Namespace) -> tuple[AccountService, Any]:
    settings = load_settings(args.config, os.environ, {"data_dir": args.data_dir})
    shared = _open_shared(args)
    service = AccountService(
        AccountStore(shared.connection),
        LocalTokenIssuer(Path(settings.data_dir)),
        allow_registration=True,
        access_token_lifetime=settings.access_token_lifetime,
        refresh_token_lifetime=settings.refresh_token_lifetime,
        password_reset_lifetime=settings.password_reset_lifetime,
        public_url=settings.public_url,
    )
    return service, shared


def _fail(message: str, status: int = EXIT_USAGE) -> int:
    print(f"fernd: error: {message}", file=sys.stderr)
    return status


def _create_user(args: argparse.Namespace) -> int:
    try:
        password, generated = _checked_password(args)
    except _PasswordError as error:
        return _fail(str(error))
    service, shared = _service(args)
    registration = Registration(
        email=args.email,
        password=password,
        name=args.name,
        first_name=args.first_name,
        last_name=args.last_name,
        phone_number=args.phone_number,
    )
    try:
        row = trio.run(service.create_account, registration, datetime.now(UTC))
    except AccountRefused as error:
        return _fail(error.message, EXIT_REFUSED)
    finally:
        shared.close()
    print(json.dumps({"user_id": row.user_id, "email": row.email, "name": row.name}))
    if generated:
        print(f"password: {password}")
    return 0


def _reset_password(args: argparse.Namespace) -> int:
    try:
        password, generated = _checked_password(args)
    except _PasswordError as error:
        return _fail(str(error))
    service, shared = _service(args)
    try:
        row = trio.run(
            service.set_password_by_operator, args.email, password, datetime.now(UTC)
        )
    except AccountRefused as error:
        return _fail(error.message, EXIT_REFUSED)
    finally:
        shared.close()
    print(json.dumps({"user_id": row.user_id, "email": row.email}))
    if generated:
        print(f"password: {password}")
    return 0


def _list_accounts(args: argparse.Namespace) -> int:
    shared = _open_shared(args)
    try:
        store = AccountStore(shared.connection)
        after: str | None = None
        while True:
            rows = store.list(LIST_PAGE_SIZE, after)
            for row in rows:
                print(
                    json.dumps(
                        {
                            "user_id": row.user_id,
                            "email": row.email,
                            "name": row.name,
                            "created_at": row.created_at.isoformat(),
                        },
                        ensure_ascii=False,
                    )
                )
            if len(rows) < LIST_PAGE_SIZE:
                break
            after = rows[-1].user_id
    finally:
        shared.close()
    return 0
