"""The labour actor in process: group commit, fault isolation, recovery.

Faults are injected with SQLite triggers that raise inside the labour's own
database, so the real projectors and the real transaction see them.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest
import trio
from uuid6 import uuid7

from fernd.config import Settings
from fernd.domain import commands as cmd
from fernd.domain.authorization import Caller
from fernd.domain.constants import MAX_PROJECTOR_ERROR_COUNT
from fernd.domain.enums import LabourUpdateType
from fernd.domain.users import User
from fernd.runtime.actor import LabourActor, _load_state
from fernd.runtime.messages import CommandRequest, Outcome
from fernd.runtime.registry import LabourRegistry
from fernd.storage.shared_db import SharedDatabase

MOTHER = User(user_id="actor-mother", issuer="fernd", name="Alex Morgan")
CALLER = Caller(user_id=MOTHER.user_id, issuer=MOTHER.issuer)


def _request(command: cmd.AnyCommand, key: str | None = None) -> CommandRequest:
    fingerprint = cmd.command_fingerprint(command) if key else None
    return CommandRequest(command, MOTHER, CALLER, datetime.now(UTC), key, fingerprint)


def _update(labour_id: UUID, message: str) -> cmd.PostLabourUpdate:
    return cmd.PostLabourUpdate(
        labour_id=labour_id,
        labour_update_type=LabourUpdateType.STATUS_UPDATE,
        message=message,
    )


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[LabourRegistry]:
    settings = Settings(data_dir=str(tmp_path), hibernate_after=3600.0)
    shared = SharedDatabase.open(tmp_path, "FULL")
    registry = LabourRegistry(settings, shared)
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        yield registry
        nursery.cancel_scope.cancel()
    shared.close()


async def _planned(registry: LabourRegistry) -> UUID:
    labour_id = uuid7()
    plan = cmd.PlanLabour(
        labour_id=labour_id,
        mother_id=MOTHER.user_id,
        mother_name="Alex Morgan",
        first_labour=True,
        due_date=datetime.now(UTC),
    )
    outcome = await registry.plan(_request(plan))
    assert outcome.status == 204
    return labour_id


async def _actor(registry: LabourRegistry, labour_id: UUID) -> LabourActor:
    actor = await registry.query(labour_id, lambda actor: actor)
    assert actor is not None
    return actor


def _count(actor: LabourActor, table: str) -> int:
    row = actor.database.connection.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0])


async def test_batch_commits_once_and_isolates_failures(
    registry: LabourRegistry,
) -> None:
    labour_id = await _planned(registry)
    actor = await _actor(registry, labour_id)
    commits: list[int] = []

    def count_commit() -> bool:
        commits.append(1)
        return False  # False lets the commit proceed

    actor.database.connection.set_commit_hook(count_commit)

    requests = [
        _request(_update(labour_id, "first")),
        _request(_update(labour_id, "   ")),
        _request(_update(labour_id, "third")),
    ]
    actor.process_batch(requests)
    outcomes: list[Outcome] = []
    for request in requests:
        assert request.outcome is not None
        outcomes.append(request.outcome)

    actor.database.connection.set_commit_hook(None)
    assert [outcome.status for outcome in outcomes] == [204, 400, 204]
    assert len(commits) == 1
    assert _count(actor, "labour_updates") == 2


async def test_failed_commit_fails_batch_and_reloads(registry: LabourRegistry) -> None:
    labour_id = await _planned(registry)
    actor = await _actor(registry, labour_id)
    head = actor.head
    actor.database.connection.execute(
        "CREATE TRIGGER reject_events BEFORE INSERT ON events"
        " BEGIN SELECT RAISE(ABORT, 'disk refused'); END"
    )

    outcome = await actor.submit(_request(_update(labour_id, "lost")))

    assert outcome.status == 500
    assert actor.head == head
    assert actor.state is not None
    assert actor.state.labour_updates == {}
    actor.database.connection.execute("DROP TRIGGER reject_events")
    retried = await actor.submit(_request(_update(labour_id, "kept")))
    assert retried.status == 204
    assert actor.head == head + 1


async def test_failing_projector_isolated_then_faulted(
    registry: LabourRegistry,
) -> None:
    labour_id = await _planned(registry)
    actor = await _actor(registry, labour_id)
    actor.database.connection.execute(
        "CREATE TRIGGER reject_updates BEFORE INSERT ON labour_updates"
        " BEGIN SELECT RAISE(ABORT, 'injected'); END"
    )
    name = "LabourUpdateReadModelProjector"

    outcome = await actor.submit(_request(_update(labour_id, "posted")))
    begin = await actor.submit(_request(cmd.BeginLabour(labour_id=labour_id)))

    assert outcome.status == 204
    assert begin.status == 204
    assert actor.projections.checkpoints[name].status == "error"
    # The other projectors carry on: the labour row already shows the phase.
    row = actor.database.connection.execute(
        "SELECT current_phase FROM labours"
    ).fetchone()
    assert row[0] == "EARLY"

    for _ in range(MAX_PROJECTOR_ERROR_COUNT):
        actor.projections.catch_up(datetime.now(UTC))
    checkpoint = actor.projections.checkpoints[name]
    assert checkpoint.faulted
    assert checkpoint.error_count == MAX_PROJECTOR_ERROR_COUNT
    assert "injected" in (checkpoint.error_message or "")


async def test_rebuild_clears_fault_and_restores_rows(
    registry: LabourRegistry,
) -> None:
    labour_id = await _planned(registry)
    actor = await _actor(registry, labour_id)
    connection = actor.database.connection
    connection.execute(
        "CREATE TRIGGER reject_updates BEFORE INSERT ON labour_updates"
        " BEGIN SELECT RAISE(ABORT, 'injected'); END"
    )
    for index in range(3):
        await actor.submit(_request(_update(labour_id, f"update {index}")))
    for _ in range(MAX_PROJECTOR_ERROR_COUNT):
        actor.projections.catch_up(datetime.now(UTC))
    assert actor.projections.checkpoints["LabourUpdateReadModelProjector"].faulted
    connection.execute("DROP TRIGGER reject_updates")

    admin = Caller(user_id="admin", issuer="fernd", is_admin=True)
    rebuild = CommandRequest(
        cmd.RebuildReadModels(aggregate_id=labour_id),
        User(user_id="admin", issuer="fernd"),
        admin,
        datetime.now(UTC),
    )
    outcome = await actor.submit(rebuild)

    assert outcome.status == 204
    assert _count(actor, "labour_updates") == 3
    checkpoints = actor.projections.checkpoints.values()
    assert all(checkpoint.status == "healthy" for checkpoint in checkpoints)
    assert all(
        checkpoint.last_processed_sequence == actor.head for checkpoint in checkpoints
    )


async def test_share_token_set_by_process_manager(registry: LabourRegistry) -> None:
    labour_id = await _planned(registry)
    actor = await _actor(registry, labour_id)

    with trio.fail_after(1):
        while actor.state is None or actor.state.subscription_token is None:
            await trio.sleep(0.01)

    effects = actor.database.effect_rows()
    assert [effect["status"] for effect in effects] == ["COMPLETED"]
    assert (
        effects[0]["idempotency_key"]
        == f"{labour_id}:1:cmd:generate_subscription_token"
    )


async def test_snapshot_and_replay_equal_live_state(registry: LabourRegistry) -> None:
    labour_id = await _planned(registry)
    actor = await _actor(registry, labour_id)
    for index in range(450):
        await actor.submit(_request(_update(labour_id, f"update {index}")))
    snapshot = actor.database.load_snapshot()

    state, snapshot_sequence = _load_state(actor.database)

    assert snapshot is not None
    assert snapshot_sequence == snapshot[0]
    assert snapshot_sequence > 0
    assert state == actor.state
