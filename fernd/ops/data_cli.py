"""Operator commands for a labour's data:

* `fernd export --labour ID` writes the labour's raw event stream as JSON
  lines, read-only, while the server runs or not;
* `fernd admin purge-labour ID --yes` erases a labour from the data directory
  of a stopped server (a running server purges through
  `POST /api/v1/admin/labours/{labour_id}/purge`).
"""

import argparse
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import apsw
import msgspec

from fernd.cli import EXIT_USAGE, _add_config_option, _open_shared
from fernd.config import load_settings
from fernd.ops.erasure import DatabaseInUse, purge_offline
from fernd.ops.export import LabourNotFound, export_events, open_for_reading
from fernd.storage.sqlite import StorageError

_encoder = msgspec.json.Encoder()


def register(commands: Any, admin_commands: Any) -> None:
    """Add `export` to `commands` and `purge-labour` to `admin_commands`, the
    subparser actions of `fernd` and `fernd admin`."""
    export = commands.add_parser(
        "export",
        help="write a labour's event stream as JSON lines",
        description=(
            "Write every stored event of one labour, in sequence order, one JSON"
            ' object per line: {"sequence", "event_type", "event", "created_at",'
            ' "user_id"}, with "event" exactly as stored. Only reads the'
            " database, so it is safe while fernd serves it."
        ),
    )
    export.add_argument(
        "--labour", required=True, metavar="ID", help="the labour's id, a UUID"
    )
    export.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory (default: the data_dir setting)",
    )
    export.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="write to FILE, replacing it, instead of standard output",
    )
    _add_config_option(export)
    export.set_defaults(handler=_export)

    purge = admin_commands.add_parser(
        "purge-labour",
        help="erase one labour completely (the server must be stopped)",
        description=(
            "Delete one labour's database files and every row naming it in the"
            " shared database. This cannot be undone. Refused while a fernd"
            " server uses the data directory: stop it first, or call"
            " POST /api/v1/admin/labours/{labour_id}/purge on the running server."
        ),
    )
    purge.add_argument("labour_id", metavar="ID", help="the labour's id, a UUID")
    purge.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data directory (default: the data_dir setting)",
    )
    purge.add_argument(
        "--yes",
        action="store_true",
        help="confirm the erasure; without it nothing is deleted",
    )
    _add_config_option(purge)
    purge.set_defaults(handler=_purge_labour)


def _fail(message: str) -> int:
    print(f"fernd: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _parse_labour_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _data_dir(args: argparse.Namespace) -> Path:
    settings = load_settings(args.config, os.environ, {"data_dir": args.data_dir})
    return Path(settings.data_dir)


def _export(args: argparse.Namespace) -> int:
    labour_id = _parse_labour_id(args.labour)
    if labour_id is None:
        return _fail(f"--labour {args.labour!r} is not a labour id (a UUID)")
    data_dir = _data_dir(args)
    try:
        database = open_for_reading(data_dir, labour_id)
    except LabourNotFound:
        return _fail(f"no labour {labour_id} in data directory {data_dir}")
    except apsw.Error as error:
        return _fail(f"opening the database of labour {labour_id} failed: {error}")
    try:
        # The database is opened first, so an unknown labour leaves no file.
        if args.out is None:
            sys.stdout.flush()
            count = export_events(database, sys.stdout.buffer.write)
            sys.stdout.buffer.flush()
        else:
            # The events hold names and private notes: the file is private
            # to its user, and an existing file or link is never replaced.
            descriptor = os.open(
                args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
            )
            with os.fdopen(descriptor, "wb") as out:
                count = export_events(database, out.write)
    except FileExistsError:
        return _fail(f"{args.out} already exists; choose another --out")
    except BrokenPipeError:
        # A reader such as `head` stopped early; that is not an error.
        return 0
    except apsw.Error as error:
        return _fail(f"reading the events of labour {labour_id} failed: {error}")
    finally:
        database.connection.close()
    print(f"Exported {count} events of labour {labour_id}", file=sys.stderr)
    return 0


def _purge_labour(args: argparse.Namespace) -> int:
    labour_id = _parse_labour_id(args.labour_id)
    if labour_id is None:
        return _fail(f"{args.labour_id!r} is not a labour id (a UUID)")
    if not args.yes:
        return _fail(
            f"purge-labour erases labour {labour_id} and cannot be undone;"
            " run it again with --yes to confirm"
        )
    data_dir = _data_dir(args)
    try:
        shared = _open_shared(args)
    except StorageError as error:
        return _fail(str(error))
    try:
        report = purge_offline(data_dir, labour_id, shared)
    except DatabaseInUse as error:
        return _fail(
            f"{error}. Stop the server first, or purge through the running"
            f" server with POST /api/v1/admin/labours/{labour_id}/purge"
        )
    except apsw.Error as error:
        return _fail(f"purging labour {labour_id} failed: {error}")
    finally:
        shared.close()
    if report is None:
        return _fail(f"no labour {labour_id} in data directory {data_dir}")
    print(_encoder.encode(report).decode())
    return 0
