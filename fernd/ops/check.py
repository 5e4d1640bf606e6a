"""Health check of a data directory, safe while fernd serves it.

`check_data_dir` opens every database read-only and reports:

* a failed `PRAGMA integrity_check`, or a database SQLite cannot read;
* a schema version that is missing or newer than this fernd's;
* per labour, a projector checkpoint or the process-manager checkpoint that
  differs from the labour's last event sequence. fernd writes both in the
  transaction that appends the events, so they differ only after a failed
  commit path or an edit of the file;
* faulted projectors: status `error` after MAX_PROJECTOR_ERROR_COUNT failures
  in a row, per labour and in the shared database;
* effects in the ledger with status FAILED;
* a shared projector checkpoint ahead of its labour's last event, and a
  labour in the labour directory without a database;
* entries under `labours/` that are not labour databases.

Problem lines name labours, projectors and effects by id only. They never
contain event data, error messages or other personal data.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import apsw

from fernd.config import ConfigError
from fernd.domain.constants import MAX_PROJECTOR_ERROR_COUNT
from fernd.ops.backup import (
    LABOUR_SCHEMA_VERSION,
    SHARED_DATABASE_PATH,
    SHARED_SCHEMA_VERSION,
    scan_labour_databases,
)
from fernd.storage.projections.runner import LABOUR_PROJECTORS
from fernd.storage.sqlite import BUSY_TIMEOUT_MS

logger = logging.getLogger(__name__)

# `PRAGMA integrity_check` stops after this many messages. Only the first one
# is printed, so more would only cost time on a badly damaged file.
INTEGRITY_CHECK_MAX_ERRORS: Final = 10


@dataclass
class CheckReport:
    """The outcome of a check: one line per problem, and what was checked."""

    problems: list[str] = field(default_factory=list)
    labour_count: int = 0

    @property
    def healthy(self) -> bool:
        return not self.problems


def _scalar(connection: apsw.Connection, sql: str) -> Any:
    """Return the first column of the first row of `sql`, or None."""
    row = connection.execute(sql).fetchone()
    return row[0] if row is not None else None


def _open_read_only(path: Path) -> apsw.Connection:
    connection = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    connection.set_busy_timeout(BUSY_TIMEOUT_MS)
    return connection


def _integrity_problem(connection: apsw.Connection) -> str | None:
    """Run `PRAGMA integrity_check` and return its first message with the
    count of the others, or None when the database is intact."""
    rows = connection.execute(
        f"PRAGMA integrity_check({INTEGRITY_CHECK_MAX_ERRORS})"
    ).fetchall()
    messages = [row[0] for row in rows if row[0] != "ok"]
    if not messages:
        return None
    more = f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""
    return f"integrity check failed: {messages[0]}{more}"


def _schema_problem(connection: apsw.Connection, supported: int) -> str | None:
    version: int = _scalar(connection, "PRAGMA user_version")
    if version == 0:
        return "has no schema (schema version 0)"
    if version > supported:
        return (
            f"schema version {version} is newer than this fernd's {supported};"
            " upgrade fernd"
        )
    return None


@dataclass
class _SharedState:
    """The shared checkpoints and labour directory, read for the labour
    checks."""

    # (labour id, projector name) -> last processed sequence.
    checkpoints: dict[tuple[str, str], int] = field(default_factory=dict)
    directory: set[str] = field(default_factory=set)


def _check_shared(path: Path, report: CheckReport) -> _SharedState:
    state = _SharedState()
    prefix = "shared database"
    try:
        connection = _open_read_only(path)
    except apsw.Error as error:
        report.problems.append(f"{prefix}: cannot be opened: {error}")
        return state
    try:
        problem = _integrity_problem(connection)
        if problem is not None:
            report.problems.append(f"{prefix}: {problem}")
            return state
        problem = _schema_problem(connection, SHARED_SCHEMA_VERSION)
        if problem is not None:
            report.problems.append(f"{prefix}: {problem}")
            return state
        with connection:
            rows: list[tuple[Any, ...]] = connection.execute(
                "SELECT labour_id, projector_name, last_processed_sequence, status,"
                " error_count FROM projection_checkpoints"
                " ORDER BY labour_id, projector_name"
            ).fetchall()
            state.directory = {
                row[0]
                for row in connection.execute("SELECT labour_id FROM labour_directory")
            }
    except apsw.Error as error:
        report.problems.append(f"{prefix}: cannot be read: {error}")
        return state
    finally:
        connection.close()

    for labour_id, name, sequence, status, error_count in rows:
        state.checkpoints[(labour_id, name)] = sequence
        if status == "error" and error_count >= MAX_PROJECTOR_ERROR_COUNT:
            report.problems.append(
                f"{prefix}: projector {name} is faulted for labour {labour_id}"
                f" after {error_count} errors in a row at sequence {sequence}"
            )
    return state


def _check_labour_rows(
    connection: apsw.Connection, prefix: str, report: CheckReport
) -> int:
    """Check the checkpoints and the effect ledger of one labour database in
    one read transaction, and return its last event sequence."""
    with connection:
        last: int = _scalar(connection, "SELECT max(sequence) FROM events") or 0
        checkpoints = {
            row[0]: (row[1], row[2], row[3])
            for row in connection.execute(
                "SELECT projector_name, last_processed_sequence, status, error_count"
                " FROM projection_checkpoints"
            )
        }
        process_manager: int = (
            _scalar(
                connection,
                "SELECT last_processed_sequence FROM process_manager_state"
                " WHERE id = 1",
            )
            or 0
        )
        failed_effects = connection.execute(
            "SELECT effect_id, effect_type, attempts FROM pending_effects"
            " WHERE status = 'FAILED' ORDER BY created_at, effect_id"
        ).fetchall()

    for projector in LABOUR_PROJECTORS:
        sequence, status, error_count = checkpoints.get(projector.name, (0, "", 0))
        if status == "error" and error_count >= MAX_PROJECTOR_ERROR_COUNT:
            report.problems.append(
                f"{prefix}: projector {projector.name} is faulted after"
                f" {error_count} errors in a row at sequence {sequence}"
            )
        elif sequence != last:
            report.problems.append(
                f"{prefix}: projector {projector.name} checkpoint is at sequence"
                f" {sequence}, but the last event is {last}"
            )
    if process_manager != last:
        report.problems.append(
            f"{prefix}: process manager checkpoint is at sequence {process_manager},"
            f" but the last event is {last}"
        )
    for effect_id, effect_type, attempts in failed_effects:
        report.problems.append(
            f"{prefix}: effect {effect_id} ({effect_type}) FAILED after"
            f" {attempts} attempts"
        )
    return last


def _check_labour(
    labour_id: UUID, path: Path, shared: _SharedState, report: CheckReport
) -> None:
    prefix = f"labour {labour_id}"
    try:
        connection = _open_read_only(path)
    except apsw.Error as error:
        # A purge deletes the database files of a labour while fernd serves.
        if path.exists():
            report.problems.append(f"{prefix}: database cannot be opened: {error}")
        return
    try:
        problem = _integrity_problem(connection)
        if problem is None:
            problem = _schema_problem(connection, LABOUR_SCHEMA_VERSION)
        if problem is not None:
            report.problems.append(f"{prefix}: {problem}")
            return
        last = _check_labour_rows(connection, prefix, report)
    except apsw.Error as error:
        report.problems.append(f"{prefix}: database cannot be read: {error}")
        return
    finally:
        connection.close()

    # The shared database was read first, so its checkpoints can only be at
    # or behind the events read now. One ahead means mismatched files.
    for (checkpoint_labour, name), sequence in shared.checkpoints.items():
        if checkpoint_labour == str(labour_id) and sequence > last:
            report.problems.append(
                f"{prefix}: shared projector {name} checkpoint is at sequence"
                f" {sequence}, ahead of the last event {last}"
            )


def check_data_dir(data_dir: Path) -> CheckReport:
    """Check every database of `data_dir` and return the problems found.

    Opens each database read-only, one at a time and for a short read
    transaction, so it is safe while fernd serves the directory. Raises
    ConfigError when `data_dir` has no `fernd.db`.
    """
    shared_path = data_dir / SHARED_DATABASE_PATH
    if not shared_path.is_file():
        raise ConfigError(
            f"No fernd data directory at {data_dir} (fernd.db is missing)"
        )
    report = CheckReport()
    # The shared database is read before the labours are listed, so that
    # every labour it lists has a database by the time the list is made.
    shared = _check_shared(shared_path, report)

    scan = scan_labour_databases(data_dir)
    for entry in scan.unexpected:
        report.problems.append(f"{entry!r}: unexpected entry, not a labour database")
    found: set[str] = set()
    for labour_id, path in scan.databases:
        _check_labour(labour_id, path, shared, report)
        found.add(str(labour_id))
    report.labour_count = len(scan.databases)

    for missing in sorted(shared.directory - found):
        report.problems.append(
            f"labour {missing}: listed in the labour directory, but has no database"
        )
    logger.debug(
        "Checked %s: %d labours, %d problems",
        data_dir,
        report.labour_count,
        len(report.problems),
    )
    return report
