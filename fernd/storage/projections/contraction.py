"""ContractionReadModel: one row per current contraction in `contractions`."""

from datetime import datetime
from uuid import UUID

import apsw
import msgspec

from fernd.domain import events as ev
from fernd.storage.labour_db import StoredEvent
from fernd.storage.projections.base import (
    ProjectionError,
    require_change,
    stamp,
)


class Duration(msgspec.Struct):
    start_time: datetime
    end_time: datetime


class ContractionReadModel(msgspec.Struct, kw_only=True):
    labour_id: UUID
    contraction_id: UUID
    duration: Duration
    duration_seconds: float
    intensity: int | None
    created_at: datetime
    updated_at: datetime


def _seconds(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


class ContractionProjector:
    name = "ContractionReadModelProjector"
    handles: frozenset[type[ev.Event]] = frozenset(
        {
            ev.ContractionStarted,
            ev.ContractionEnded,
            ev.ContractionUpdated,
            ev.ContractionDeleted,
            ev.LabourDeleted,
        }
    )

    def apply(self, connection: apsw.Connection, stored: StoredEvent) -> None:
        event = stored.event
        ts = stamp(stored.timestamp)
        match event:
            case ev.ContractionStarted():
                start = stamp(event.start_time)
                connection.execute(
                    "INSERT INTO contractions (contraction_id, labour_id, start_time,"
                    " end_time, duration_seconds, intensity, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, 0.0, NULL, ?, ?)",
                    (
                        str(event.contraction_id),
                        str(event.labour_id),
                        start,
                        start,
                        ts,
                        ts,
                    ),
                )
            case ev.ContractionEnded():
                row = connection.execute(
                    "SELECT start_time FROM contractions WHERE contraction_id = ?",
                    (str(event.contraction_id),),
                ).fetchone()
                if row is None:
                    raise ProjectionError("No contractions row to change")
                start_time = datetime.fromisoformat(row[0])
                connection.execute(
                    "UPDATE contractions SET end_time = ?, duration_seconds = ?,"
                    " intensity = ?, updated_at = ? WHERE contraction_id = ?",
                    (
                        stamp(event.end_time),
                        _seconds(start_time, event.end_time),
                        event.intensity,
                        ts,
                        str(event.contraction_id),
                    ),
                )
            case ev.ContractionUpdated():
                row = connection.execute(
                    "SELECT start_time, end_time, intensity FROM contractions"
                    " WHERE contraction_id = ?",
                    (str(event.contraction_id),),
                ).fetchone()
                if row is None:
                    raise ProjectionError("No contractions row to change")
                start = event.start_time or datetime.fromisoformat(row[0])
                end = event.end_time or datetime.fromisoformat(row[1])
                intensity = event.intensity if event.intensity is not None else row[2]
                connection.execute(
                    "UPDATE contractions SET start_time = ?, end_time = ?,"
                    " duration_seconds = ?, intensity = ?, updated_at = ?"
                    " WHERE contraction_id = ?",
                    (
                        stamp(start),
                        stamp(end),
                        _seconds(start, end),
                        intensity,
                        ts,
                        str(event.contraction_id),
                    ),
                )
            case ev.ContractionDeleted():
                connection.execute(
                    "DELETE FROM contractions WHERE contraction_id = ?",
                    (str(event.contraction_id),),
                )
                require_change(connection, "contractions")
            case ev.LabourDeleted():
                connection.execute("DELETE FROM contractions")


_COLUMNS = (
    "labour_id, contraction_id, start_time, end_time, duration_seconds, intensity,"
    " created_at, updated_at"
)


def _model(row: tuple) -> ContractionReadModel:  # type: ignore[type-arg]
    return ContractionReadModel(
        labour_id=UUID(row[0]),
        contraction_id=UUID(row[1]),
        duration=Duration(
            datetime.fromisoformat(row[2]), datetime.fromisoformat(row[3])
        ),
        duration_seconds=row[4],
        intensity=row[5],
        created_at=datetime.fromisoformat(row[6]),
        updated_at=datetime.fromisoformat(row[7]),
    )


def get_contraction(
    connection: apsw.Connection, contraction_id: UUID
) -> ContractionReadModel | None:
    row = connection.execute(
        f"SELECT {_COLUMNS} FROM contractions WHERE contraction_id = ?",
        (str(contraction_id),),
    ).fetchone()
    return _model(row) if row is not None else None


def list_contractions(
    connection: apsw.Connection, limit: int, after: tuple[datetime, UUID] | None
) -> list[ContractionReadModel]:
    """Return up to `limit` contractions ordered by start time, then id, both
    descending, strictly after the cursor `after` when given."""
    if after is None:
        rows = connection.execute(
            f"SELECT {_COLUMNS} FROM contractions"
            " ORDER BY start_time DESC, contraction_id DESC LIMIT ?",
            (limit,),
        )
    else:
        key, key_id = stamp(after[0]), str(after[1])
        rows = connection.execute(
            f"SELECT {_COLUMNS} FROM contractions"
            " WHERE start_time < ? OR (start_time = ? AND contraction_id < ?)"
            " ORDER BY start_time DESC, contraction_id DESC LIMIT ?",
            (key, key, key_id, limit),
        )
    return [_model(row) for row in rows]
