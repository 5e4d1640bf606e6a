"""Labour exports: the contractions as CSV and the full labour record as JSON,
both served over HTTP, and the raw event stream that `fernd export` writes.

The HTTP exports are built from the labour's read models and aggregate on the
actor's connection, like queries. The event stream is read from the labour's
database file on a separate connection that never writes, so it works both
while the server runs and while it is stopped.
"""

import csv
import io
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from uuid import UUID

import apsw
import msgspec

from fernd.domain.datetimes import format_datetime
from fernd.domain.enums import StatisticsRange
from fernd.domain.labour import Labour
from fernd.domain.statistics import ContractionStatistics, compute_statistics
from fernd.storage.labour_db import LabourDatabase, labour_database_path
from fernd.storage.projections import contraction as contraction_model
from fernd.storage.projections import labour as labour_model
from fernd.storage.projections import labour_update as labour_update_model
from fernd.storage.projections.contraction import ContractionReadModel
from fernd.storage.projections.labour import LabourReadModel
from fernd.storage.projections.labour_update import LabourUpdateReadModel
from fernd.storage.sqlite import BUSY_TIMEOUT_MS

logger = logging.getLogger(__name__)

CSV_COLUMNS = (
    "contraction_id",
    "start_time",
    "end_time",
    "duration_seconds",
    "intensity",
)
# SQLite reads a negative LIMIT as no limit; the read-model list functions
# take a limit because the queries page through them.
_NO_LIMIT = -1

_encoder = msgspec.json.Encoder()


class LabourRecord(msgspec.Struct, kw_only=True):
    """The JSON export of one labour, as one reader may see it."""

    labour: LabourReadModel
    # Ordered by start time, then id, both ascending.
    contractions: list[ContractionReadModel]
    # Ordered by created_at, then id, both ascending; private notes only for
    # the mother and birth partners.
    labour_updates: list[LabourUpdateReadModel]
    # Over every contraction of the labour (range "all").
    statistics: ContractionStatistics
    exported_at: datetime


def contractions_in_start_order(
    connection: apsw.Connection,
) -> list[ContractionReadModel]:
    """Return every contraction ordered by start time, then id, ascending."""
    newest_first = contraction_model.list_contractions(connection, _NO_LIMIT, None)
    return newest_first[::-1]


def contractions_csv(contractions: list[ContractionReadModel]) -> str:
    """Write a header row and one row per contraction, with datetimes in the
    wire form and an empty intensity for a contraction still in progress.

    Every field is a UUID, a datetime written by fernd or a number, never
    text a user typed, so no cell can start with `=`, `+`, `-` or `@` and
    spreadsheet formula injection needs no escaping here.
    """
    output = io.StringIO()
    writer = csv.writer(output, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for contraction in contractions:
        writer.writerow(
            (
                str(contraction.contraction_id),
                format_datetime(contraction.duration.start_time),
                format_datetime(contraction.duration.end_time),
                repr(contraction.duration_seconds),
                "" if contraction.intensity is None else str(contraction.intensity),
            )
        )
    return output.getvalue()


def labour_record(
    connection: apsw.Connection,
    state: Labour,
    include_private_notes: bool,
    now: datetime,
) -> LabourRecord | None:
    """Build the JSON export from the labour's read models and `state`, its
    aggregate. Return None when the labour has no read-model row."""
    labour = labour_model.get_labour(connection)
    if labour is None:
        return None
    updates = labour_update_model.list_labour_updates(
        connection, _NO_LIMIT, None, include_private_notes
    )
    statistics = compute_statistics(
        state.contractions.values(), state.first_labour, StatisticsRange.ALL, now
    )
    return LabourRecord(
        labour=labour,
        contractions=contractions_in_start_order(connection),
        labour_updates=updates[::-1],
        statistics=statistics,
        exported_at=now,
    )


def encode_record(record: LabourRecord) -> bytes:
    return _encoder.encode(record)


# The raw event stream


class ExportedEvent(msgspec.Struct, kw_only=True):
    """One line of `fernd export`: an event with its metadata."""

    sequence: int
    event_type: str
    # The stored JSON, `{"type": <name>, "data": {...}}`, written unchanged.
    event: msgspec.Raw
    created_at: datetime
    user_id: str


class LabourNotFound(Exception):
    """The data directory has no database for the labour."""


def open_for_reading(data_dir: Path, labour_id: UUID) -> LabourDatabase:
    """Open the labour's database on a connection that rejects every write.

    The connection is opened read-write with `query_only` set, not with
    SQLITE_OPEN_READONLY: a read-only connection to a WAL database leaves the
    -wal and -shm files behind when it closes. Close it with
    `database.connection.close()`, not `database.close()`, which checkpoints.
    Raises LabourNotFound when the database file is missing.
    """
    path = labour_database_path(data_dir, labour_id)
    if not path.is_file():
        raise LabourNotFound(f"No labour {labour_id} in {data_dir}")
    connection = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        connection.set_busy_timeout(BUSY_TIMEOUT_MS)
        connection.execute("PRAGMA query_only = ON")
    except apsw.Error:
        connection.close()
        raise
    return LabourDatabase(connection, labour_id)


def export_events(database: LabourDatabase, write: Callable[[bytes], object]) -> int:
    """Call `write` with one JSON line per stored event of the labour, in
    sequence order, and return the number of events.

    Reads in one transaction, so the lines are a consistent prefix of the
    stream even while the server appends.
    """
    count = 0
    with database.connection:
        for stored in database.events_after(0):
            line = ExportedEvent(
                sequence=stored.sequence,
                event_type=stored.event.name,
                event=msgspec.Raw(stored.data),
                created_at=stored.timestamp,
                user_id=stored.user_id,
            )
            write(_encoder.encode(line) + b"\n")
            count += 1
    return count
