"""LabourUpdateReadModel: one row per current labour update."""

from datetime import datetime
from uuid import UUID

import apsw
import msgspec

from fernd.domain import events as ev
from fernd.domain.enums import LabourUpdateType
from fernd.storage.labour_db import StoredEvent
from fernd.storage.projections.base import require_change, stamp


class LabourUpdateReadModel(msgspec.Struct, kw_only=True):
    labour_id: UUID
    labour_update_id: UUID
    labour_update_type: LabourUpdateType
    message: str
    edited: bool
    application_generated: bool
    created_at: datetime
    updated_at: datetime


class LabourUpdateProjector:
    name = "LabourUpdateReadModelProjector"
    handles: frozenset[type[ev.Event]] = frozenset(
        {
            ev.LabourUpdatePosted,
            ev.LabourUpdateMessageUpdated,
            ev.LabourUpdateTypeUpdated,
            ev.LabourUpdateDeleted,
            ev.LabourDeleted,
        }
    )

    def apply(self, connection: apsw.Connection, stored: StoredEvent) -> None:
        event = stored.event
        ts = stamp(stored.timestamp)
        match event:
            case ev.LabourUpdatePosted():
                sent = stamp(event.sent_time)
                connection.execute(
                    "INSERT INTO labour_updates (labour_update_id, labour_id,"
                    " labour_update_type, message, edited, application_generated,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
                    (
                        str(event.labour_update_id),
                        str(event.labour_id),
                        event.labour_update_type.value,
                        event.message,
                        int(event.application_generated),
                        sent,
                        sent,
                    ),
                )
            case ev.LabourUpdateMessageUpdated():
                connection.execute(
                    "UPDATE labour_updates SET message = ?, edited = 1, updated_at = ?"
                    " WHERE labour_update_id = ?",
                    (event.message, ts, str(event.labour_update_id)),
                )
                require_change(connection, "labour_updates")
            case ev.LabourUpdateTypeUpdated():
                connection.execute(
                    "UPDATE labour_updates SET labour_update_type = ?, updated_at = ?"
                    " WHERE labour_update_id = ?",
                    (event.labour_update_type.value, ts, str(event.labour_update_id)),
                )
                require_change(connection, "labour_updates")
            case ev.LabourUpdateDeleted():
                connection.execute(
                    "DELETE FROM labour_updates WHERE labour_update_id = ?",
                    (str(event.labour_update_id),),
                )
                require_change(connection, "labour_updates")
            case ev.LabourDeleted():
                connection.execute("DELETE FROM labour_updates")


_COLUMNS = (
    "labour_id, labour_update_id, labour_update_type, message, edited,"
    " application_generated, created_at, updated_at"
)


def _model(row: tuple) -> LabourUpdateReadModel:  # type: ignore[type-arg]
    return LabourUpdateReadModel(
        labour_id=UUID(row[0]),
        labour_update_id=UUID(row[1]),
        labour_update_type=LabourUpdateType(row[2]),
        message=row[3],
        edited=bool(row[4]),
        application_generated=bool(row[5]),
        created_at=datetime.fromisoformat(row[6]),
        updated_at=datetime.fromisoformat(row[7]),
    )


def get_labour_update(
    connection: apsw.Connection, labour_update_id: UUID, include_private: bool
) -> LabourUpdateReadModel | None:
    row = connection.execute(
        f"SELECT {_COLUMNS} FROM labour_updates WHERE labour_update_id = ?",
        (str(labour_update_id),),
    ).fetchone()
    if row is None:
        return None
    model = _model(row)
    if (
        not include_private
        and model.labour_update_type is LabourUpdateType.PRIVATE_NOTE
    ):
        return None
    return model


def list_labour_updates(
    connection: apsw.Connection,
    limit: int,
    after: tuple[datetime, UUID] | None,
    include_private: bool,
) -> list[LabourUpdateReadModel]:
    """Return up to `limit` visible updates ordered by `created_at`, then id, both
    descending, strictly after the cursor `after` when given."""
    conditions = []
    bindings: list[object] = []
    if not include_private:
        conditions.append("labour_update_type != 'PRIVATE_NOTE'")
    if after is not None:
        key, key_id = stamp(after[0]), str(after[1])
        conditions.append(
            "(created_at < ? OR (created_at = ? AND labour_update_id < ?))"
        )
        bindings += [key, key, key_id]
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = connection.execute(
        f"SELECT {_COLUMNS} FROM labour_updates{where}"
        " ORDER BY created_at DESC, labour_update_id DESC LIMIT ?",
        (*bindings, limit),
    )
    return [_model(row) for row in rows]
