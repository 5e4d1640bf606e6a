"""SubscriptionReadModel: one row per subscription, whatever its status."""

from datetime import datetime
from uuid import UUID

import apsw
import msgspec

from fernd.domain import events as ev
from fernd.domain.enums import (
    SubscriberAccessLevel,
    SubscriberContactMethod,
    SubscriberRole,
    SubscriberStatus,
)
from fernd.domain.labour import SUBSCRIPTION_STATUS_AFTER
from fernd.storage.labour_db import StoredEvent
from fernd.storage.projections.base import require_change, stamp


class SubscriptionReadModel(msgspec.Struct, kw_only=True):
    subscription_id: UUID
    labour_id: UUID
    subscriber_id: str
    role: SubscriberRole
    status: SubscriberStatus
    access_level: SubscriberAccessLevel
    contact_methods: list[SubscriberContactMethod]
    created_at: datetime
    updated_at: datetime


_methods_encoder = msgspec.json.Encoder()
_methods_decoder = msgspec.json.Decoder(list[SubscriberContactMethod])


class SubscriptionProjector:
    name = "SubscriptionReadModelProjector"
    handles: frozenset[type[ev.Event]] = frozenset(
        {
            ev.SubscriberRequested,
            ev.SubscriberRoleUpdated,
            ev.SubscriberAccessLevelUpdated,
            ev.SubscriberNotificationMethodsUpdated,
            ev.LabourDeleted,
            *SUBSCRIPTION_STATUS_AFTER,
        }
    )

    def _update(
        self,
        connection: apsw.Connection,
        column: str,
        value: object,
        ts: str,
        id_: UUID,
    ) -> None:
        connection.execute(
            f"UPDATE subscriptions SET {column} = ?, updated_at = ?"
            " WHERE subscription_id = ?",
            (value, ts, str(id_)),
        )
        require_change(connection, "subscriptions")

    def apply(self, connection: apsw.Connection, stored: StoredEvent) -> None:
        event = stored.event
        ts = stamp(stored.timestamp)
        match event:
            case ev.SubscriberRequested():
                connection.execute(
                    "INSERT INTO subscriptions (subscription_id, labour_id,"
                    " subscriber_id, role, status, access_level, contact_methods,"
                    " created_at, updated_at) VALUES"
                    " (?, ?, ?, 'LOVED_ONE', 'REQUESTED', 'BASIC', '[]', ?, ?)"
                    " ON CONFLICT (subscription_id) DO UPDATE SET"
                    " status = 'REQUESTED', updated_at = excluded.updated_at",
                    (
                        str(event.subscription_id),
                        str(event.labour_id),
                        event.subscriber_id,
                        ts,
                        ts,
                    ),
                )
            case ev.SubscriberRoleUpdated():
                self._update(
                    connection, "role", event.role.value, ts, event.subscription_id
                )
            case ev.SubscriberAccessLevelUpdated():
                self._update(
                    connection,
                    "access_level",
                    event.access_level.value,
                    ts,
                    event.subscription_id,
                )
            case ev.SubscriberNotificationMethodsUpdated():
                methods = _methods_encoder.encode(event.notification_methods).decode()
                self._update(
                    connection, "contact_methods", methods, ts, event.subscription_id
                )
            case ev.LabourDeleted():
                connection.execute("DELETE FROM subscriptions")
            case _:
                status = SUBSCRIPTION_STATUS_AFTER.get(type(event))
                if status is not None:
                    subscription_id = event.subscription_id  # type: ignore[attr-defined]
                    self._update(
                        connection, "status", status.value, ts, subscription_id
                    )


_COLUMNS = (
    "subscription_id, labour_id, subscriber_id, role, status, access_level,"
    " contact_methods, created_at, updated_at"
)


def _model(row: tuple) -> SubscriptionReadModel:  # type: ignore[type-arg]
    return SubscriptionReadModel(
        subscription_id=UUID(row[0]),
        labour_id=UUID(row[1]),
        subscriber_id=row[2],
        role=SubscriberRole(row[3]),
        status=SubscriberStatus(row[4]),
        access_level=SubscriberAccessLevel(row[5]),
        contact_methods=_methods_decoder.decode(row[6]),
        created_at=datetime.fromisoformat(row[7]),
        updated_at=datetime.fromisoformat(row[8]),
    )


def list_subscriptions(
    connection: apsw.Connection, limit: int
) -> list[SubscriptionReadModel]:
    rows = connection.execute(
        f"SELECT {_COLUMNS} FROM subscriptions"
        " ORDER BY created_at ASC, subscription_id ASC LIMIT ?",
        (limit,),
    )
    return [_model(row) for row in rows]


def subscription_of(
    connection: apsw.Connection, subscriber_id: str
) -> SubscriptionReadModel | None:
    row = connection.execute(
        f"SELECT {_COLUMNS} FROM subscriptions WHERE subscriber_id = ?",
        (subscriber_id,),
    ).fetchone()
    return _model(row) if row is not None else None
