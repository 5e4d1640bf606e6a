"""The operator commands `fernd backup`, `fernd restore` and `fernd check`.

Exit statuses:

* 0 on success or a healthy check;
* 1 when a database cannot be copied, an archive is rejected, or `check`
  finds a problem;
* 2 for invalid usage, a missing data directory, an existing `--out` or a
  non-empty restore target. These are raised as ConfigError and reported by
  `fernd.cli.main`.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Final

from fernd.cli import _add_config_option
from fernd.config import load_settings
from fernd.ops.backup import (
    SIGNING_KEY_PATH,
    ArchiveError,
    create_backup,
    restore_backup,
)
from fernd.ops.check import check_data_dir
from fernd.storage.sqlite import StorageError

# Exit status when the command ran but failed or found problems.
EXIT_FAILED: Final = 1


def _error(message: str) -> int:
    print(f"fernd: error: {message}", file=sys.stderr)
    return EXIT_FAILED


def _count(number: int, noun: str) -> str:
    """Return e.g. "1 labour database" or "2 labour databases"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _data_dir(args: argparse.Namespace) -> Path:
    settings = load_settings(args.config, os.environ, {"data_dir": args.data_dir})
    return Path(settings.data_dir)


def _backup(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    try:
        result = create_backup(data_dir, args.out)
    except StorageError as error:
        return _error(f"Backup of {data_dir} failed: {error}")

    for path in result.skipped:
        print(
            f"fernd: warning: skipped {path!r}: not a labour database",
            file=sys.stderr,
        )
    for labour_id in result.purged:
        print(
            f"fernd: warning: labour {labour_id} was purged during the backup and"
            " is not in it",
            file=sys.stderr,
        )
    paths = [entry.path for entry in result.manifest.files]
    labours = sum(1 for path in paths if path.startswith("labours/"))
    if SIGNING_KEY_PATH not in paths:
        print(
            "fernd: warning: no signing key in the backup, so tokens signed by"
            " this installation will not verify after a restore",
            file=sys.stderr,
        )
    print(
        f"Backed up fernd.db and {_count(labours, 'labour database')} to"
        f" {args.out}"
        f" ({result.archive_size} bytes)"
    )
    return 0


def _restore(args: argparse.Namespace) -> int:
    try:
        manifest = restore_backup(args.archive, args.data_dir)
    except ArchiveError as error:
        return _error(f"Backup archive {args.archive} rejected: {error}")
    print(
        f"Restored {len(manifest.files)} files from the backup made at"
        f" {manifest.created_at} by fernd {manifest.fernd_version} into"
        f" {args.data_dir}"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    report = check_data_dir(data_dir)
    databases = _count(report.labour_count, "labour database")
    for problem in report.problems:
        print(problem)
    if report.healthy:
        print(f"fernd check: healthy: the shared database and {databases}")
        return 0
    print(
        f"fernd check: {_count(len(report.problems), 'problem')} in {data_dir}"
        f" ({databases})"
    )
    return EXIT_FAILED


def register(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    admin_commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> None:
    """Add the `backup`, `restore` and `check` subcommands to `commands`."""
    del admin_commands  # These are top-level commands.

    backup = commands.add_parser(
        "backup",
        help="write a backup archive of a data directory, safe while fernd serves",
        description=(
            "Copy fernd.db, every labour database and the signing key into one"
            " new tar.gz archive with a manifest of SHA-256 checksums. Safe while"
            " fernd serves the directory: each database is copied as one"
            " consistent snapshot, but labours are not copied at one common"
            " instant. The archive contains personal data and the signing key,"
            " so it is written with mode 0600."
        ),
    )
    backup.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory to back up (default: the data_dir setting)",
    )
    backup.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="FILE",
        help="archive to create, conventionally *.tar.gz; must not exist",
    )
    _add_config_option(backup)
    backup.set_defaults(handler=_backup)

    restore = commands.add_parser(
        "restore",
        help="restore a backup archive into a new data directory",
        description=(
            "Verify every checksum of a backup archive, then write its files into"
            " a new or empty directory with mode 0600 (directories 0700). Nothing"
            " is written when any check fails. Start fernd on the directory"
            " afterwards; run 'fernd check' on it to confirm its health."
        ),
    )
    restore.add_argument(
        "--from",
        dest="archive",
        required=True,
        type=Path,
        metavar="FILE",
        help="archive written by 'fernd backup'",
    )
    restore.add_argument(
        "--data-dir",
        required=True,
        type=Path,
        metavar="DIR",
        help="new or empty directory to restore into",
    )
    restore.set_defaults(handler=_restore)

    check = commands.add_parser(
        "check",
        help="check the databases of a data directory, safe while fernd serves",
        description=(
            "Run SQLite's integrity check on every database, compare each"
            " labour's projector and process-manager checkpoints with its last"
            " event, and report faulted projectors and FAILED effects. Prints"
            " one line per problem and exits with status 1 when there is any."
        ),
    )
    check.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory to check (default: the data_dir setting)",
    )
    _add_config_option(check)
    check.set_defaults(handler=_check)
