"""SubscriptionTokenReadModel: the labour's current share token, if any."""

import apsw

from fernd.domain import events as ev
from fernd.storage.labour_db import StoredEvent
from fernd.storage.projections.base import stamp


class SubscriptionTokenProjector:
    name = "SubscriptionTokenReadModelProjector"
    handles: frozenset[type[ev.Event]] = frozenset(
        {ev.SubscriptionTokenSet, ev.SubscriptionTokenInvalidated, ev.LabourDeleted}
    )

    def apply(self, connection: apsw.Connection, stored: StoredEvent) -> None:
        event = stored.event
        ts = stamp(stored.timestamp)
        match event:
            case ev.SubscriptionTokenSet():
                connection.execute(
                    "INSERT INTO subscription_token (labour_id, token, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (labour_id) DO UPDATE"
                    " SET token = excluded.token, created_at = excluded.created_at,"
                    " updated_at = excluded.updated_at",
                    (str(event.labour_id), event.token, ts, ts),
                )
            case ev.SubscriptionTokenInvalidated() | ev.LabourDeleted():
                connection.execute("DELETE FROM subscription_token")


def get_token(connection: apsw.Connection) -> str | None:
    row = connection.execute("SELECT token FROM subscription_token").fetchone()
    return row[0] if row is not None else None
