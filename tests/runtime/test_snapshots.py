"""Snapshots that store each contraction and labour update as a row: after any
mix of adds, changes, deletes and re-adds, a stored snapshot equals a replay of
the events up to its sequence, entry order included."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
import trio
from uuid6 import uuid7

from fernd.config import Settings
from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.authorization import Caller
from fernd.domain.enums import LabourUpdateType
from fernd.domain.labour import Labour, create, encode_snapshot, evolve
from fernd.domain.users import User
from fernd.runtime.actor import LabourActor
from fernd.runtime.messages import CommandRequest
from fernd.runtime.registry import LabourRegistry
from fernd.storage.labour_db import LabourDatabase
from fernd.storage.shared_db import SharedDatabase

MOTHER = User(user_id="snapshot-mother", issuer="fernd", name="Alex Morgan")
CALLER = Caller(user_id=MOTHER.user_id, issuer=MOTHER.issuer)
# Small, so that most commands below end in a snapshot.
SNAPSHOT_INTERVAL = 2


@asynccontextmanager
async def _running(
    data_dir: Path, hibernate_after: float
) -> AsyncIterator[LabourRegistry]:
    settings = Settings(
        data_dir=str(data_dir),
        hibernate_after=hibernate_after,
        snapshot_interval=SNAPSHOT_INTERVAL,
    )
    shared = SharedDatabase.open(data_dir, "FULL")
    registry = LabourRegistry(settings, shared)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(registry.run)
            yield registry
            nursery.cancel_scope.cancel()
    finally:
        shared.close()


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[LabourRegistry]:
    async with _running(tmp_path, hibernate_after=3600.0) as registry:
        yield registry


async def _hibernated(registry: LabourRegistry) -> None:
    with trio.fail_after(10):
        while registry.active_count:
            await trio.sleep(0.01)


async def _run(registry: LabourRegistry, command: cmd.AnyCommand) -> None:
    request = CommandRequest(command, MOTHER, CALLER, datetime.now(UTC))
    if isinstance(command, cmd.PlanLabour):
        outcome = await registry.plan(request)
    else:
        outcome = await registry.execute(command.labour_id, request)
    assert outcome.status == 204, outcome.body


async def _planned(registry: LabourRegistry) -> UUID:
    labour_id = uuid7()
    await _run(
        registry,
        cmd.PlanLabour(
            labour_id=labour_id,
            mother_id=MOTHER.user_id,
            mother_name="Alex Morgan",
            first_labour=True,
            due_date=datetime.now(UTC),
        ),
    )
    return labour_id


async def _actor(registry: LabourRegistry, labour_id: UUID) -> LabourActor:
    actor = await registry.query(labour_id, lambda actor: actor)
    assert actor is not None
    return actor


def _replayed(database: LabourDatabase, up_to: int) -> Labour:
    """Replay the event store from the first event up to `up_to`."""
    state: Labour | None = None
    for stored in database.events_after(0):
        if stored.sequence > up_to:
            break
        if state is None:
            assert isinstance(stored.event, ev.LabourPlanned)
            state = create(stored.event, stored.sequence)
        else:
            evolve(state, stored.event, stored.sequence, stored.timestamp)
    assert state is not None
    return state


def _assert_snapshot_matches_replay(database: LabourDatabase) -> None:
    snapshot = database.load_snapshot()
    assert snapshot is not None
    replayed = _replayed(database, snapshot.sequence)
    assert snapshot.labour == replayed
    assert list(snapshot.labour.contractions) == list(replayed.contractions)
    assert list(snapshot.labour.labour_updates) == list(replayed.labour_updates)


def _contraction_commands(labour_id: UUID) -> list[cmd.AnyCommand]:
    """Start and end three contractions, change and delete the first, then
    start a new one under the deleted id, so it moves to the end."""
    base = datetime.now(UTC) - timedelta(hours=1)
    ids = [uuid7() for _ in range(3)]
    commands: list[cmd.AnyCommand] = []
    for index, contraction_id in enumerate(ids):
        start = base + timedelta(minutes=5 * index)
        commands += [
            cmd.StartContraction(
                labour_id=labour_id, contraction_id=contraction_id, start_time=start
            ),
            cmd.EndContraction(
                labour_id=labour_id,
                contraction_id=contraction_id,
                end_time=start + timedelta(minutes=1),
                intensity=5,
            ),
        ]
    start = base + timedelta(minutes=20)
    commands += [
        cmd.UpdateContraction(labour_id=labour_id, contraction_id=ids[0], intensity=8),
        cmd.DeleteContraction(labour_id=labour_id, contraction_id=ids[0]),
        cmd.StartContraction(
            labour_id=labour_id, contraction_id=ids[0], start_time=start
        ),
        cmd.EndContraction(
            labour_id=labour_id,
            contraction_id=ids[0],
            end_time=start + timedelta(minutes=1),
            intensity=3,
        ),
        cmd.UpdateContraction(labour_id=labour_id, contraction_id=ids[1], intensity=9),
    ]
    return commands


def _post(labour_id: UUID, message: str) -> cmd.PostLabourUpdate:
    return cmd.PostLabourUpdate(
        labour_id=labour_id,
        labour_update_type=LabourUpdateType.STATUS_UPDATE,
        message=message,
    )


async def test_snapshot_equals_replay_after_changes(
    registry: LabourRegistry,
) -> None:
    labour_id = await _planned(registry)
    actor = await _actor(registry, labour_id)

    for command in _contraction_commands(labour_id):
        await _run(registry, command)
        _assert_snapshot_matches_replay(actor.database)
    for index in range(5):
        await _run(registry, _post(labour_id, f"update {index}"))
        _assert_snapshot_matches_replay(actor.database)
    assert actor.state is not None
    first, second, *_ = actor.state.labour_updates
    for command in (
        cmd.UpdateLabourUpdateMessage(
            labour_id=labour_id, labour_update_id=second, message="edited"
        ),
        cmd.DeleteLabourUpdate(labour_id=labour_id, labour_update_id=first),
        _post(labour_id, "after the delete"),
    ):
        await _run(registry, command)
        _assert_snapshot_matches_replay(actor.database)


async def test_snapshot_survives_hibernation(tmp_path: Path) -> None:
    async with _running(tmp_path, hibernate_after=0.05) as registry:
        labour_id = await _planned(registry)
        for command in _contraction_commands(labour_id):
            await _run(registry, command)
        live = await registry.query(labour_id, lambda actor: actor.state)
        assert live is not None
        await _hibernated(registry)

        await _run(registry, _post(labour_id, "after waking"))
        await _hibernated(registry)
        await _run(registry, _post(labour_id, "and one more"))

        await registry.query(
            labour_id, lambda actor: _assert_snapshot_matches_replay(actor.database)
        )
        state = await registry.query(labour_id, lambda actor: actor.state)
        assert state is not None
        assert list(state.contractions) == list(live.contractions)


async def test_snapshot_with_entries_in_head_rewritten(tmp_path: Path) -> None:
    """A snapshot that keeps every entry in its head, as fernd wrote them
    before entries had rows, loads as it is and is replaced whole."""
    async with _running(tmp_path, hibernate_after=3600.0) as registry:
        labour_id = await _planned(registry)
        for command in _contraction_commands(labour_id):
            await _run(registry, command)
        live = await registry.query(labour_id, lambda actor: actor.state)
        assert live is not None
    # Written with the labour closed, the way an earlier fernd left it.
    database = LabourDatabase.open(tmp_path, labour_id, "FULL", create=False)
    with database.connection:
        database.execute("DELETE FROM snapshot_entries")
        database.execute(
            "UPDATE snapshot SET sequence = ?, state = ?",
            (live.last_sequence, encode_snapshot(live).decode()),
        )
    database.close()

    async with _running(tmp_path, hibernate_after=3600.0) as registry:
        actor = await _actor(registry, labour_id)
        assert actor.state == live
        assert list(actor.state.contractions) == list(live.contractions)
        for index in range(SNAPSHOT_INTERVAL):
            await _run(registry, _post(labour_id, f"update {index}"))

        _assert_snapshot_matches_replay(actor.database)
        head = actor.database.execute("SELECT state FROM snapshot").fetchone()[0]
        assert '"contractions":{}' in head


async def test_snapshot_after_restart_includes_replay(
    tmp_path: Path,
) -> None:
    """Events replayed after the stored snapshot at activation count as
    changes for the next snapshot, as after a crash."""
    async with _running(tmp_path, hibernate_after=3600.0) as registry:
        labour_id = await _planned(registry)
        for command in _contraction_commands(labour_id):
            await _run(registry, command)
    # Put the snapshot back to the first contraction's end, before the
    # update, delete and re-add of that contraction.
    database = LabourDatabase.open(tmp_path, labour_id, "FULL", create=False)
    ended = [
        stored.sequence
        for stored in database.events_after(0)
        if isinstance(stored.event, ev.ContractionEnded)
    ]
    with database.connection:
        earlier = _replayed(database, ended[0])
        database.save_snapshot(ended[0], earlier, None, datetime.now(UTC))
    database.close()

    async with _running(tmp_path, hibernate_after=3600.0) as registry:
        for index in range(SNAPSHOT_INTERVAL):
            await _run(registry, _post(labour_id, f"update {index}"))
        actor = await _actor(registry, labour_id)

        _assert_snapshot_matches_replay(actor.database)


async def test_snapshot_missing_entry_row_rewritten(registry: LabourRegistry) -> None:
    """An entry changed in place whose row is missing makes the snapshot
    write every entry again, so the stored snapshot stays whole."""
    labour_id = await _planned(registry)
    commands = _contraction_commands(labour_id)
    for command in commands[:4]:
        await _run(registry, command)
    actor = await _actor(registry, labour_id)
    assert actor.state is not None
    first = next(iter(actor.state.contractions))
    with actor.database.connection:
        actor.database.execute(
            "DELETE FROM snapshot_entries WHERE entry_id = ?", (str(first),)
        )

    await _run(
        registry,
        cmd.UpdateContraction(labour_id=labour_id, contraction_id=first, intensity=7),
    )
    await _run(registry, _post(labour_id, "one more"))

    _assert_snapshot_matches_replay(actor.database)


async def test_snapshot_after_failed_commit_equals_replay(
    registry: LabourRegistry,
) -> None:
    """Entries of a batch whose commit failed are not counted as stored, and
    the next snapshot still equals a replay."""
    labour_id = await _planned(registry)
    commands = _contraction_commands(labour_id)
    for command in commands[:4]:
        await _run(registry, command)
    actor = await _actor(registry, labour_id)
    actor.database.execute(
        "CREATE TRIGGER reject_snapshot_entries BEFORE INSERT ON snapshot_entries"
        " BEGIN SELECT RAISE(ABORT, 'disk refused'); END"
    )
    failed = await actor.submit(
        CommandRequest(commands[4], MOTHER, CALLER, datetime.now(UTC))
    )
    assert failed.status == 500
    actor.database.execute("DROP TRIGGER reject_snapshot_entries")

    for command in commands[4:]:
        await _run(registry, command)

    _assert_snapshot_matches_replay(actor.database)
