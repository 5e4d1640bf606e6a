"""Operator commands that act on a running server through its admin routes:

* `fernd admin projectors --labour ID` prints the labour's projector
  checkpoints (`GET /api/v1/admin/labours/{id}/projectors`);
* `fernd admin effects --labour ID [--status S]` prints its effect ledger;
* `fernd admin retry-effect --labour ID --effect EFFECT_ID` puts a FAILED or
  SKIPPED effect back to PENDING;
* `fernd admin rebuild --labour ID` rebuilds its read models and clears
  projector faults (the RebuildReadModels command).

Each command signs a one-minute administrator token with the installation's
key from the data directory, so it needs read access to that directory, and
calls the server at `--server` (default: the `bind` setting over http).
"""

import argparse
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Final

import httpx

from fernd.auth.tokens import LocalTokenIssuer
from fernd.cli import EXIT_USAGE, _add_config_option, require_data_dir
from fernd.config import Settings, load_settings

# The `sub` of the tokens these commands sign, as it appears in the server log.
CLI_ADMIN_USER_ID: Final = "fernd-admin-cli"
CLI_TOKEN_SECONDS: Final = 60
REQUEST_TIMEOUT_SECONDS: Final = 30.0
EXIT_REFUSED: Final = 1
EFFECT_STATUSES: Final = ("COMPLETED", "DISPATCHED", "FAILED", "PENDING", "SKIPPED")


def register(commands: Any, admin_commands: Any) -> None:
    """Add `projectors`, `effects`, `retry-effect` and `rebuild` to
    `fernd admin`."""
    projectors = admin_commands.add_parser(
        "projectors",
        help="print a labour's projector checkpoints (running server)",
        description="Print the checkpoints of a labour's projectors as JSON.",
    )
    _add_common_options(projectors)
    projectors.set_defaults(handler=_projectors)

    effects = admin_commands.add_parser(
        "effects",
        help="print a labour's effect ledger (running server)",
        description=(
            "Print a labour's effect ledger as JSON, oldest first, without"
            " payloads and with email addresses redacted."
        ),
    )
    _add_common_options(effects)
    effects.add_argument("--status", choices=EFFECT_STATUSES, help="only this status")
    effects.set_defaults(handler=_effects)

    retry = admin_commands.add_parser(
        "retry-effect",
        help="run a FAILED or SKIPPED effect again (running server)",
        description="Put a FAILED or SKIPPED effect back to PENDING; it runs at once.",
    )
    _add_common_options(retry)
    retry.add_argument("--effect", required=True, metavar="EFFECT_ID")
    retry.set_defaults(handler=_retry_effect)

    rebuild = admin_commands.add_parser(
        "rebuild",
        help="rebuild a labour's read models (running server)",
        description=(
            "Rebuild a labour's read models from its events and clear projector"
            " faults; appends no events."
        ),
    )
    _add_common_options(rebuild)
    rebuild.set_defaults(handler=_rebuild)


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--labour", required=True, metavar="ID", help="the labour's id, a UUID"
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        help="base URL of the running server (default: http:// and the bind setting)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory (default: the data_dir setting)",
    )
    _add_config_option(parser)


def _fail(message: str, status: int = EXIT_USAGE) -> int:
    print(f"fernd: error: {message}", file=sys.stderr)
    return status


def _server_url(settings: Settings, given: str | None) -> str:
    if given:
        return given.rstrip("/")
    host, port = settings.bind_address
    if ":" in host:
        host = f"[{host}]"
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def _labour_id(args: argparse.Namespace) -> uuid.UUID | None:
    try:
        return uuid.UUID(args.labour)
    except ValueError:
        return None


def _call(
    args: argparse.Namespace,
    method: str,
    path: str,
    **kwargs: Any,
) -> int:
    settings = load_settings(args.config, os.environ, {"data_dir": args.data_dir})
    data_dir = Path(settings.data_dir)
    # Without this check a mistyped directory would get a new signing key.
    require_data_dir(data_dir)
    token = LocalTokenIssuer(data_dir).issue(
        CLI_ADMIN_USER_ID, admin=True, ttl_seconds=CLI_TOKEN_SECONDS
    )
    url = _server_url(settings, args.server) + path
    try:
        reply = httpx.request(
            method,
            url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=REQUEST_TIMEOUT_SECONDS,
            **kwargs,
        )
    except httpx.HTTPError as error:
        return _fail(f"cannot reach fernd at {url}: {type(error).__name__}: {error}")
    if reply.status_code >= 400:
        try:
            message = reply.json()["message"]
        except (ValueError, KeyError, TypeError):
            message = reply.text[:200]
        return _fail(f"{reply.status_code}: {message}", EXIT_REFUSED)
    if reply.content:
        print(json.dumps(reply.json(), indent=2, ensure_ascii=False))
    return 0


def _bad_labour(args: argparse.Namespace) -> int:
    return _fail(f"--labour {args.labour!r} is not a labour id (a UUID)")


def _projectors(args: argparse.Namespace) -> int:
    labour_id = _labour_id(args)
    if labour_id is None:
        return _bad_labour(args)
    return _call(args, "GET", f"/api/v1/admin/labours/{labour_id}/projectors")


def _effects(args: argparse.Namespace) -> int:
    labour_id = _labour_id(args)
    if labour_id is None:
        return _bad_labour(args)
    params = {"status": args.status} if args.status else None
    return _call(
        args,
        "GET",
        f"/api/v1/admin/labours/{labour_id}/effects",
        params=params,
    )


def _retry_effect(args: argparse.Namespace) -> int:
    labour_id = _labour_id(args)
    if labour_id is None:
        return _bad_labour(args)
    try:
        effect_id = uuid.UUID(args.effect)
    except ValueError:
        return _fail(f"--effect {args.effect!r} is not an effect id (a UUID)")
    return _call(
        args,
        "POST",
        f"/api/v1/admin/labours/{labour_id}/effects/{effect_id}/retry",
    )


def _rebuild(args: argparse.Namespace) -> int:
    labour_id = _labour_id(args)
    if labour_id is None:
        return _bad_labour(args)
    command = {
        "type": "Admin",
        "payload": {
            "type": "RebuildReadModels",
            "payload": {"aggregate_id": str(labour_id)},
        },
    }
    status = _call(args, "POST", "/api/v1/command", json=command)
    if status == 0:
        print("Read models rebuilt")
    return status
