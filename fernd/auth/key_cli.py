"""The operator command `fernd admin rotate-signing-key`.

It exits with status 0 after a rotation, and with status 2 (reported by
`fernd.cli.main`) for a missing data directory, an invalid signing key file
or a key directory that cannot be written.
"""

import argparse
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fernd.auth.signing_keys import (
    RELOAD_INTERVAL_SECONDS,
    max_token_lifetime,
    rotate_signing_key,
)
from fernd.cli import _add_config_option, require_data_dir
from fernd.config import load_settings


def _rotate(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, os.environ, {"data_dir": args.data_dir})
    data_dir = Path(settings.data_dir)
    # Rotating in a mistyped directory would leave the served key in use.
    require_data_dir(data_dir)

    now = datetime.now(UTC)
    lifetime = max_token_lifetime(
        settings.token_lifetime, settings.access_token_lifetime
    )
    result = rotate_signing_key(
        data_dir,
        max_token_lifetime=lifetime,
        leeway_seconds=settings.token_leeway,
        now=now,
    )

    print(f"New signing key {result.new_kid} in {data_dir}")
    if result.retired_kid is not None:
        until = now + timedelta(seconds=lifetime + settings.token_leeway)
        print(
            f"Retired key {result.retired_kid} verifies tokens until "
            f"{until.isoformat(timespec='seconds')}"
        )
    for kid in result.deleted_kids:
        print(f"Deleted expired key {kid}")
    print(f"Running servers sign with the new key within {RELOAD_INTERVAL_SECONDS:g} s")
    return 0


def register(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    admin_commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> None:
    """Add `rotate-signing-key` to the `fernd admin` subcommands."""
    del commands  # This is an admin subcommand.

    rotate = admin_commands.add_parser(
        "rotate-signing-key",
        help="make a new signing key; the old one verifies until its tokens expire",
        description=(
            "Create a new current signing key in the data directory's keys/"
            " folder and retire the previous one. The retired key keeps"
            " verifying tokens for the longest token lifetime fernd issues"
            " (the larger of token_lifetime and 900 s) plus token_leeway, so"
            " no signed-in user is logged out. Retired keys past that time are"
            " deleted. A running server picks up the new key without a restart."
            " Safe while fernd serves the directory."
        ),
    )
    rotate.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory whose keys to rotate (default: the data_dir setting)",
    )
    _add_config_option(rotate)
    rotate.set_defaults(handler=_rotate)
