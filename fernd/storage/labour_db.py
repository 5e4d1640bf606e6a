"""The database of one labour: its event store, snapshot, read models,
projector checkpoints, users, process-manager state, effect ledger and command
idempotency records.

Every method is synchronous and never yields to the scheduler, so a caller on
the Trio thread can read state and commit without another task interleaving.
"""

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID

import apsw
import msgspec

from fernd.domain import events as ev
from fernd.domain.datetimes import sortable_datetime
from fernd.domain.labour import (
    SNAPSHOT_ENTRY_KINDS,
    Labour,
    add_snapshot_entries,
    decode_snapshot,
    encode_snapshot_entry,
    encode_snapshot_head,
    snapshot_entries,
)
from fernd.domain.users import User
from fernd.storage.sqlite import (
    StorageError,
    checkpoint_and_close,
    migrate,
    open_database,
    rows_as_dicts,
    translate_errors,
)

logger = logging.getLogger(__name__)

_MIGRATIONS = [
    """
    CREATE TABLE events (
        sequence INTEGER PRIMARY KEY,
        aggregate_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        event_data TEXT NOT NULL,
        event_version INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        user_id TEXT NOT NULL,
        audience TEXT NOT NULL DEFAULT 'everyone'
    );
    CREATE TABLE snapshot (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        sequence INTEGER NOT NULL,
        state TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE labours (
        labour_id TEXT PRIMARY KEY,
        mother_id TEXT NOT NULL,
        mother_name TEXT NOT NULL,
        current_phase TEXT NOT NULL,
        first_labour INTEGER NOT NULL,
        due_date TEXT NOT NULL,
        labour_name TEXT,
        start_time TEXT,
        end_time TEXT,
        notes TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE contractions (
        contraction_id TEXT PRIMARY KEY,
        labour_id TEXT NOT NULL,
        start_time TEXT NOT NULL,
        end_time TEXT NOT NULL,
        duration_seconds REAL NOT NULL,
        intensity INTEGER,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX contractions_by_start
        ON contractions (start_time DESC, contraction_id DESC);
    CREATE TABLE labour_updates (
        labour_update_id TEXT PRIMARY KEY,
        labour_id TEXT NOT NULL,
        labour_update_type TEXT NOT NULL,
        message TEXT NOT NULL,
        edited INTEGER NOT NULL,
        application_generated INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX labour_updates_by_created
        ON labour_updates (created_at DESC, labour_update_id DESC);
    CREATE TABLE subscriptions (
        subscription_id TEXT PRIMARY KEY,
        labour_id TEXT NOT NULL,
        subscriber_id TEXT NOT NULL,
        role TEXT NOT NULL,
        status TEXT NOT NULL,
        access_level TEXT NOT NULL,
        contact_methods TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE subscription_token (
        labour_id TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE projection_checkpoints (
        projector_name TEXT PRIMARY KEY,
        last_processed_sequence INTEGER NOT NULL DEFAULT 0,
        last_processed_at TEXT,
        updated_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'healthy',
        error_message TEXT,
        error_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE users (
        user_id TEXT PRIMARY KEY,
        issuer TEXT NOT NULL,
        email TEXT,
        phone_number TEXT,
        first_name TEXT,
        last_name TEXT,
        name TEXT
    );
    CREATE TABLE process_manager_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_processed_sequence INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE pending_effects (
        effect_id TEXT PRIMARY KEY,
        event_sequence INTEGER NOT NULL,
        effect_type TEXT NOT NULL,
        effect_payload TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL DEFAULT 'PENDING',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_attempt_at TEXT,
        next_attempt_at TEXT,
        last_error TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX pending_effects_due ON pending_effects (status, created_at);
    CREATE TABLE command_idempotency (
        user_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (user_id, idempotency_key)
    );
    """,
    """
    CREATE TABLE snapshot_entries (
        position INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        data TEXT NOT NULL,
        UNIQUE (kind, entry_id)
    );
    """,
]


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event with its metadata and its stored JSON, kept so that pushes
    never encode an event twice."""

    sequence: int
    event: ev.Event
    data: bytes
    timestamp: datetime
    user_id: str
    # Who may receive the event's push; see fernd.domain.visibility.
    audience: str = "everyone"


class LoadedSnapshot(NamedTuple):
    """The stored snapshot. `entries_in_rows` is False for a snapshot written
    with every entry in its head, which the next snapshot must rewrite whole."""

    sequence: int
    labour: Labour
    entries_in_rows: bool


class RecordedOutcome(msgspec.Struct, frozen=True):
    """The reply recorded with an idempotency key."""

    fingerprint: str
    status: int
    body: bytes | None


class EffectRow(msgspec.Struct, kw_only=True):
    effect_id: str
    event_sequence: int
    effect_type: str
    effect_payload: bytes
    idempotency_key: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_error: str | None


def labour_database_path(data_dir: Path, labour_id: UUID) -> Path:
    """Return `<data_dir>/labours/<id[:2]>/<id>.db`; the id is a parsed UUID, so
    the path holds only hexadecimal digits and hyphens."""
    text = str(labour_id)
    return data_dir / "labours" / text[:2] / f"{text}.db"


class LabourDatabase:
    """One labour's SQLite database, used only from the Trio thread."""

    def __init__(self, connection: apsw.Connection, labour_id: UUID) -> None:
        self.connection = connection
        self.labour_id = labour_id
        self._labour_id_text = str(labour_id)

    @classmethod
    def open(
        cls, data_dir: Path, labour_id: UUID, synchronous: str, *, create: bool
    ) -> "LabourDatabase":
        path = labour_database_path(data_dir, labour_id)
        if not create and not path.exists():
            raise StorageError(f"No database for labour {labour_id}")
        connection = open_database(path, synchronous, create=create)
        with translate_errors(f"Migrating the database of labour {labour_id}"):
            migrate(connection, _MIGRATIONS)
        return cls(connection, labour_id)

    @staticmethod
    def exists(data_dir: Path, labour_id: UUID) -> bool:
        return labour_database_path(data_dir, labour_id).exists()

    def close(self) -> None:
        checkpoint_and_close(self.connection)

    def execute(self, sql: str, bindings: Any = None) -> apsw.Cursor:
        return self.connection.execute(sql, bindings)

    # Events and snapshot

    def append_events(self, events: Sequence[StoredEvent]) -> None:
        """Insert `events` into the event store. Call inside a transaction."""
        self.connection.executemany(
            "INSERT INTO events (sequence, aggregate_id, event_type, event_data,"
            " event_version, created_at, user_id, audience)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    stored.sequence,
                    self._labour_id_text,
                    stored.event.name,
                    stored.data.decode(),
                    ev.EVENT_VERSION,
                    sortable_datetime(stored.timestamp),
                    stored.user_id,
                    stored.audience,
                )
                for stored in events
            ],
        )

    def last_sequence(self) -> int:
        row = self.connection.execute("SELECT max(sequence) FROM events").fetchone()
        return row[0] or 0

    def events_after(
        self, sequence: int, limit: int | None = None
    ) -> Iterator[StoredEvent]:
        """Yield the stored events after `sequence` in order, at most `limit`."""
        sql = (
            "SELECT sequence, event_data, created_at, user_id, audience FROM events"
            " WHERE sequence > ? ORDER BY sequence"
        )
        bindings: tuple[int, ...] = (sequence,)
        if limit is not None:
            sql += " LIMIT ?"
            bindings = (sequence, limit)
        for (
            row_sequence,
            data,
            created_at,
            user_id,
            audience,
        ) in self.connection.execute(sql, bindings):
            encoded = data.encode()
            yield StoredEvent(
                sequence=row_sequence,
                event=ev.decode_event(encoded),
                data=encoded,
                timestamp=datetime.fromisoformat(created_at),
                user_id=user_id,
                audience=audience,
            )

    def load_snapshot(self) -> LoadedSnapshot | None:
        """Return the latest snapshot, or None when none was written.

        Raises msgspec.DecodeError or msgspec.ValidationError for a snapshot
        that does not decode.
        """
        row = self.connection.execute(
            "SELECT sequence, state FROM snapshot WHERE id = 1"
        ).fetchone()
        if row is None:
            return None
        labour = decode_snapshot(row[1].encode())
        # A snapshot written before entries had rows of their own contains
        # every entry in its head.
        entries_in_rows = not labour.contractions and not labour.labour_updates
        encoded: dict[str, list[str]] = {kind: [] for kind in SNAPSHOT_ENTRY_KINDS}
        for kind, data in self.connection.execute(
            "SELECT kind, data FROM snapshot_entries ORDER BY position"
        ):
            if kind not in encoded:
                raise StorageError(
                    f"Unknown snapshot entry kind {kind!r} in labour {self.labour_id}"
                )
            encoded[kind].append(data)
        for kind, entries in encoded.items():
            add_snapshot_entries(labour, kind, entries)
        return LoadedSnapshot(row[0], labour, entries_in_rows)

    def save_snapshot(
        self,
        sequence: int,
        labour: Labour,
        changed: Mapping[tuple[str, UUID], int] | None,
        now: datetime,
    ) -> None:
        """Store `labour` as the snapshot at `sequence`. Call inside a
        transaction.

        `changed` maps each entry added, changed or deleted since the stored
        snapshot to the sequence of the event that last added it to its dict,
        or to 0 when it was only changed in place. With `changed` None every
        entry is written again.
        """
        self.connection.execute(
            "INSERT INTO snapshot (id, sequence, state, created_at) VALUES (1, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET sequence = excluded.sequence,"
            " state = excluded.state, created_at = excluded.created_at",
            (sequence, encode_snapshot_head(labour).decode(), sortable_datetime(now)),
        )
        if changed is None or not self._write_changed_entries(labour, changed):
            self._write_all_entries(labour)

    def _write_changed_entries(
        self, labour: Labour, changed: Mapping[tuple[str, UUID], int]
    ) -> bool:
        """Write the entries in `changed`. Return False when an entry changed
        in place has no row, so the caller rewrites every entry."""
        deleted: list[tuple[str, str]] = []
        added: list[tuple[str, str, int, str]] = []
        updated: list[tuple[str, str, str]] = []
        for (kind, entry_id), added_at in changed.items():
            entry = snapshot_entries(labour, kind).get(entry_id)
            if entry is None:
                deleted.append((kind, str(entry_id)))
            elif added_at:
                data = encode_snapshot_entry(entry).decode()
                added.append((kind, str(entry_id), added_at, data))
            else:
                data = encode_snapshot_entry(entry).decode()
                updated.append((data, kind, str(entry_id)))
        self.connection.executemany(
            "DELETE FROM snapshot_entries WHERE kind = ? AND entry_id = ?", deleted
        )
        self.connection.executemany(
            "INSERT INTO snapshot_entries (kind, entry_id, position, data)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (kind, entry_id) DO UPDATE SET"
            " position = excluded.position, data = excluded.data",
            added,
        )
        before = self.connection.total_changes()
        self.connection.executemany(
            "UPDATE snapshot_entries SET data = ? WHERE kind = ? AND entry_id = ?",
            updated,
        )
        return self.connection.total_changes() - before == len(updated)

    def _write_all_entries(self, labour: Labour) -> None:
        """Replace every entry row, numbering positions from 1 across both
        kinds, each kind in dict order.

        An entry added later takes its event's sequence as its position. That
        sequence is larger than any position written here, because every
        entry was added by an event of its own.
        """
        self.connection.execute("DELETE FROM snapshot_entries")
        rows = [
            (kind, str(entry_id), encode_snapshot_entry(entry).decode())
            for kind in SNAPSHOT_ENTRY_KINDS
            for entry_id, entry in snapshot_entries(labour, kind).items()
        ]
        self.connection.executemany(
            "INSERT INTO snapshot_entries (position, kind, entry_id, data)"
            " VALUES (?, ?, ?, ?)",
            [(position, *row) for position, row in enumerate(rows, 1)],
        )

    # Command idempotency

    def recorded_outcome(self, user_id: str, key: str) -> RecordedOutcome | None:
        row = self.connection.execute(
            "SELECT fingerprint, status, body FROM command_idempotency"
            " WHERE user_id = ? AND idempotency_key = ?",
            (user_id, key),
        ).fetchone()
        if row is None:
            return None
        body = row[2].encode() if row[2] is not None else None
        return RecordedOutcome(row[0], row[1], body)

    def record_outcome(
        self, user_id: str, key: str, outcome: RecordedOutcome, now: datetime
    ) -> None:
        self.connection.execute(
            "INSERT INTO command_idempotency (user_id, idempotency_key, fingerprint,"
            " status, body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                user_id,
                key,
                outcome.fingerprint,
                outcome.status,
                outcome.body.decode() if outcome.body is not None else None,
                sortable_datetime(now),
            ),
        )

    def purge_outcomes_before(self, cutoff: datetime) -> int:
        self.connection.execute(
            "DELETE FROM command_idempotency WHERE created_at < ?",
            (sortable_datetime(cutoff),),
        )
        return self.connection.changes()

    # Users

    def load_users(self) -> dict[str, User]:
        users = {}
        for row in self.connection.execute(
            "SELECT user_id, issuer, email, phone_number, first_name, last_name, name"
            " FROM users"
        ):
            users[row[0]] = User(
                user_id=row[0],
                issuer=row[1],
                email=row[2],
                phone_number=row[3],
                first_name=row[4],
                last_name=row[5],
                name=row[6],
            )
        return users

    def save_user(self, user: User) -> None:
        self.connection.execute(
            "INSERT INTO users (user_id, issuer, email, phone_number, first_name,"
            " last_name, name) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (user_id) DO UPDATE SET issuer = excluded.issuer,"
            " email = excluded.email, phone_number = excluded.phone_number,"
            " first_name = excluded.first_name, last_name = excluded.last_name,"
            " name = excluded.name",
            (
                user.user_id,
                user.issuer,
                user.email,
                user.phone_number,
                user.first_name,
                user.last_name,
                user.name,
            ),
        )

    # Process manager and effect ledger

    def process_manager_checkpoint(self) -> int:
        row = self.connection.execute(
            "SELECT last_processed_sequence FROM process_manager_state WHERE id = 1"
        ).fetchone()
        return row[0] if row else 0

    def set_process_manager_checkpoint(self, sequence: int, now: datetime) -> None:
        self.connection.execute(
            "INSERT INTO process_manager_state (id, last_processed_sequence,"
            " updated_at)"
            " VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET"
            " last_processed_sequence = excluded.last_processed_sequence,"
            " updated_at = excluded.updated_at",
            (sequence, sortable_datetime(now)),
        )

    def insert_effect(
        self,
        effect_id: UUID,
        sequence: int,
        effect_type: str,
        payload: bytes,
        idempotency_key: str,
        now: datetime,
    ) -> None:
        """Insert a PENDING effect unless its idempotency key is already there."""
        self.connection.execute(
            "INSERT OR IGNORE INTO pending_effects (effect_id, event_sequence,"
            " effect_type, effect_payload, idempotency_key, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                str(effect_id),
                sequence,
                effect_type,
                payload.decode(),
                idempotency_key,
                sortable_datetime(now),
            ),
        )

    def due_effects(
        self, now: datetime, max_attempts: int, effect_types: tuple[str, ...]
    ) -> list[EffectRow]:
        """Return the effects of `effect_types` that are due at `now`, in
        `created_at` order, then `effect_id`."""
        placeholders = ", ".join("?" for _ in effect_types)
        rows = self.connection.execute(
            "SELECT effect_id, event_sequence, effect_type, effect_payload,"
            " idempotency_key, status, attempts, next_attempt_at, last_error"
            " FROM pending_effects WHERE status IN ('PENDING', 'DISPATCHED')"
            f" AND attempts < ? AND effect_type IN ({placeholders})"
            " AND (next_attempt_at IS NULL OR next_attempt_at <= ?)"
            " ORDER BY created_at, effect_id",
            (max_attempts, *effect_types, sortable_datetime(now)),
        ).fetchall()
        return [
            EffectRow(
                effect_id=row[0],
                event_sequence=row[1],
                effect_type=row[2],
                effect_payload=row[3].encode(),
                idempotency_key=row[4],
                status=row[5],
                attempts=row[6],
                next_attempt_at=row[7],
                last_error=row[8],
            )
            for row in rows
        ]

    def next_effect_due_at(
        self, max_attempts: int, effect_types: tuple[str, ...]
    ) -> str | None:
        """Return the earliest `next_attempt_at` among retryable effects, the
        empty string when one is due now, or None when none is waiting."""
        placeholders = ", ".join("?" for _ in effect_types)
        row = self.connection.execute(
            "SELECT min(coalesce(next_attempt_at, '')) FROM pending_effects"
            " WHERE status IN ('PENDING', 'DISPATCHED') AND attempts < ?"
            f" AND effect_type IN ({placeholders})",
            (max_attempts, *effect_types),
        ).fetchone()
        return row[0]

    def mark_effect_dispatched(self, effect_id: str, now: datetime) -> None:
        with self.connection:
            self.connection.execute(
                "UPDATE pending_effects SET status = 'DISPATCHED',"
                " attempts = attempts + 1, last_attempt_at = ? WHERE effect_id = ?",
                (sortable_datetime(now), effect_id),
            )

    def mark_effect_completed(self, effect_id: str) -> None:
        with self.connection:
            self.connection.execute(
                "UPDATE pending_effects SET status = 'COMPLETED', last_error = NULL,"
                " next_attempt_at = NULL WHERE effect_id = ?",
                (effect_id,),
            )

    def mark_effect_skipped(self, effect_id: str, reason: str) -> None:
        """Mark an effect SKIPPED: it will never run, and was never delivered."""
        with self.connection:
            self.connection.execute(
                "UPDATE pending_effects SET status = 'SKIPPED', last_error = ?,"
                " next_attempt_at = NULL WHERE effect_id = ?",
                (reason, effect_id),
            )

    def mark_effect_failed(
        self, effect_id: str, error: str, next_attempt_at: datetime | None
    ) -> None:
        """Record a failed attempt: retry at `next_attempt_at`, or mark the
        effect FAILED when that is None."""
        with self.connection:
            if next_attempt_at is None:
                self.connection.execute(
                    "UPDATE pending_effects SET status = 'FAILED', last_error = ?,"
                    " next_attempt_at = NULL WHERE effect_id = ?",
                    (error, effect_id),
                )
            else:
                self.connection.execute(
                    "UPDATE pending_effects SET last_error = ?, next_attempt_at = ?"
                    " WHERE effect_id = ?",
                    (error, sortable_datetime(next_attempt_at), effect_id),
                )

    def retry_failed_effect(self, effect_id: str) -> bool:
        """Put a FAILED or SKIPPED effect back to PENDING with no attempts and
        no scheduled retry, so it runs at the next catch-up. `last_error`
        stays for reference. Return False, changing nothing, when no effect
        with `effect_id` is FAILED or SKIPPED."""
        with self.connection:
            self.connection.execute(
                "UPDATE pending_effects SET status = 'PENDING', attempts = 0,"
                " next_attempt_at = NULL WHERE effect_id = ?"
                " AND status IN ('FAILED', 'SKIPPED')",
                (effect_id,),
            )
            changed = self.connection.changes()
        return changed == 1

    def effect_rows(self) -> list[dict[str, Any]]:
        """Return every row of the effect ledger, oldest first."""
        cursor = self.connection.execute(
            "SELECT effect_id, event_sequence, effect_type, effect_payload,"
            " idempotency_key, status, attempts, last_attempt_at, next_attempt_at,"
            " last_error, created_at FROM pending_effects ORDER BY created_at,"
            " effect_id"
        )
        return rows_as_dicts(cursor)
