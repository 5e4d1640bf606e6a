"""Shared projector checkpoints are written with the rows they change, and
otherwise when the labour closes or every CHECKPOINT_SAVE_INTERVAL events."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import trio
from uuid6 import uuid7

from fernd.config import Settings
from fernd.domain import commands as cmd
from fernd.domain.authorization import Caller
from fernd.domain.enums import LabourUpdateType
from fernd.domain.users import User
from fernd.runtime.messages import CommandRequest
from fernd.runtime.registry import LabourRegistry
from fernd.storage.shared_db import (
    CHECKPOINT_SAVE_INTERVAL,
    SHARED_PROJECTORS,
    SharedDatabase,
)

MOTHER = User(user_id="checkpoint-mother", issuer="fernd", name="Alex Morgan")
CALLER = Caller(user_id=MOTHER.user_id, issuer=MOTHER.issuer)


@asynccontextmanager
async def _running(
    data_dir: Path, hibernate_after: float
) -> AsyncIterator[LabourRegistry]:
    settings = Settings(data_dir=str(data_dir), hibernate_after=hibernate_after)
    shared = SharedDatabase.open(data_dir, "NORMAL")
    registry = LabourRegistry(settings, shared)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(registry.run)
            yield registry
            nursery.cancel_scope.cancel()
    finally:
        shared.close()


async def _run(registry: LabourRegistry, command: cmd.AnyCommand) -> None:
    request = CommandRequest(command, MOTHER, CALLER, datetime.now(UTC))
    if isinstance(command, cmd.PlanLabour):
        outcome = await registry.plan(request)
    else:
        outcome = await registry.execute(command.labour_id, request)
    assert outcome.status == 204, outcome.body


async def _plan(registry: LabourRegistry) -> UUID:
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


async def _post_updates(registry: LabourRegistry, labour_id: UUID, count: int) -> None:
    for index in range(count):
        await _run(
            registry,
            cmd.PostLabourUpdate(
                labour_id=labour_id,
                labour_update_type=LabourUpdateType.STATUS_UPDATE,
                message=f"update {index}",
            ),
        )


async def _settled(registry: LabourRegistry, labour_id: UUID) -> int:
    """Wait until the shared projectors caught up in memory; return the head."""
    with trio.fail_after(10):
        while True:
            state = await registry.query(
                labour_id,
                lambda actor: (
                    actor.head,
                    [
                        c.last_processed_sequence
                        for c in actor.shared_checkpoints.values()
                    ],
                ),
            )
            assert state is not None
            head, sequences = state
            if all(sequence == head for sequence in sequences):
                return head
            await trio.sleep(0.01)


def _stored(shared: SharedDatabase, labour_id: UUID) -> dict[str, int]:
    return {
        name: checkpoint.last_processed_sequence
        for name, checkpoint in shared.checkpoints(labour_id).items()
    }


async def test_update_without_row_change_defers_checkpoint(tmp_path: Path) -> None:
    async with _running(tmp_path, hibernate_after=3600.0) as registry:
        labour_id = await _plan(registry)
        await _post_updates(registry, labour_id, 3)
        head = await _settled(registry, labour_id)

        stored = _stored(registry.shared, labour_id)

    # The updates changed no shared row, so no checkpoint was written for them.
    assert set(stored) == set(SHARED_PROJECTORS)
    assert all(sequence <= head - 3 for sequence in stored.values())


async def test_hibernation_writes_deferred_checkpoints(tmp_path: Path) -> None:
    async with _running(tmp_path, hibernate_after=0.05) as registry:
        labour_id = await _plan(registry)
        await _post_updates(registry, labour_id, 3)
        head = await _settled(registry, labour_id)
        with trio.fail_after(10):
            while registry.active_count:
                await trio.sleep(0.01)

        stored = _stored(registry.shared, labour_id)

    assert stored == dict.fromkeys(SHARED_PROJECTORS, head)


async def test_long_run_without_row_change_saves_checkpoint(tmp_path: Path) -> None:
    async with _running(tmp_path, hibernate_after=3600.0) as registry:
        labour_id = await _plan(registry)
        await _post_updates(registry, labour_id, CHECKPOINT_SAVE_INTERVAL)
        await _settled(registry, labour_id)

        stored = _stored(registry.shared, labour_id)

    # Without the interval both would still be at the plan's few events.
    assert all(sequence >= CHECKPOINT_SAVE_INTERVAL for sequence in stored.values())


async def test_lagging_checkpoint_catches_up_after_restart(tmp_path: Path) -> None:
    async with _running(tmp_path, hibernate_after=3600.0) as registry:
        labour_id = await _plan(registry)
        await _post_updates(registry, labour_id, 3)
        head = await _settled(registry, labour_id)
        rows_before = registry.shared.labour_history(MOTHER.user_id, 10)
    # As after a crash, the stored checkpoints lag the events.
    shared = SharedDatabase.open(tmp_path, "NORMAL")
    shared.connection.execute(
        "UPDATE projection_checkpoints SET last_processed_sequence = 1"
        " WHERE labour_id = ?",
        (str(labour_id),),
    )
    shared.close()

    async with _running(tmp_path, hibernate_after=0.05) as registry:
        await _post_updates(registry, labour_id, 1)
        with trio.fail_after(10):
            while registry.active_count:
                await trio.sleep(0.01)
        stored = _stored(registry.shared, labour_id)
        rows_after = registry.shared.labour_history(MOTHER.user_id, 10)

    assert stored == dict.fromkeys(SHARED_PROJECTORS, head + 1)
    assert len(rows_after) == len(rows_before) == 1
    assert rows_after[0].labour_id == rows_before[0].labour_id
    assert rows_after[0].current_phase == rows_before[0].current_phase
