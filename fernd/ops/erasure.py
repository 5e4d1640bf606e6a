"""Erasure of a labour: its database files and every shared row naming it.

Unlike `DeleteLabour`, which records `LabourDeleted` and keeps the event
store, a purge removes the labour completely and cannot be undone.
`erase_labour` does the deletion and assumes that nothing else uses the
labour. The server reaches it through `LabourRegistry.purge`, which stops the
labour's actor first. `purge_offline` reaches it after taking exclusive locks
that fail while a server holds the data directory.
"""

import logging
from pathlib import Path
from uuid import UUID

import apsw
import msgspec

from fernd.storage.labour_db import labour_database_path
from fernd.storage.shared_db import SharedDatabase

logger = logging.getLogger(__name__)

# The files SQLite keeps for one database: the database itself, its
# write-ahead log, its shared-memory index and a rollback journal.
_SQLITE_FILE_SUFFIXES = ("", "-wal", "-shm", "-journal")
# How long the offline purge waits for a lock that another connection holds,
# in milliseconds. A running server holds its lock for as long as it runs, so
# a longer wait would only delay the error.
OFFLINE_LOCK_TIMEOUT_MS = 200


class PurgeReport(msgspec.Struct, frozen=True, kw_only=True):
    """The files and shared rows that one purge removed."""

    labour_id: UUID
    # File names only, so the report shows no server paths.
    files_removed: list[str]
    # Rows deleted per shared table.
    rows_removed: dict[str, int]


class DatabaseInUse(Exception):
    """Another process, normally a running fernd server, has a database open."""


def labour_files(data_dir: Path, labour_id: UUID) -> list[Path]:
    """Return the paths of every file SQLite may keep for the labour, the
    database first."""
    path = labour_database_path(data_dir, labour_id)
    return [path.with_name(path.name + suffix) for suffix in _SQLITE_FILE_SUFFIXES]


def erase_labour(
    data_dir: Path, labour_id: UUID, shared: SharedDatabase
) -> PurgeReport | None:
    """Delete the labour's database files, then its shared rows. Return None
    when there was neither a file nor a row, that is, for an unknown labour.

    The caller guarantees that no connection uses the labour's database. A
    purge interrupted half-way can be run again: it removes what is left.
    """
    removed = []
    # The database goes first, so the labour counts as unknown from then on.
    for path in labour_files(data_dir, labour_id):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path.name)
    rows = shared.delete_labour_rows(labour_id)
    if not removed and not any(rows.values()):
        return None
    logger.info(
        "Purged labour %s: %d files and %d shared rows removed",
        labour_id,
        len(removed),
        sum(rows.values()),
    )
    return PurgeReport(labour_id=labour_id, files_removed=removed, rows_removed=rows)


def _lock_exclusively(connection: apsw.Connection, name: str) -> None:
    """Begin a transaction that locks `connection`'s database exclusively
    until the connection closes. Raise DatabaseInUse when another connection
    has it open.

    In WAL mode `BEGIN EXCLUSIVE` alone still lets other connections read, so
    it would not notice an idle server. With `locking_mode=EXCLUSIVE` SQLite
    takes an exclusive lock on the database file itself, which fails while any
    other process has the database open (SQLite 3.x keeps a shared lock on a
    WAL database for as long as a connection is open).
    """
    connection.set_busy_timeout(OFFLINE_LOCK_TIMEOUT_MS)
    try:
        connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        connection.execute("BEGIN EXCLUSIVE")
    except apsw.BusyError:
        raise DatabaseInUse(
            f"The {name} is in use, most likely by a running fernd server"
        ) from None


def _check_not_in_use(path: Path, name: str) -> None:
    """Raise DatabaseInUse when another connection has the database at `path`
    open. The check closes its own connection again."""
    connection = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        _lock_exclusively(connection, name)
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def purge_offline(
    data_dir: Path, labour_id: UUID, shared: SharedDatabase
) -> PurgeReport | None:
    """Purge the labour from a data directory that no server uses.

    Locks the shared database exclusively for the whole purge, so a server
    cannot start meanwhile, and checks that no process has the labour's
    database open. Raises DatabaseInUse otherwise. Returns None for an
    unknown labour.
    """
    _lock_exclusively(shared.connection, "shared database")
    try:
        path = labour_database_path(data_dir, labour_id)
        if path.exists():
            _check_not_in_use(path, f"database of labour {labour_id}")
        report = erase_labour(data_dir, labour_id, shared)
    except BaseException:
        shared.connection.execute("ROLLBACK")
        raise
    shared.connection.execute("COMMIT")
    return report
