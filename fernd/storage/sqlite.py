"""apsw connections: pragmas, schema migrations and error translation."""

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import apsw

logger = logging.getLogger(__name__)

# How long a writer waits for another connection's lock before failing; only
# offline tools open a second connection to a database fernd serves.
BUSY_TIMEOUT_MS = 5000


class StorageError(Exception):
    """A database operation failed."""


SYNCHRONOUS_MODES = ("FULL", "NORMAL")


def open_database(path: Path, synchronous: str, *, create: bool) -> apsw.Connection:
    """Open the SQLite database at `path` in WAL mode.

    With `create` false a missing file raises StorageError instead of being
    created. `synchronous` is FULL (every commit is fsynced) or NORMAL.
    """
    if synchronous not in SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}")
    flags = apsw.SQLITE_OPEN_READWRITE
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        flags |= apsw.SQLITE_OPEN_CREATE
    try:
        connection = apsw.Connection(str(path), flags=flags)
        connection.set_busy_timeout(BUSY_TIMEOUT_MS)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute("PRAGMA foreign_keys=OFF")
    except apsw.Error as error:
        raise StorageError(f"Cannot open database {path}: {error}") from error
    return connection


def migrate(connection: apsw.Connection, migrations: Sequence[str]) -> None:
    """Apply the migrations after the database's `PRAGMA user_version`.

    Migration n (counting from 1) is the SQL script `migrations[n - 1]`; each
    runs in its own transaction together with the version bump.
    """
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise StorageError(
            f"Database schema version {version} is newer than this fernd "
            f"({len(migrations)}); upgrade fernd"
        )
    for number in range(version + 1, len(migrations) + 1):
        with connection:
            connection.execute(migrations[number - 1])
            connection.execute(f"PRAGMA user_version={number}")
        logger.debug("Applied schema migration %d", number)


@contextlib.contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Raise StorageError, naming `action`, for any apsw error inside."""
    try:
        yield
    except apsw.Error as error:
        raise StorageError(f"{action} failed: {error}") from error


def checkpoint_and_close(connection: apsw.Connection) -> None:
    """Checkpoint and truncate the WAL, then close the connection."""
    with contextlib.suppress(apsw.Error):
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def rows_as_dicts(cursor: apsw.Cursor) -> list[dict[str, Any]]:
    """Return the cursor's rows as dicts keyed by column name. An empty result
    gives an empty list, because apsw has no description once a query ends."""
    try:
        names = [column[0] for column in cursor.getdescription()]
    except apsw.ExecutionCompleteError:
        return []
    return [dict(zip(names, row, strict=True)) for row in cursor]
