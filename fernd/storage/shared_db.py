"""The shared database: the read models that span labours, their
per-labour checkpoints, the labour directory and the idempotency records of
`POST /api/v1/labour/plan`.

No other module depends on the shared store being SQLite.
"""

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from uuid import UUID

import apsw
import msgspec

from fernd.domain import events as ev
from fernd.domain.constants import MAX_PROJECTOR_ERROR_COUNT
from fernd.domain.datetimes import sortable_datetime
from fernd.domain.enums import LabourPhase, SubscriberStatus
from fernd.domain.labour import SUBSCRIPTION_STATUS_AFTER
from fernd.storage.labour_db import RecordedOutcome, StoredEvent
from fernd.storage.sqlite import (
    checkpoint_and_close,
    migrate,
    open_database,
    rows_as_dicts,
    translate_errors,
)

logger = logging.getLogger(__name__)

_MIGRATIONS = [
    """
    CREATE TABLE labour_status (
        labour_id TEXT PRIMARY KEY,
        mother_id TEXT NOT NULL,
        mother_name TEXT NOT NULL,
        current_phase TEXT NOT NULL,
        labour_name TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX labour_status_by_mother ON labour_status (mother_id);
    CREATE INDEX labour_status_by_updated
        ON labour_status (updated_at DESC, labour_id DESC);
    CREATE TABLE subscription_status (
        subscription_id TEXT PRIMARY KEY,
        labour_id TEXT NOT NULL,
        subscriber_id TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX subscription_status_by_subscriber
        ON subscription_status (subscriber_id);
    CREATE INDEX subscription_status_by_updated
        ON subscription_status (updated_at DESC, subscription_id DESC);
    CREATE TABLE projection_checkpoints (
        projector_name TEXT NOT NULL,
        labour_id TEXT NOT NULL,
        last_processed_sequence INTEGER NOT NULL DEFAULT 0,
        last_processed_at TEXT,
        updated_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'healthy',
        error_message TEXT,
        error_count INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (projector_name, labour_id)
    );
    CREATE TABLE plan_idempotency (
        user_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (user_id, idempotency_key)
    );
    CREATE TABLE labour_directory (
        labour_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        pending_since TEXT
    );
    CREATE INDEX labour_directory_pending ON labour_directory (pending_since)
        WHERE pending_since IS NOT NULL;
    """,
    """
    CREATE TABLE notification_log (
        idempotency_key TEXT PRIMARY KEY,
        labour_id TEXT NOT NULL,
        effect_id TEXT NOT NULL,
        recipient_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        template TEXT,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX notification_log_by_labour ON notification_log (labour_id, created_at);
    CREATE INDEX notification_log_by_status ON notification_log (status, created_at);
    CREATE TABLE contact_messages (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        email TEXT NOT NULL,
        category TEXT NOT NULL,
        message TEXT NOT NULL,
        user_id TEXT,
        forwarded INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE accounts (
        user_id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        name TEXT,
        first_name TEXT,
        last_name TEXT,
        phone_number TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE refresh_tokens (
        token_hash TEXT PRIMARY KEY,
        family_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        rotated_at TEXT,
        revoked_at TEXT
    );
    CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
    CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);
    CREATE TABLE password_resets (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
    );
    CREATE INDEX password_resets_by_user ON password_resets (user_id);
    """,
]

# Events a shared checkpoint may lag behind in the database while its
# projector changes no row.
CHECKPOINT_SAVE_INTERVAL = 256
LABOUR_STATUS_PROJECTOR = "LabourStatusReadModelProjector"
SUBSCRIPTION_STATUS_PROJECTOR = "SubscriptionStatusReadModelProjector"
SHARED_PROJECTORS = (LABOUR_STATUS_PROJECTOR, SUBSCRIPTION_STATUS_PROJECTOR)
# Tables with a labour_id column whose rows belong to that one labour.
_LABOUR_KEYED_TABLES = (
    "labour_status",
    "subscription_status",
    "projection_checkpoints",
    "labour_directory",
    "notification_log",
)


class LabourStatusReadModel(msgspec.Struct, kw_only=True):
    labour_id: UUID
    mother_id: str
    mother_name: str
    current_phase: LabourPhase
    labour_name: str | None
    created_at: datetime
    updated_at: datetime


class SubscriptionStatusReadModel(msgspec.Struct, kw_only=True):
    subscription_id: UUID
    labour_id: UUID
    subscriber_id: str
    status: SubscriberStatus
    created_at: datetime
    updated_at: datetime


class SharedProjectionError(Exception):
    """A shared projector found no row for an event that changes one."""


def _labour_status(connection: apsw.Connection, stored: StoredEvent) -> bool:
    """Apply one event to `labour_status`; return True when a row changed."""
    event = stored.event
    ts = sortable_datetime(stored.timestamp)
    labour_id = str(event.labour_id)
    match event:
        case ev.LabourPlanned():
            connection.execute(
                "INSERT INTO labour_status (labour_id, mother_id, mother_name,"
                " current_phase, labour_name, created_at, updated_at)"
                " VALUES (?, ?, ?, 'PLANNED', ?, ?, ?)",
                (
                    labour_id,
                    event.mother_id,
                    event.mother_name,
                    event.labour_name,
                    ts,
                    ts,
                ),
            )
            return True
        case ev.LabourPlanUpdated():
            connection.execute(
                "UPDATE labour_status SET labour_name = ?, updated_at = ?"
                " WHERE labour_id = ?",
                (event.labour_name, ts, labour_id),
            )
        case ev.LabourPhaseChanged():
            connection.execute(
                "UPDATE labour_status SET current_phase = ?, updated_at = ?"
                " WHERE labour_id = ?",
                (event.labour_phase.value, ts, labour_id),
            )
        case ev.LabourDeleted():
            connection.execute(
                "DELETE FROM labour_status WHERE labour_id = ?", (labour_id,)
            )
            return True
        case _:
            return False
    if connection.changes() == 0:
        raise SharedProjectionError(f"No labour_status row for labour {labour_id}")
    return True


def _subscription_status(connection: apsw.Connection, stored: StoredEvent) -> bool:
    """Apply one event to `subscription_status`; return True when a row changed."""
    event = stored.event
    ts = sortable_datetime(stored.timestamp)
    match event:
        case ev.SubscriberRequested():
            connection.execute(
                "INSERT INTO subscription_status (subscription_id, labour_id,"
                " subscriber_id, status, created_at, updated_at)"
                " VALUES (?, ?, ?, 'REQUESTED', ?, ?) ON CONFLICT (subscription_id)"
                " DO UPDATE SET status = 'REQUESTED', updated_at = excluded.updated_at",
                (
                    str(event.subscription_id),
                    str(event.labour_id),
                    event.subscriber_id,
                    ts,
                    ts,
                ),
            )
            return True
        case ev.LabourDeleted():
            connection.execute(
                "DELETE FROM subscription_status WHERE labour_id = ?",
                (str(event.labour_id),),
            )
            return True
    status = SUBSCRIPTION_STATUS_AFTER.get(type(event))
    if status is None:
        return False
    subscription_id = str(event.subscription_id)  # type: ignore[attr-defined]
    connection.execute(
        "UPDATE subscription_status SET status = ?, updated_at = ?"
        " WHERE subscription_id = ?",
        (status.value, ts, subscription_id),
    )
    if connection.changes() == 0:
        raise SharedProjectionError(f"No subscription_status row for {subscription_id}")
    return True


_APPLY = {
    LABOUR_STATUS_PROJECTOR: _labour_status,
    SUBSCRIPTION_STATUS_PROJECTOR: _subscription_status,
}


class SharedCheckpoint(msgspec.Struct, kw_only=True):
    last_processed_sequence: int = 0
    status: str = "healthy"
    error_count: int = 0
    # The sequence written in the database, and the last event applied since
    # then, when `project` has not written it yet.
    stored_sequence: int = 0
    unsaved: StoredEvent | None = None

    @property
    def faulted(self) -> bool:
        return self.status == "error" and self.error_count >= MAX_PROJECTOR_ERROR_COUNT


class SharedDatabase:
    """The shared SQLite database, used only from the Trio thread."""

    def __init__(self, connection: apsw.Connection) -> None:
        self.connection = connection

    @classmethod
    def open(cls, data_dir: Path, synchronous: str) -> "SharedDatabase":
        connection = open_database(data_dir / "fernd.db", synchronous, create=True)
        with translate_errors("Migrating the shared database"):
            migrate(connection, _MIGRATIONS)
        return cls(connection)

    def close(self) -> None:
        checkpoint_and_close(self.connection)

    # Shared projections

    def checkpoints(self, labour_id: UUID) -> dict[str, SharedCheckpoint]:
        rows = self.connection.execute(
            "SELECT projector_name, last_processed_sequence, status, error_count"
            " FROM projection_checkpoints WHERE labour_id = ?",
            (str(labour_id),),
        ).fetchall()
        stored = {
            row[0]: SharedCheckpoint(
                last_processed_sequence=row[1],
                status=row[2],
                error_count=row[3],
                stored_sequence=row[1],
            )
            for row in rows
        }
        return {
            name: stored.get(name, SharedCheckpoint()) for name in SHARED_PROJECTORS
        }

    def project(
        self,
        labour_id: UUID,
        checkpoints: dict[str, SharedCheckpoint],
        events: Sequence[StoredEvent],
        now: datetime,
    ) -> bool:
        """Apply `events` to each shared projector after its checkpoint, rows
        and checkpoint in one transaction per projector. Checkpoints are
        updated in place. Return False when a projector failed.

        A checkpoint is written with every row it changes, and otherwise at
        least every CHECKPOINT_SAVE_INTERVAL events and by `save_checkpoints`
        when the labour closes. Events that changed no row leave no work
        behind, so a checkpoint that lags after a crash only makes the next
        activation apply them again without effect, and most batches of a
        busy labour need no commit of this database.
        """
        succeeded = True
        for name, apply in _APPLY.items():
            checkpoint = checkpoints[name]
            if checkpoint.faulted:
                continue
            pending = [
                s for s in events if s.sequence > checkpoint.last_processed_sequence
            ]
            if not pending:
                continue
            last = pending[-1]
            try:
                with self.connection:
                    changed = False
                    for stored in pending:
                        changed = apply(self.connection, stored) or changed
                    save = (
                        changed
                        or checkpoint.status != "healthy"
                        or last.sequence - checkpoint.stored_sequence
                        >= CHECKPOINT_SAVE_INTERVAL
                    )
                    if save:
                        self._write_checkpoint(name, labour_id, last, None, 0, now)
            except Exception as error:
                checkpoint.status = "error"
                checkpoint.error_count += 1
                message = f"{type(error).__name__}: {error}"
                with self.connection:
                    self._write_checkpoint(
                        name,
                        labour_id,
                        None,
                        message,
                        checkpoint.error_count,
                        now,
                        sequence=checkpoint.last_processed_sequence,
                    )
                logger.error(
                    "Shared projector %s failed on labour %s after sequence %d"
                    " (%d in a row%s): %s",
                    name,
                    labour_id,
                    checkpoint.last_processed_sequence,
                    checkpoint.error_count,
                    ", now faulted" if checkpoint.faulted else "",
                    message,
                )
                succeeded = False
                continue
            checkpoint.last_processed_sequence = last.sequence
            checkpoint.status = "healthy"
            checkpoint.error_count = 0
            if save:
                checkpoint.stored_sequence = last.sequence
                checkpoint.unsaved = None
            else:
                checkpoint.unsaved = last
        return succeeded

    def save_checkpoints(
        self,
        labour_id: UUID,
        checkpoints: dict[str, SharedCheckpoint],
        now: datetime,
    ) -> None:
        """Write the checkpoints that `project` left unwritten, in one
        transaction; called when a labour closes."""
        with self.connection:
            for name, checkpoint in checkpoints.items():
                last = checkpoint.unsaved
                if last is None or checkpoint.status != "healthy":
                    continue
                self._write_checkpoint(name, labour_id, last, None, 0, now)
                checkpoint.stored_sequence = last.sequence
                checkpoint.unsaved = None

    def _write_checkpoint(
        self,
        name: str,
        labour_id: UUID,
        last: StoredEvent | None,
        error: str | None,
        error_count: int,
        now: datetime,
        sequence: int | None = None,
    ) -> None:
        if last is not None:
            sequence = last.sequence
            processed_at: str | None = sortable_datetime(last.timestamp)
            self.connection.execute(
                "INSERT INTO projection_checkpoints (projector_name, labour_id,"
                " last_processed_sequence, last_processed_at, updated_at, status,"
                " error_message, error_count) VALUES (?, ?, ?, ?, ?, 'healthy', NULL,"
                " 0)"
                " ON CONFLICT (projector_name, labour_id) DO UPDATE SET"
                " last_processed_sequence = excluded.last_processed_sequence,"
                " last_processed_at = excluded.last_processed_at,"
                " updated_at = excluded.updated_at, status = 'healthy',"
                " error_message = NULL, error_count = 0",
                (name, str(labour_id), sequence, processed_at, sortable_datetime(now)),
            )
            return
        self.connection.execute(
            "INSERT INTO projection_checkpoints (projector_name, labour_id,"
            " last_processed_sequence, updated_at, status, error_message, error_count)"
            " VALUES (?, ?, ?, ?, 'error', ?, ?) ON CONFLICT (projector_name,"
            " labour_id)"
            " DO UPDATE SET updated_at = excluded.updated_at, status = 'error',"
            " error_message = excluded.error_message, error_count ="
            " excluded.error_count",
            (
                name,
                str(labour_id),
                sequence or 0,
                sortable_datetime(now),
                error,
                error_count,
            ),
        )

    def clear_labour(self, labour_id: UUID) -> None:
        """Delete the labour's shared rows and checkpoints, for a rebuild."""
        with self.connection:
            for table in (
                "labour_status",
                "subscription_status",
                "projection_checkpoints",
            ):
                self.connection.execute(
                    f"DELETE FROM {table} WHERE labour_id = ?", (str(labour_id),)
                )

    def delete_labour_rows(self, labour_id: UUID) -> dict[str, int]:
        """Delete every shared row that names the labour, in one transaction:
        its read-model rows, checkpoints, directory entry and notification log,
        and the recorded plan replies whose body contains its id. Return the
        number of rows deleted per table."""
        text = str(labour_id)
        deleted: dict[str, int] = {}
        with self.connection:
            for table in _LABOUR_KEYED_TABLES:
                self.connection.execute(
                    f"DELETE FROM {table} WHERE labour_id = ?", (text,)
                )
                deleted[table] = self.connection.changes()
            # A recorded plan reply is `{"labour_id": "<id>"}`; instr() matches
            # the id as plain text, where LIKE would treat `_` as a wildcard.
            self.connection.execute(
                "DELETE FROM plan_idempotency WHERE instr(body, ?) > 0", (text,)
            )
            deleted["plan_idempotency"] = self.connection.changes()
        return deleted

    # Queries

    def labour_history(self, mother_id: str, limit: int) -> list[LabourStatusReadModel]:
        rows = self.connection.execute(
            f"SELECT {_LABOUR_STATUS_COLUMNS} FROM labour_status WHERE mother_id = ?"
            " ORDER BY updated_at DESC, labour_id DESC LIMIT ?",
            (mother_id, limit),
        )
        return [_labour_status_model(row) for row in rows]

    def active_labour(self, mother_id: str) -> LabourStatusReadModel | None:
        row = self.connection.execute(
            f"SELECT {_LABOUR_STATUS_COLUMNS} FROM labour_status WHERE mother_id = ?"
            " AND current_phase != 'COMPLETE'"
            " ORDER BY updated_at DESC, labour_id DESC LIMIT 1",
            (mother_id,),
        ).fetchone()
        return _labour_status_model(row) if row is not None else None

    def subscriptions_of(
        self, subscriber_id: str, limit: int
    ) -> list[SubscriptionStatusReadModel]:
        rows = self.connection.execute(
            "SELECT subscription_id, labour_id, subscriber_id, status, created_at,"
            " updated_at FROM subscription_status"
            " WHERE subscriber_id = ? AND status = 'SUBSCRIBED'"
            " ORDER BY updated_at DESC, subscription_id DESC LIMIT ?",
            (subscriber_id, limit),
        )
        return [
            SubscriptionStatusReadModel(
                subscription_id=UUID(row[0]),
                labour_id=UUID(row[1]),
                subscriber_id=row[2],
                status=SubscriberStatus(row[3]),
                created_at=datetime.fromisoformat(row[4]),
                updated_at=datetime.fromisoformat(row[5]),
            )
            for row in rows
        ]

    def labour_statuses(
        self, labour_ids: Sequence[UUID]
    ) -> list[LabourStatusReadModel]:
        """Return the `labour_status` rows of `labour_ids`, in that order."""
        found = {}
        for labour_id in labour_ids:
            row = self.connection.execute(
                f"SELECT {_LABOUR_STATUS_COLUMNS} FROM labour_status WHERE labour_id"
                f" = ?",
                (str(labour_id),),
            ).fetchone()
            if row is not None:
                found[labour_id] = _labour_status_model(row)
        return [found[labour_id] for labour_id in labour_ids if labour_id in found]

    # Idempotency of POST /api/v1/labour/plan

    def plan_outcome(self, user_id: str, key: str) -> RecordedOutcome | None:
        row = self.connection.execute(
            "SELECT fingerprint, status, body FROM plan_idempotency"
            " WHERE user_id = ? AND idempotency_key = ?",
            (user_id, key),
        ).fetchone()
        if row is None:
            return None
        return RecordedOutcome(row[0], row[1], row[2].encode() if row[2] else None)

    def record_plan_outcome(
        self, user_id: str, key: str, outcome: RecordedOutcome, now: datetime
    ) -> None:
        with self.connection:
            self.connection.execute(
                "INSERT OR REPLACE INTO plan_idempotency (user_id, idempotency_key,"
                " fingerprint, status, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    user_id,
                    key,
                    outcome.fingerprint,
                    outcome.status,
                    outcome.body.decode() if outcome.body is not None else None,
                    sortable_datetime(now),
                ),
            )

    # Notification log: one row per notification, updated at every attempt

    def log_notification(
        self,
        idempotency_key: str,
        *,
        labour_id: UUID,
        effect_id: str,
        recipient_id: str,
        channel: str,
        status: str,
        now: datetime,
        template: str | None = None,
        error: str | None = None,
        new_attempt: bool = False,
    ) -> None:
        """Insert or update the log row of one notification. `recipient_id`
        is a user id or an opaque reference, never a contact detail."""
        with self.connection:
            self.connection.execute(
                "INSERT INTO notification_log (idempotency_key, labour_id, effect_id,"
                " recipient_id, channel, template, status, attempts, last_error,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (idempotency_key) DO UPDATE SET status = excluded.status,"
                " template = coalesce(excluded.template, template),"
                " attempts = attempts + ?, last_error = excluded.last_error,"
                " updated_at = excluded.updated_at",
                (
                    idempotency_key,
                    str(labour_id),
                    effect_id,
                    recipient_id,
                    channel,
                    template,
                    status,
                    1 if new_attempt else 0,
                    error,
                    sortable_datetime(now),
                    sortable_datetime(now),
                    1 if new_attempt else 0,
                ),
            )

    def notifications(
        self,
        *,
        labour_id: UUID | None = None,
        status: str | None = None,
        channel: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, object]]:
        """Return log rows, newest first, filtered by whichever is given."""
        conditions, bindings = [], []
        for column, value in (
            ("labour_id", labour_id),
            ("status", status),
            ("channel", channel),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                bindings.append(str(value))
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        cursor = self.connection.execute(
            "SELECT idempotency_key, labour_id, effect_id, recipient_id, channel,"
            " template, status, attempts, last_error, created_at, updated_at"
            f" FROM notification_log{where} ORDER BY created_at DESC LIMIT ?",
            (*bindings, limit),
        )
        return rows_as_dicts(cursor)

    # Contact messages

    def save_contact_message(
        self,
        message_id: str,
        *,
        name: str,
        email: str,
        category: str,
        message: str,
        user_id: str | None,
        now: datetime,
    ) -> None:
        with self.connection:
            self.connection.execute(
                "INSERT INTO contact_messages (id, name, email, category, message,"
                " user_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    message_id,
                    name,
                    email,
                    category,
                    message,
                    user_id,
                    sortable_datetime(now),
                ),
            )

    def mark_contact_forwarded(self, message_id: str) -> None:
        with self.connection:
            self.connection.execute(
                "UPDATE contact_messages SET forwarded = 1 WHERE id = ?", (message_id,)
            )

    def contact_messages(self, limit: int = 100) -> list[dict[str, object]]:
        cursor = self.connection.execute(
            "SELECT id, name, email, category, message, user_id, forwarded, created_at"
            " FROM contact_messages ORDER BY created_at DESC LIMIT ?",
            (limit,),
        )
        return rows_as_dicts(cursor)

    # Labour directory: which labours have work left after a restart

    def mark_pending(self, labour_id: UUID, now: datetime) -> None:
        """Record that the labour has unfinished catch-up work."""
        with self.connection:
            self.connection.execute(
                "INSERT INTO labour_directory (labour_id, created_at, pending_since)"
                " VALUES (?, ?, ?) ON CONFLICT (labour_id) DO UPDATE SET"
                " pending_since = coalesce(pending_since, excluded.pending_since)",
                (str(labour_id), sortable_datetime(now), sortable_datetime(now)),
            )

    def clear_pending(self, labour_id: UUID) -> None:
        with self.connection:
            self.connection.execute(
                "UPDATE labour_directory SET pending_since = NULL WHERE labour_id = ?",
                (str(labour_id),),
            )

    def labour_count(self) -> int:
        return int(
            self.connection.execute("SELECT count(*) FROM labour_directory").fetchone()[
                0
            ]
        )

    def labours_with_pending_work(self) -> list[UUID]:
        rows = self.connection.execute(
            "SELECT labour_id FROM labour_directory WHERE pending_since IS NOT NULL"
            " ORDER BY pending_since"
        )
        return [UUID(row[0]) for row in rows]


_LABOUR_STATUS_COLUMNS = (
    "labour_id, mother_id, mother_name, current_phase, labour_name,"
    " created_at, updated_at"
)


def _labour_status_model(row: tuple) -> LabourStatusReadModel:  # type: ignore[type-arg]
    return LabourStatusReadModel(
        labour_id=UUID(row[0]),
        mother_id=row[1],
        mother_name=row[2],
        current_phase=LabourPhase(row[3]),
        labour_name=row[4],
        created_at=datetime.fromisoformat(row[5]),
        updated_at=datetime.fromisoformat(row[6]),
    )
