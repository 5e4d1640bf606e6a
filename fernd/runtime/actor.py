"""LabourActor: the one owner of a labour's state and database while active.

The command loop takes a batch of requests from the inbox and decides every
command without any `await` between reading the state and committing. It
evolves the state and writes the events, idempotency records, effects and read
models in one transaction. Only then does it reply. The alarm loop runs the
catch-up cycle after each commit: lagging projectors, pushes, shared
projectors, then the process manager's due effects.
"""

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

import trio
from uuid6 import uuid7

from fernd import observability
from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.authorization import (
    Caller,
    PrincipalKind,
    resolve_principal,
)
from fernd.domain.constants import (
    DEFAULT_BATCH_SIZE,
    IDEMPOTENCY_RETENTION_DAYS,
    MAX_RETRY_ATTEMPTS,
)
from fernd.domain.effects import encode_effect_payload
from fernd.domain.errors import AuthorizationDenied, LabourError, NotFound
from fernd.domain.handlers import CommandContext, authorize_command, decide, load
from fernd.domain.labour import Labour, create, evolve
from fernd.domain.policies import effects_for_event
from fernd.domain.users import User
from fernd.domain.visibility import audience_of
from fernd.runtime.effects import EffectExecutor
from fernd.runtime.messages import (
    INTERNAL_ERROR,
    KEY_REUSED,
    SUCCESS,
    CommandRequest,
    Outcome,
    outcome_of,
)
from fernd.runtime.snapshots import SnapshotChanges
from fernd.storage.labour_db import LabourDatabase, RecordedOutcome, StoredEvent
from fernd.storage.projections.runner import LabourProjections
from fernd.storage.shared_db import SharedCheckpoint
from fernd.storage.sqlite import StorageError

if TYPE_CHECKING:
    from fernd.runtime.registry import LabourRegistry

logger = logging.getLogger(__name__)

# The catch-up cycle is retried after a failure with this delay, doubled up to
# the maximum, so a broken disk or projector does not spin the CPU.
ALARM_RETRY_INITIAL_SECONDS = 2.0
ALARM_RETRY_MAX_SECONDS = 64.0
# Scheduler rounds a batch may wait for commands still on their way. This
# bounds the wait while commands keep arriving without filling the batch.
BATCH_GROWTH_ROUNDS = 256
# Rounds in a row that bring no command after which the batch stops waiting.
# Commands pipelined on one WebSocket reach the inbox with gaps of a few
# rounds between them. In the pipelining benchmark (bench/wsclient.py, 5,000
# commands, 2 shared cores) batches averaged 7 commands with 2 and about 35
# with 4.
BATCH_GROWTH_IDLE_ROUNDS = 4


class EventPublisher(Protocol):
    """Receives every new event once all non-faulted per-labour projectors
    include it. `publish` must not block: it is called on the alarm path."""

    def publish(self, labour_id: UUID, events: Sequence[StoredEvent]) -> None: ...


# An effect to insert: event sequence, payload, effect type, key, created_at.
_EffectRow = tuple[int, bytes, str, str, datetime]


class LabourActor:
    """The active form of one labour. Create it with `activate`."""

    def __init__(
        self,
        registry: "LabourRegistry",
        labour_id: UUID,
        database: LabourDatabase,
        state: Labour | None,
        snapshot_changes: SnapshotChanges,
    ) -> None:
        settings = registry.settings
        self.registry = registry
        self.labour_id = labour_id
        self.database = database
        self.state = state
        self.projections = LabourProjections(database)
        self.users = database.load_users()
        self.head = database.last_sequence()
        self.process_manager_checkpoint = database.process_manager_checkpoint()
        self.pushed_head = self.head
        self.shared_checkpoints: dict[str, SharedCheckpoint] = (
            registry.shared.checkpoints(labour_id)
        )
        self.snapshot_sequence = 0
        self._snapshot_changes = snapshot_changes
        self.head_at_batch_start = self.head
        # Projectors already faulted at activation are not counted again.
        self._faulted_projectors = self._faulted_projector_names()
        self._batch_limit = settings.command_batch_limit
        self._snapshot_interval = settings.snapshot_interval
        self._hibernate_after = settings.hibernate_after
        self._inbox_send, self._inbox_receive = trio.open_memory_channel[
            CommandRequest
        ](settings.command_batch_limit * 4)
        self._alarm_wakeup = trio.Event()
        self._alarm_busy = False
        self._alarm_due: float | None = None
        self._marked_pending = False
        self._recent: list[StoredEvent] = []
        self._effects = EffectExecutor(self)
        self.leases = 0
        self.last_activity = trio.current_time()
        self.closing = False
        self.closed = trio.Event()
        self.started = trio.Event()

    @classmethod
    def activate(
        cls, registry: "LabourRegistry", labour_id: UUID, *, create_database: bool
    ) -> "LabourActor":
        """Open the labour's database, load its latest snapshot and replay the
        events after it. Synchronous: the caller holds the labour's lock."""
        settings = registry.settings
        database = LabourDatabase.open(
            registry.data_path,
            labour_id,
            settings.sqlite_synchronous,
            create=create_database,
        )
        changes = SnapshotChanges()
        try:
            state, snapshot_sequence = _load_state(database, changes=changes)
        except Exception:
            database.close()
            raise
        actor = cls(registry, labour_id, database, state, changes)
        actor.snapshot_sequence = snapshot_sequence
        return actor

    # Entry points used by the registry

    async def submit(self, request: CommandRequest) -> Outcome:
        """Queue `request` and wait for its reply."""
        await self.enqueue(request)
        await request.done.wait()
        assert request.outcome is not None
        return request.outcome

    async def enqueue(self, request: CommandRequest) -> None:
        """Queue `request` in arrival order; await `request.done` for the reply.

        Waits only while the inbox is full. With room in the inbox this does
        not yield, so a caller can queue several requests before the command
        loop takes the next batch. A caller already cancelled queues nothing.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._inbox_send.send_nowait(request)
        except trio.WouldBlock:
            await self._inbox_send.send(request)

    def touch(self) -> None:
        self.last_activity = trio.current_time()

    def wake_alarm(self) -> None:
        self._alarm_wakeup.set()

    @property
    def busy(self) -> bool:
        """Tell whether commands are queued or catch-up work is running or due
        now; a retry scheduled for later does not count."""
        return (
            self._alarm_busy
            or self._alarm_wakeup.is_set()
            or self._inbox_receive.statistics().current_buffer_used > 0
        )

    @property
    def idle(self) -> bool:
        """Tell whether nothing is queued, held or scheduled for this labour."""
        return (
            self.leases == 0
            and not self._alarm_busy
            and self._alarm_due is None
            and not self._alarm_wakeup.is_set()
            and self._inbox_receive.statistics().current_buffer_used == 0
        )

    async def run(
        self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve the labour until it hibernates or the registry is cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._alarm_loop)
                if self._has_unfinished_work():
                    self.wake_alarm()
                self.started.set()
                task_status.started()
                await self._command_loop()
                nursery.cancel_scope.cancel()
        finally:
            self._close()

    # Command loop

    async def _command_loop(self) -> None:
        while True:
            request = await self._next_request()
            if request is None:
                return
            await self._let_batch_grow()
            batch = [request]
            while len(batch) < self._batch_limit:
                try:
                    batch.append(self._inbox_receive.receive_nowait())
                except trio.WouldBlock:
                    break
            self.process_batch(batch)
            self.touch()
            self.wake_alarm()

    async def _let_batch_grow(self) -> None:
        """Yield while commands are still arriving, so commands on their way
        to the inbox join this batch.

        A command from a socket passes through several tasks before it
        reaches the inbox. Cutting the batch at once would commit, and fsync,
        pipelined commands a few at a time. This returns when the batch is
        full, when nothing else is runnable, after BATCH_GROWTH_IDLE_ROUNDS
        rounds in a row that brought no command, or after BATCH_GROWTH_ROUNDS
        rounds. The state is read only after this, so the write path still
        has no await.
        """
        queued = self._inbox_receive.statistics().current_buffer_used
        idle_rounds = 0
        for _ in range(BATCH_GROWTH_ROUNDS):
            if queued + 1 >= self._batch_limit:
                return
            await trio.sleep(0)
            if trio.lowlevel.current_statistics().tasks_runnable == 0:
                return
            now_queued = self._inbox_receive.statistics().current_buffer_used
            if now_queued > queued:
                idle_rounds = 0
            else:
                idle_rounds += 1
                if idle_rounds >= BATCH_GROWTH_IDLE_ROUNDS:
                    return
            queued = now_queued

    async def _next_request(self) -> CommandRequest | None:
        """Wait for the next request; return None when the labour should
        hibernate."""
        while True:
            remaining = self.last_activity + self._hibernate_after - trio.current_time()
            if remaining <= 0:
                if self.idle and self.registry.may_hibernate(self):
                    return None
                remaining = self._hibernate_after
            with trio.move_on_after(remaining):
                return await self._inbox_receive.receive()

    def process_batch(self, batch: list[CommandRequest]) -> None:
        """Decide, commit and reply to every request of `batch`. No `await`."""
        segment: list[CommandRequest] = []
        for request in batch:
            if isinstance(request.command, cmd.RebuildReadModels):
                self._commit_segment(segment)
                segment = []
                self._rebuild(request)
            else:
                segment.append(request)
        self._commit_segment(segment)

    def _commit_segment(self, batch: list[CommandRequest]) -> None:
        if not batch:
            return
        observability.observe_batch(len(batch))
        if not self._marked_pending:
            # Recorded before the first commit of this activation, so a crash
            # after it still finds the labour's unfinished work on restart.
            self.registry.shared.mark_pending(self.labour_id, batch[0].now)
            self._marked_pending = True

        results: list[Outcome] = []
        new_events: list[StoredEvent] = []
        records: list[tuple[str, str, RecordedOutcome, datetime]] = []
        batch_keys: dict[tuple[str, str], RecordedOutcome] = {}
        effects: list[_EffectRow] = []
        head_before = self.head
        self.head_at_batch_start = head_before
        state_broken = False
        snapshot_written = False

        for request in batch:
            try:
                outcome, command_events, record = self._decide_one(
                    request, batch_keys, effects
                )
            except Exception:
                logger.exception(
                    "Unexpected error deciding %s on labour %s",
                    request.command.name,
                    self.labour_id,
                )
                outcome, command_events, record = INTERNAL_ERROR, [], None
                state_broken = True
            results.append(outcome)
            if record is not None and request.key is not None:
                batch_keys[(request.caller.user_id, request.key)] = record
                records.append(
                    (request.caller.user_id, request.key, record, request.now)
                )
            new_events += command_events

        try:
            with self.database.connection:
                self.database.append_events(new_events)
                for user_id, key, record, now in records:
                    self.database.record_outcome(user_id, key, record, now)
                for sequence, payload, effect_type, key, now in effects:
                    self.database.insert_effect(
                        uuid7(), sequence, effect_type, payload, key, now
                    )
                if new_events and self.process_manager_checkpoint == head_before:
                    self.database.set_process_manager_checkpoint(
                        self.head, batch[-1].now
                    )
                self._save_users(batch)
                # A state broken by an unexpected error is reloaded below and
                # must not be stored.
                if (
                    self.state is not None
                    and not state_broken
                    and self.head - self.snapshot_sequence >= self._snapshot_interval
                ):
                    self.database.save_snapshot(
                        self.head,
                        self.state,
                        self._snapshot_changes.changed,
                        batch[-1].now,
                    )
                    self.snapshot_sequence = self.head
                    snapshot_written = True
                self.projections.project(new_events, batch[-1].now)
        except Exception:
            logger.exception(
                "Commit of %d commands failed on labour %s; reloading its state",
                len(batch),
                self.labour_id,
            )
            self._reload()
            for request in batch:
                _reply(request, INTERNAL_ERROR)
            return

        if new_events and self.process_manager_checkpoint == head_before:
            self.process_manager_checkpoint = self.head
        if snapshot_written:
            self._snapshot_changes.stored()
        self._recent += new_events
        if state_broken:
            self._reload()
        for request, outcome in zip(batch, results, strict=True):
            _reply(request, outcome)

    def _decide_one(
        self,
        request: CommandRequest,
        batch_keys: dict[tuple[str, str], RecordedOutcome],
        effects: list[_EffectRow],
    ) -> tuple[Outcome, list[StoredEvent], RecordedOutcome | None]:
        """Run pipeline steps 4 to 8 for one request on the in-memory state.

        Returns the reply, the events to append (already applied to the state)
        and the outcome to record under the request's idempotency key.
        """
        command = request.command
        assert isinstance(command, cmd.Command)
        caller = request.caller

        if request.key is not None:
            recorded = batch_keys.get((caller.user_id, request.key))
            if recorded is None:
                recorded = self.database.recorded_outcome(caller.user_id, request.key)
            if recorded is not None:
                if caller.is_internal or recorded.fingerprint == request.fingerprint:
                    return _replay(recorded), [], None
                return KEY_REUSED, [], None

        ctx = CommandContext(now=request.now, caller=caller, new_id=uuid7)
        try:
            new_events = decide(self.state, command, ctx)
        except NotFound as error:
            return outcome_of(error), [], None
        except (AuthorizationDenied, LabourError) as error:
            outcome = outcome_of(error)
            # Rate-limited replies are not recorded, so a retry is decided anew.
            record = None if error.status == 429 else self._record(request, outcome)
            return outcome, [], record

        stored = self._apply(new_events, request, effects)
        return SUCCESS, stored, self._record(request, SUCCESS)

    def _record(
        self, request: CommandRequest, outcome: Outcome
    ) -> RecordedOutcome | None:
        if request.key is None:
            return None
        return RecordedOutcome(request.fingerprint or "", outcome.status, outcome.body)

    def _apply(
        self,
        new_events: list[ev.Event],
        request: CommandRequest,
        effects: list[_EffectRow],
    ) -> list[StoredEvent]:
        """Number `new_events`, apply each to the state, and add to `effects`
        what the policies derive from each event against the state right
        after it."""
        evaluate = self.process_manager_checkpoint == self.head_at_batch_start
        stored = []
        for event in new_events:
            self.head += 1
            stored.append(
                StoredEvent(
                    sequence=self.head,
                    event=event,
                    data=ev.encode_event(event),
                    timestamp=request.now,
                    user_id=request.caller.user_id,
                    audience=audience_of(self.state, event),
                )
            )
            if self.state is None:
                assert isinstance(event, ev.LabourPlanned)
                self.state = create(event, self.head)
            else:
                self._snapshot_changes.note(self.state, event, self.head)
                evolve(self.state, event, self.head, request.now)
            if evaluate:
                for effect in effects_for_event(self.state, event, self.head):
                    effects.append(
                        (
                            self.head,
                            encode_effect_payload(effect.payload),
                            effect.effect_type.value,
                            effect.idempotency_key,
                            request.now,
                        )
                    )
        return stored

    def _save_users(self, batch: Sequence[CommandRequest]) -> None:
        for request in batch:
            self.remember_user(request.user, request.caller)

    def remember_user(self, user: User, caller: Caller) -> None:
        """Store the caller's profile when they are the mother or hold a
        subscription, and it differs from the stored one."""
        # Unchanged profiles, the common case, skip principal resolution.
        if (
            caller.is_internal
            or self.state is None
            or self.users.get(user.user_id) == user
        ):
            return
        principal = resolve_principal(self.state, caller)
        if principal.kind not in (PrincipalKind.MOTHER, PrincipalKind.SUBSCRIBER):
            return
        self.database.save_user(user)
        self.users[user.user_id] = user

    def _rebuild(self, request: CommandRequest) -> None:
        command = request.command
        ctx = CommandContext(now=request.now, caller=request.caller, new_id=uuid7)
        try:
            labour = load(self.state, command)
            authorize_command(labour, command, ctx)
        except (NotFound, AuthorizationDenied) as error:
            _reply(request, outcome_of(error))
            return
        try:
            self.rebuild_read_models(request.now)
        except Exception:
            logger.exception(
                "Rebuild of read models failed on labour %s", self.labour_id
            )
            self._reload()
            _reply(request, INTERNAL_ERROR)
            return
        _reply(request, SUCCESS)

    def rebuild_read_models(self, now: datetime) -> None:
        """Delete every read-model row and checkpoint of this labour, in its own
        database and in the shared one, and replay every event through all
        seven projectors. Sends no pushes and no notifications."""
        with self.database.connection:
            self.projections.clear()
        self.registry.shared.clear_labour(self.labour_id)
        self.shared_checkpoints = self.registry.shared.checkpoints(self.labour_id)
        self.projections.catch_up(now)
        after = 0
        while True:
            events = list(self.database.events_after(after, DEFAULT_BATCH_SIZE))
            if not events:
                break
            self._project_shared_events(events, now)
            after = events[-1].sequence
        logger.info(
            "Rebuilt read models of labour %s up to sequence %d",
            self.labour_id,
            self.head,
        )

    def _reload(self) -> None:
        """Reload state and checkpoints from the database after a failed commit."""
        self._snapshot_changes = SnapshotChanges()
        self.state, self.snapshot_sequence = _load_state(
            self.database, changes=self._snapshot_changes
        )
        self.head = self.database.last_sequence()
        self.projections.reload()
        self.process_manager_checkpoint = self.database.process_manager_checkpoint()
        self.users = self.database.load_users()
        self._recent = [s for s in self._recent if s.sequence <= self.head]

    # Alarm loop: the catch-up cycle

    async def _alarm_loop(self) -> None:
        delay = ALARM_RETRY_INITIAL_SECONDS
        while True:
            if self._alarm_due is None:
                await self._alarm_wakeup.wait()
            else:
                with trio.move_on_at(self._alarm_due):
                    await self._alarm_wakeup.wait()
            self._alarm_wakeup = trio.Event()
            self._alarm_due = None
            self._alarm_busy = True
            try:
                await self._catch_up()
                delay = ALARM_RETRY_INITIAL_SECONDS
            except (StorageError, Exception) as error:
                logger.error(
                    "Catch-up cycle failed on labour %s at sequence %d, retrying in"
                    " %.0f s: %s",
                    self.labour_id,
                    self.head,
                    delay,
                    error,
                )
                self._alarm_due = trio.current_time() + delay
                delay = min(delay * 2, ALARM_RETRY_MAX_SECONDS)
                observability.count_catch_up_retry()
            finally:
                self._alarm_busy = False
                self._count_new_faults()
                self.touch()

    def _faulted_projector_names(self) -> set[tuple[str, str]]:
        """Return (scope, projector name) of every faulted projector, with
        scope "labour" for this labour's database and "shared" for the shared
        one."""
        faulted = {
            ("labour", name)
            for name, checkpoint in self.projections.checkpoints.items()
            if checkpoint.faulted
        }
        faulted.update(
            ("shared", name)
            for name, checkpoint in self.shared_checkpoints.items()
            if checkpoint.faulted
        )
        return faulted

    def _count_new_faults(self) -> None:
        """Count each projector that became faulted since the last call. A
        fault from a commit's projection is counted after the catch-up cycle
        that the commit wakes."""
        faulted = self._faulted_projector_names()
        for scope, name in sorted(faulted - self._faulted_projectors):
            observability.count_projector_fault(scope, name)
        self._faulted_projectors = faulted

    async def _catch_up(self) -> None:
        """Run the catch-up steps in order until none finds more work."""
        while True:
            # Work that arrives during this pass sets a new event, so the pass
            # repeats instead of sleeping.
            self._alarm_wakeup = trio.Event()
            now = self.registry.clock()
            if self.projections.lagging(self.head) and not self.projections.catch_up(
                now
            ):
                raise RuntimeError("A per-labour projector failed")
            self._publish()
            self._project_shared(now)
            if self.process_manager_checkpoint < self.head:
                self._evaluate_policies_from_store(now)
            executed = await self._effects.run_due(now)
            await trio.lowlevel.checkpoint()
            if not executed and not self._alarm_wakeup.is_set():
                break
        self._schedule_next_effect()

    def _publish(self) -> None:
        target = self.projections.projected_head()
        if target <= self.pushed_head:
            return
        events = [
            s
            for s in self._recent
            if s.sequence > self.pushed_head and s.sequence <= target
        ]
        if not events or events[0].sequence != self.pushed_head + 1:
            events = list(
                self.database.events_after(self.pushed_head, target - self.pushed_head)
            )
        for publisher in self.registry.publishers:
            try:
                publisher.publish(self.labour_id, events)
            except Exception:
                logger.exception(
                    "Publishing to sockets failed on labour %s", self.labour_id
                )
        self.pushed_head = events[-1].sequence if events else target

    def _project_shared(self, now: datetime) -> None:
        live = [c for c in self.shared_checkpoints.values() if not c.faulted]
        if not live:
            return
        after = min(c.last_processed_sequence for c in live)
        if after >= self.head:
            self._trim_recent()
            return
        events = [s for s in self._recent if s.sequence > after]
        if not events or events[0].sequence != after + 1:
            events = list(self.database.events_after(after, DEFAULT_BATCH_SIZE))
        if not self._project_shared_events(events, now):
            raise RuntimeError("A shared projector failed")
        self._trim_recent()

    def _project_shared_events(self, events: list[StoredEvent], now: datetime) -> bool:
        """Apply `events` to the shared projectors in one transaction of the
        shared database, so a pass costs one commit there, not one per
        projector. Return False when a projector failed."""
        shared = self.registry.shared
        try:
            with shared.connection:
                projected = shared.project(
                    self.labour_id, self.shared_checkpoints, events, now
                )
        except Exception:
            # The checkpoints in memory moved on before the commit failed.
            self.shared_checkpoints = shared.checkpoints(self.labour_id)
            raise
        return projected

    def _trim_recent(self) -> None:
        shared_head = min(
            c.last_processed_sequence for c in self.shared_checkpoints.values()
        )
        keep_after = min(self.pushed_head, shared_head)
        if self._recent and self._recent[0].sequence <= keep_after:
            self._recent = [s for s in self._recent if s.sequence > keep_after]

    def _evaluate_policies_from_store(self, now: datetime) -> None:
        """Evaluate policies for events after the process-manager checkpoint
        by replaying the event store; used after a restart or a failure."""
        replay: Labour | None = None
        checkpoint = self.process_manager_checkpoint
        for stored in self.database.events_after(0):
            if replay is None:
                assert isinstance(stored.event, ev.LabourPlanned)
                replay = create(stored.event, stored.sequence)
            else:
                evolve(replay, stored.event, stored.sequence, stored.timestamp)
            if stored.sequence <= checkpoint:
                continue
            with self.database.connection:
                for effect in effects_for_event(replay, stored.event, stored.sequence):
                    self.database.insert_effect(
                        uuid7(),
                        stored.sequence,
                        effect.effect_type.value,
                        encode_effect_payload(effect.payload),
                        effect.idempotency_key,
                        stored.timestamp,
                    )
                self.database.set_process_manager_checkpoint(stored.sequence, now)
            self.process_manager_checkpoint = stored.sequence

    def _schedule_next_effect(self) -> None:
        due = self.database.next_effect_due_at(
            MAX_RETRY_ATTEMPTS, self._effects.effect_types
        )
        if due is None:
            return
        if due == "":
            self._alarm_due = trio.current_time()
            return
        wait = (datetime.fromisoformat(due) - self.registry.clock()).total_seconds()
        self._alarm_due = trio.current_time() + max(0.0, wait)

    def _has_unfinished_work(self) -> bool:
        return (
            self.projections.lagging(self.head)
            or self.process_manager_checkpoint < self.head
            or any(
                c.last_processed_sequence < self.head and not c.faulted
                for c in self.shared_checkpoints.values()
            )
            or self.database.next_effect_due_at(
                MAX_RETRY_ATTEMPTS, self._effects.effect_types
            )
            is not None
        )

    # Closing

    def _close(self) -> None:
        """Write a snapshot, clear the pending mark when no work is left,
        checkpoint the WAL and close the database."""
        try:
            now = self.registry.clock()
            if self.state is not None and self.snapshot_sequence < self.head:
                with self.database.connection:
                    self.database.save_snapshot(
                        self.head, self.state, self._snapshot_changes.changed, now
                    )
            self.database.purge_outcomes_before(
                now - timedelta(days=IDEMPOTENCY_RETENTION_DAYS)
            )
            self.registry.shared.save_checkpoints(
                self.labour_id, self.shared_checkpoints, now
            )
            if not self._has_unfinished_work():
                self.registry.shared.clear_pending(self.labour_id)
        except Exception:
            logger.exception(
                "Closing labour %s failed; its work resumes on restart", self.labour_id
            )
        finally:
            self.database.close()
            self.registry.forget(self)
            self.closed.set()
            logger.debug("Labour %s closed at sequence %d", self.labour_id, self.head)


def _load_state(
    database: LabourDatabase,
    up_to: int | None = None,
    changes: SnapshotChanges | None = None,
) -> tuple[Labour | None, int]:
    """Rebuild the state from the latest snapshot and the events after it, up
    to sequence `up_to` when given. Return it with the snapshot's sequence.

    `changes`, when given, collects the snapshot entries that the replayed
    events touched, ready for the next snapshot.
    """
    state: Labour | None = None
    snapshot_sequence = 0
    snapshot = database.load_snapshot()
    if snapshot is not None and (up_to is None or snapshot.sequence <= up_to):
        snapshot_sequence, state = snapshot.sequence, snapshot.labour
        if changes is not None and not snapshot.entries_in_rows:
            changes.rewrite_all()
    elif changes is not None:
        # No usable snapshot: rows left by a snapshot beyond `up_to` are stale.
        changes.rewrite_all()
    for stored in database.events_after(snapshot_sequence):
        if up_to is not None and stored.sequence > up_to:
            break
        if state is None:
            if not isinstance(stored.event, ev.LabourPlanned):
                raise StorageError(
                    f"Labour {database.labour_id} starts with {stored.event.name}"
                )
            state = create(stored.event, stored.sequence)
        else:
            if changes is not None:
                changes.note(state, stored.event, stored.sequence)
            evolve(state, stored.event, stored.sequence, stored.timestamp)
    return state, snapshot_sequence


def _reply(request: CommandRequest, outcome: Outcome) -> None:
    """Send `outcome` to the waiting caller and count it."""
    request.reply(outcome)
    observability.count_command(request.command.name, outcome.status)


def _replay(recorded: RecordedOutcome) -> Outcome:
    return Outcome(status=recorded.status, body=recorded.body, replayed=True)
