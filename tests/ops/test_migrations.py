"""Schema migrations: a database written by an earlier fernd opens with the
current one, is migrated to the current schema version and keeps its rows.

Each file is written the way an earlier fernd wrote it: only the first
migrations applied through `migrate`, then rows inserted with plain SQL.
"""

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import apsw
import pytest

from fernd.domain import events as ev
from fernd.domain.datetimes import sortable_datetime
from fernd.domain.enums import LabourPhase
from fernd.storage import labour_db, shared_db
from fernd.storage.labour_db import (
    LabourDatabase,
    RecordedOutcome,
    labour_database_path,
)
from fernd.storage.projections.runner import LabourProjections
from fernd.storage.shared_db import (
    LABOUR_STATUS_PROJECTOR,
    LabourStatusReadModel,
    SharedDatabase,
)
from fernd.storage.sqlite import StorageError, migrate, open_database

LABOUR_ID = UUID("0190f5a2-7c3e-7b41-9d2a-3f6c8e1b2a45")
SUBSCRIPTION_ID = UUID("0190f5a2-7c3e-7b41-9d2a-3f6c8e1b2a46")
CREATED = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
UPDATED = datetime(2024, 5, 1, 11, 30, tzinfo=UTC)

# SHA-256 of every migration script that a released fernd has applied. A
# database created by an earlier script is never created again by an edited
# one, so a change to the schema needs a new migration instead.
SHIPPED_SHARED_MIGRATIONS = [
    "56343bd4813b427ad74d80e9ced4e137aacf2e79ff849f041da438f32e509b30",
    "686e1601b5bae0951af2846c919fb164fb8a19ac2016fa97adec63bc3af7a109",
    "339e41541d31d29fabe88a43bf20021607b628ecf73bd2681f58537346921570",
]
SHIPPED_LABOUR_MIGRATIONS = [
    "b6abaa09dde74ba664d62259dbd2482cb8655a76007bdb2391a4068b7a55f330",
    "98c834afe3197fa5cc08b62020869616fb3cf43ede259c56af3cf3f361fb3ae5",
]


def _user_version(path: Path) -> int:
    connection = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        version: int = connection.execute("PRAGMA user_version").fetchall()[0][0]
    finally:
        connection.close()
    return version


# Shared database


def _write_shared_database(data_dir: Path, version: int) -> None:
    """Write `fernd.db` at schema `version` with one row in every table that
    the first migration creates."""
    connection = open_database(data_dir / "fernd.db", "FULL", create=True)
    migrate(connection, shared_db._MIGRATIONS[:version])
    created, updated = sortable_datetime(CREATED), sortable_datetime(UPDATED)
    labour = str(LABOUR_ID)
    with connection:
        connection.execute(
            "INSERT INTO labour_status (labour_id, mother_id, mother_name,"
            " current_phase, labour_name, created_at, updated_at)"
            " VALUES (?, 'mother-1', 'Alex Morgan', 'EARLY', 'Bump', ?, ?)",
            (labour, created, updated),
        )
        connection.execute(
            "INSERT INTO subscription_status (subscription_id, labour_id,"
            " subscriber_id, status, created_at, updated_at)"
            " VALUES (?, ?, 'friend-1', 'SUBSCRIBED', ?, ?)",
            (str(SUBSCRIPTION_ID), labour, created, updated),
        )
        connection.execute(
            "INSERT INTO projection_checkpoints (projector_name, labour_id,"
            " last_processed_sequence, last_processed_at, updated_at)"
            " VALUES (?, ?, 7, ?, ?)",
            (LABOUR_STATUS_PROJECTOR, labour, updated, updated),
        )
        connection.execute(
            "INSERT INTO plan_idempotency (user_id, idempotency_key, fingerprint,"
            " status, body, created_at) VALUES ('mother-1', 'key-1', 'abc', 200,"
            " ?, ?)",
            (f'{{"labour_id":"{labour}"}}', created),
        )
        connection.execute(
            "INSERT INTO labour_directory (labour_id, created_at, pending_since)"
            " VALUES (?, ?, ?)",
            (labour, created, updated),
        )
    connection.close()


PREVIOUS_SHARED_VERSIONS = range(1, len(shared_db._MIGRATIONS))


@pytest.mark.parametrize("version", PREVIOUS_SHARED_VERSIONS)
def test_shared_database_migrated_to_current_version(
    tmp_path: Path, version: int
) -> None:
    _write_shared_database(tmp_path, version)

    shared = SharedDatabase.open(tmp_path, "FULL")
    shared.close()

    assert _user_version(tmp_path / "fernd.db") == len(shared_db._MIGRATIONS)


@pytest.mark.parametrize("version", PREVIOUS_SHARED_VERSIONS)
def test_shared_database_rows_survive_migration(tmp_path: Path, version: int) -> None:
    _write_shared_database(tmp_path, version)

    shared = SharedDatabase.open(tmp_path, "FULL")
    try:
        statuses = shared.labour_statuses([LABOUR_ID])
        subscriptions = shared.subscriptions_of("friend-1", 10)
        checkpoints = shared.checkpoints(LABOUR_ID)
        outcome = shared.plan_outcome("mother-1", "key-1")
        pending = shared.labours_with_pending_work()
    finally:
        shared.close()

    assert statuses == [
        LabourStatusReadModel(
            labour_id=LABOUR_ID,
            mother_id="mother-1",
            mother_name="Alex Morgan",
            current_phase=LabourPhase.EARLY,
            labour_name="Bump",
            created_at=CREATED,
            updated_at=UPDATED,
        )
    ]
    assert [row.subscription_id for row in subscriptions] == [SUBSCRIPTION_ID]
    assert checkpoints[LABOUR_STATUS_PROJECTOR].last_processed_sequence == 7
    assert outcome == RecordedOutcome(
        "abc", 200, f'{{"labour_id":"{LABOUR_ID}"}}'.encode()
    )
    assert pending == [LABOUR_ID]


@pytest.mark.parametrize("version", PREVIOUS_SHARED_VERSIONS)
def test_shared_database_later_tables_usable_after_migration(
    tmp_path: Path, version: int
) -> None:
    _write_shared_database(tmp_path, version)

    shared = SharedDatabase.open(tmp_path, "FULL")
    try:
        shared.log_notification(
            "notification-1",
            labour_id=LABOUR_ID,
            effect_id="effect-1",
            recipient_id="friend-1",
            channel="EMAIL",
            status="SENT",
            now=UPDATED,
        )
        shared.save_contact_message(
            "message-1",
            name="Sam",
            email="sam@example.com",
            category="feedback",
            message="Thanks",
            user_id=None,
            now=UPDATED,
        )
        notifications = shared.notifications(labour_id=LABOUR_ID)
        messages = shared.contact_messages()
    finally:
        shared.close()

    assert [row["idempotency_key"] for row in notifications] == ["notification-1"]
    assert [row["id"] for row in messages] == ["message-1"]


def test_shared_database_newer_version_rejected(tmp_path: Path) -> None:
    _write_shared_database(tmp_path, len(shared_db._MIGRATIONS))
    connection = open_database(tmp_path / "fernd.db", "FULL", create=False)
    connection.execute(f"PRAGMA user_version={len(shared_db._MIGRATIONS) + 1}")
    connection.close()

    with pytest.raises(StorageError, match="newer than this fernd"):
        SharedDatabase.open(tmp_path, "FULL")


# Labour database


def _write_labour_database(data_dir: Path, version: int) -> Path:
    """Write a labour database at schema `version` with two events, their
    read-model row, checkpoints, the process-manager state and one effect."""
    path = labour_database_path(data_dir, LABOUR_ID)
    connection = open_database(path, "FULL", create=True)
    migrate(connection, labour_db._MIGRATIONS[:version])
    events = [
        ev.LabourPlanned(
            labour_id=LABOUR_ID,
            mother_id="mother-1",
            mother_name="Alex Morgan",
            first_labour=True,
            due_date=datetime(2024, 5, 3, tzinfo=UTC),
            labour_name="Bump",
        ),
        ev.LabourBegun(labour_id=LABOUR_ID, start_time=UPDATED),
    ]
    with connection:
        for sequence, event in enumerate(events, start=1):
            connection.execute(
                "INSERT INTO events (sequence, aggregate_id, event_type, event_data,"
                " event_version, created_at, user_id) VALUES (?, ?, ?, ?, 1, ?,"
                " 'mother-1')",
                (
                    sequence,
                    str(LABOUR_ID),
                    event.name,
                    ev.encode_event(event).decode(),
                    sortable_datetime(CREATED),
                ),
            )
        connection.execute(
            "INSERT INTO labours (labour_id, mother_id, mother_name, current_phase,"
            " first_labour, due_date, labour_name, start_time, created_at,"
            " updated_at) VALUES (?, 'mother-1', 'Alex Morgan', 'EARLY', 1, ?,"
            " 'Bump', ?, ?, ?)",
            (
                str(LABOUR_ID),
                sortable_datetime(datetime(2024, 5, 3, tzinfo=UTC)),
                sortable_datetime(UPDATED),
                sortable_datetime(CREATED),
                sortable_datetime(UPDATED),
            ),
        )
        connection.execute(
            "INSERT INTO projection_checkpoints (projector_name,"
            " last_processed_sequence, updated_at) VALUES"
            " ('LabourReadModelProjector', 2, ?)",
            (sortable_datetime(UPDATED),),
        )
        connection.execute(
            "INSERT INTO process_manager_state (id, last_processed_sequence,"
            " updated_at) VALUES (1, 2, ?)",
            (sortable_datetime(UPDATED),),
        )
        connection.execute(
            "INSERT INTO pending_effects (effect_id, event_sequence, effect_type,"
            " effect_payload, idempotency_key, status, created_at)"
            " VALUES ('effect-1', 1, 'GenerateSubscriptionToken', '{}', 'key-1',"
            " 'COMPLETED', ?)",
            (sortable_datetime(CREATED),),
        )
    connection.close()
    return path


# Every schema version, the current one included: a labour database written
# by the first migration must open unchanged however many follow it.
LABOUR_VERSIONS = range(1, len(labour_db._MIGRATIONS) + 1)


@pytest.mark.parametrize("version", LABOUR_VERSIONS)
def test_labour_database_migrated_to_current_version(
    tmp_path: Path, version: int
) -> None:
    path = _write_labour_database(tmp_path, version)

    database = LabourDatabase.open(tmp_path, LABOUR_ID, "FULL", create=False)
    database.close()

    assert _user_version(path) == len(labour_db._MIGRATIONS)


@pytest.mark.parametrize("version", LABOUR_VERSIONS)
def test_labour_database_rows_survive_migration(tmp_path: Path, version: int) -> None:
    _write_labour_database(tmp_path, version)

    database = LabourDatabase.open(tmp_path, LABOUR_ID, "FULL", create=False)
    try:
        events = list(database.events_after(0))
        checkpoints = LabourProjections(database).checkpoints
        process_manager = database.process_manager_checkpoint()
        effects = database.effect_rows()
        phase = database.execute(
            "SELECT current_phase FROM labours WHERE labour_id = ?", (str(LABOUR_ID),)
        ).fetchall()
    finally:
        database.close()

    assert [stored.event.name for stored in events] == ["LabourPlanned", "LabourBegun"]
    assert checkpoints["LabourReadModelProjector"].last_processed_sequence == 2
    assert process_manager == 2
    assert [(row["effect_id"], row["status"]) for row in effects] == [
        ("effect-1", "COMPLETED")
    ]
    assert phase == [("EARLY",)]


# Shipped scripts


@pytest.mark.parametrize(
    ("migrations", "shipped"),
    [
        (shared_db._MIGRATIONS, SHIPPED_SHARED_MIGRATIONS),
        (labour_db._MIGRATIONS, SHIPPED_LABOUR_MIGRATIONS),
    ],
    ids=["shared", "labour"],
)
def test_shipped_migrations_unchanged(
    migrations: list[str], shipped: list[str]
) -> None:
    current = [
        hashlib.sha256(script.encode()).hexdigest()
        for script in migrations[: len(shipped)]
    ]

    assert current == shipped, (
        "a shipped migration script was edited; add a new migration instead"
    )
