"""LabourRegistry: maps a labour id to its running LabourActor.

Activation opens the labour's database and starts its actor in the registry's
nursery. Callers hold a lease on the actor while they use it. An actor
hibernates only with no lease, an empty inbox and an idle alarm. That
decision is taken without an `await`, so a lease and a hibernation never
overlap. A caller that finds an actor closing waits for it to close and then
activates the labour again.
"""

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import trio
from uuid6 import uuid7

from fernd import observability
from fernd.config import Settings
from fernd.domain import commands as cmd
from fernd.domain.errors import AuthorizationDenied, LabourError
from fernd.domain.handlers import CommandContext, decide
from fernd.ops.erasure import PurgeReport, erase_labour
from fernd.runtime.actor import EventPublisher, LabourActor
from fernd.runtime.effects import NotificationSender
from fernd.runtime.messages import LABOUR_NOT_FOUND, CommandRequest, Outcome, outcome_of
from fernd.storage.labour_db import LabourDatabase
from fernd.storage.shared_db import SharedDatabase

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How often a purge checks whether the leases on a labour's actor are gone.
PURGE_POLL_SECONDS = 0.01
# How long a purge waits for the leases on an actor to be released before it
# stops the actor anyway. A lease is held for milliseconds while a request
# runs, so one still held after this long is taken to be leaked.
PURGE_LEASE_TIMEOUT_SECONDS = 10.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class LabourRegistry:
    """Owns every active labour actor. Start it with `run` in a nursery."""

    def __init__(
        self,
        settings: Settings,
        shared: SharedDatabase,
        *,
        clock: Callable[[], datetime] = utc_now,
        notification_sender: NotificationSender | None = None,
        publishers: Iterable[EventPublisher] = (),
    ) -> None:
        self.settings = settings
        self.data_path = Path(settings.data_dir)
        self.shared = shared
        self.clock = clock
        self.notification_sender = notification_sender
        self.publishers: list[EventPublisher] = list(publishers)
        self._actors: dict[UUID, LabourActor] = {}
        self._locks: dict[UUID, trio.Lock] = {}
        # The cancel scope each running actor's task runs in, for `purge`.
        self._actor_scopes: dict[UUID, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        self.activations = 0
        self.hibernations = 0

    @property
    def active_count(self) -> int:
        return len(self._actors)

    async def run(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled; every actor closes, with a snapshot, on exit."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def resume_pending_work(self) -> int:
        """Activate every labour whose catch-up work was unfinished at the last
        stop, so it completes without a client touching it. Return the count."""
        labour_ids = self.shared.labours_with_pending_work()
        for labour_id in labour_ids:
            try:
                async with self.lease(labour_id):
                    pass
            except Exception:
                logger.exception("Resuming labour %s failed", labour_id)
        if labour_ids:
            logger.info("Resumed unfinished work of %d labours", len(labour_ids))
        return len(labour_ids)

    # Leases

    @asynccontextmanager
    async def lease(
        self, labour_id: UUID, *, create: bool = False
    ) -> AsyncIterator[LabourActor | None]:
        """Yield the labour's active actor, activating it when needed, or None
        when the labour has no database and `create` is false."""
        actor = await self._acquire(labour_id, create)
        try:
            yield actor
        finally:
            if actor is not None:
                self.release(actor)

    async def acquire(self, labour_id: UUID) -> LabourActor | None:
        """Take a lease on the labour's actor; pair with `release`. Return None
        when the labour has no database."""
        return await self._acquire(labour_id, False)

    @staticmethod
    def release(actor: LabourActor) -> None:
        actor.leases -= 1
        actor.touch()

    async def _acquire(self, labour_id: UUID, create: bool) -> LabourActor | None:
        while True:
            actor = self._actors.get(labour_id)
            if actor is not None:
                if not actor.closing:
                    actor.leases += 1
                    return actor
                await actor.closed.wait()
                continue
            lock = self._locks.setdefault(labour_id, trio.Lock())
            try:
                async with lock:
                    if labour_id not in self._actors:
                        if not create and not LabourDatabase.exists(
                            self.data_path, labour_id
                        ):
                            return None
                        await self._activate(labour_id, create)
            finally:
                self._discard_lock(labour_id, lock)

    def _discard_lock(self, labour_id: UUID, lock: trio.Lock) -> None:
        """Drop the labour's lock unless a task holds or awaits it. Trio hands a
        released lock straight to the next waiter, so a lock with no waiters
        may still be held, and dropping it then would let a newcomer make a
        second lock and run beside the holder."""
        if (
            not lock.locked()
            and lock.statistics().tasks_waiting == 0
            and self._locks.get(labour_id) is lock
        ):
            del self._locks[labour_id]

    async def _activate(self, labour_id: UUID, create: bool) -> None:
        assert self._nursery is not None, "LabourRegistry.run is not running"
        actor = LabourActor.activate(self, labour_id, create_database=create)
        self._actors[labour_id] = actor
        self.activations += 1
        await self._nursery.start(self._run_actor, actor)
        logger.debug("Labour %s activated at sequence %d", labour_id, actor.head)

    async def _run_actor(
        self,
        actor: LabourActor,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run `actor` in a cancel scope that `purge` can cancel."""
        with trio.CancelScope() as scope:
            self._actor_scopes[actor.labour_id] = scope
            try:
                await actor.run(task_status=task_status)
            finally:
                if self._actor_scopes.get(actor.labour_id) is scope:
                    del self._actor_scopes[actor.labour_id]

    async def drain(self, deadline_seconds: float) -> None:
        """Wait until no actor has queued commands or catch-up work, or until
        `deadline_seconds` pass; used before shutdown."""
        with trio.move_on_after(deadline_seconds) as scope:
            while any(actor.busy for actor in self._actors.values()):
                await trio.sleep(0.01)
        if scope.cancelled_caught:
            busy = sum(actor.busy for actor in self._actors.values())
            logger.warning(
                "%d labours still busy after %.0f s; their work resumes on restart",
                busy,
                deadline_seconds,
            )

    def may_hibernate(self, actor: LabourActor) -> bool:
        """Mark `actor` closing when no caller holds a lease on it. The actor
        calls this with no await between its idle check and this decision."""
        if actor.leases:
            return False
        actor.closing = True
        self.hibernations += 1
        return True

    def forget(self, actor: LabourActor) -> None:
        if self._actors.get(actor.labour_id) is actor:
            del self._actors[actor.labour_id]

    # Erasure

    async def purge(
        self, labour_id: UUID, shared: SharedDatabase
    ) -> PurgeReport | None:
        """Stop the labour's actor, then delete its database files and its
        rows in `shared`. Return None when the labour is unknown.

        The labour's lock is held throughout, so nothing activates it again.
        The actor is marked closing, so it grants no new lease. Requests that
        already hold one finish first, for at most PURGE_LEASE_TIMEOUT_SECONDS,
        then the actor is cancelled, which snapshots and closes its database.
        A later request finds no database and gets Labour not found, and
        nothing is created again, except by a new PlanLabour naming this id.
        """
        lock = self._locks.setdefault(labour_id, trio.Lock())
        try:
            async with lock:
                actor = self._actors.get(labour_id)
                if actor is not None:
                    await self._stop(actor)
                return erase_labour(self.data_path, labour_id, shared)
        finally:
            self._discard_lock(labour_id, lock)

    async def _stop(self, actor: LabourActor) -> None:
        """Cancel `actor` once no lease is held on it, or after
        PURGE_LEASE_TIMEOUT_SECONDS, and wait until it is closed."""
        actor.closing = True
        with trio.move_on_after(PURGE_LEASE_TIMEOUT_SECONDS) as waiting:
            while actor.leases and not actor.closed.is_set():
                await trio.sleep(PURGE_POLL_SECONDS)
        if waiting.cancelled_caught:
            logger.warning(
                "Purge of labour %s stops its actor with %d leases still held"
                " after %.0f s",
                actor.labour_id,
                actor.leases,
                PURGE_LEASE_TIMEOUT_SECONDS,
            )
        scope = self._actor_scopes.get(actor.labour_id)
        if scope is not None:
            scope.cancel()
        await actor.closed.wait()

    # Commands and queries

    async def execute(self, labour_id: UUID, request: CommandRequest) -> Outcome:
        """Run `request` on an existing labour; Labour not found otherwise."""
        # Lease by hand rather than with `lease`: this runs for every command.
        actor = await self._acquire(labour_id, False)
        if actor is None:
            observability.count_command(request.command.name, LABOUR_NOT_FOUND.status)
            return LABOUR_NOT_FOUND
        try:
            return await actor.submit(request)
        finally:
            self.release(actor)

    async def plan(self, request: CommandRequest) -> Outcome:
        """Run a PlanLabour request, creating the labour's database only when
        the command can succeed."""
        command = request.command
        assert isinstance(command, cmd.PlanLabour)
        labour_id = command.labour_id
        if labour_id not in self._actors and not LabourDatabase.exists(
            self.data_path, labour_id
        ):
            # Nothing can be recorded for a labour without a database, so the
            # checks run here first and a refused plan leaves no file behind.
            ctx = CommandContext(now=request.now, caller=request.caller, new_id=uuid7)
            try:
                decide(None, command, ctx)
            except (AuthorizationDenied, LabourError) as error:
                outcome = outcome_of(error)
                observability.count_command(command.name, outcome.status)
                return outcome
        async with self.lease(labour_id, create=True) as actor:
            assert actor is not None
            return await actor.submit(request)

    async def query(self, labour_id: UUID, run: Callable[[LabourActor], T]) -> T | None:
        """Call `run` with the labour's actor, synchronously, and return its
        result; return None when the labour has no database."""
        async with self.lease(labour_id) as actor:
            if actor is None:
                return None
            return run(actor)
