"""LabourReadModel: one row per labour in `labours`."""

from datetime import datetime
from uuid import UUID

import apsw
import msgspec

from fernd.domain import events as ev
from fernd.domain.enums import LabourPhase
from fernd.storage.labour_db import StoredEvent
from fernd.storage.projections.base import parse_stamp, require_change, stamp


class LabourReadModel(msgspec.Struct, kw_only=True):
    labour_id: UUID
    mother_id: str
    mother_name: str
    current_phase: LabourPhase
    first_labour: bool
    due_date: datetime
    labour_name: str | None
    start_time: datetime | None
    end_time: datetime | None
    notes: str | None
    created_at: datetime
    updated_at: datetime


class LabourProjector:
    name = "LabourReadModelProjector"
    handles: frozenset[type[ev.Event]] = frozenset(
        {
            ev.LabourPlanned,
            ev.LabourPlanUpdated,
            ev.LabourBegun,
            ev.LabourCompleted,
            ev.LabourPhaseChanged,
            ev.LabourDeleted,
        }
    )

    def apply(self, connection: apsw.Connection, stored: StoredEvent) -> None:
        event = stored.event
        ts = stamp(stored.timestamp)
        labour_id = str(event.labour_id)
        match event:
            case ev.LabourPlanned():
                connection.execute(
                    "INSERT INTO labours (labour_id, mother_id, mother_name,"
                    " current_phase, first_labour, due_date, labour_name,"
                    " created_at, updated_at) VALUES (?, ?, ?, 'PLANNED', ?, ?, ?, ?,"
                    " ?)",
                    (
                        labour_id,
                        event.mother_id,
                        event.mother_name,
                        int(event.first_labour),
                        stamp(event.due_date),
                        event.labour_name,
                        ts,
                        ts,
                    ),
                )
                return
            case ev.LabourPlanUpdated():
                connection.execute(
                    "UPDATE labours SET first_labour = ?, due_date = ?,"
                    " labour_name = ?, updated_at = ? WHERE labour_id = ?",
                    (
                        int(event.first_labour),
                        stamp(event.due_date),
                        event.labour_name,
                        ts,
                        labour_id,
                    ),
                )
            case ev.LabourBegun():
                connection.execute(
                    "UPDATE labours SET start_time = ?, updated_at = ?"
                    " WHERE labour_id = ?",
                    (stamp(event.start_time), ts, labour_id),
                )
            case ev.LabourCompleted():
                connection.execute(
                    "UPDATE labours SET end_time = ?, notes = ?, updated_at = ?"
                    " WHERE labour_id = ?",
                    (stamp(event.end_time), event.notes, ts, labour_id),
                )
            case ev.LabourPhaseChanged():
                connection.execute(
                    "UPDATE labours SET current_phase = ?, updated_at = ?"
                    " WHERE labour_id = ?",
                    (event.labour_phase.value, ts, labour_id),
                )
            case ev.LabourDeleted():
                connection.execute(
                    "DELETE FROM labours WHERE labour_id = ?", (labour_id,)
                )
            case _:
                return
        require_change(connection, "labours")


def get_labour(connection: apsw.Connection) -> LabourReadModel | None:
    row = connection.execute(
        "SELECT labour_id, mother_id, mother_name, current_phase, first_labour,"
        " due_date, labour_name, start_time, end_time, notes, created_at, updated_at"
        " FROM labours"
    ).fetchone()
    if row is None:
        return None
    return LabourReadModel(
        labour_id=UUID(row[0]),
        mother_id=row[1],
        mother_name=row[2],
        current_phase=LabourPhase(row[3]),
        first_labour=bool(row[4]),
        due_date=datetime.fromisoformat(row[5]),
        labour_name=row[6],
        start_time=parse_stamp(row[7]),
        end_time=parse_stamp(row[8]),
        notes=row[9],
        created_at=datetime.fromisoformat(row[10]),
        updated_at=datetime.fromisoformat(row[11]),
    )
