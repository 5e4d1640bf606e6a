"""Runs the five per-labour projectors with their checkpoints and fault rules.

Each projector applies a batch of events and writes its checkpoint inside one
savepoint, so an event is applied exactly once. A projector that fails has its
savepoint rolled back, its checkpoint marked `error`, and is skipped from then
on once it has failed MAX_PROJECTOR_ERROR_COUNT times in a row.
"""

import logging
from collections.abc import Sequence
from datetime import datetime

import apsw
import msgspec

from fernd.domain.constants import DEFAULT_BATCH_SIZE, MAX_PROJECTOR_ERROR_COUNT
from fernd.storage.labour_db import LabourDatabase, StoredEvent
from fernd.storage.projections.base import LabourProjector, stamp
from fernd.storage.projections.contraction import ContractionProjector
from fernd.storage.projections.labour import LabourProjector as LabourRowProjector
from fernd.storage.projections.labour_update import LabourUpdateProjector
from fernd.storage.projections.subscription import SubscriptionProjector
from fernd.storage.projections.subscription_token import SubscriptionTokenProjector

logger = logging.getLogger(__name__)

LABOUR_PROJECTORS: tuple[LabourProjector, ...] = (
    LabourRowProjector(),
    ContractionProjector(),
    LabourUpdateProjector(),
    SubscriptionProjector(),
    SubscriptionTokenProjector(),
)

READ_MODEL_TABLES = (
    "labours",
    "contractions",
    "labour_updates",
    "subscriptions",
    "subscription_token",
)


class Checkpoint(msgspec.Struct, kw_only=True):
    projector_name: str
    last_processed_sequence: int = 0
    last_processed_at: str | None = None
    updated_at: str | None = None
    status: str = "healthy"
    error_message: str | None = None
    error_count: int = 0

    @property
    def faulted(self) -> bool:
        return self.status == "error" and self.error_count >= MAX_PROJECTOR_ERROR_COUNT


class LabourProjections:
    """The per-labour projectors of one labour database and their checkpoints,
    mirrored in memory. Call `reload` after a transaction that failed to commit.
    """

    def __init__(self, database: LabourDatabase) -> None:
        self._database = database
        self._connection: apsw.Connection = database.connection
        self.checkpoints: dict[str, Checkpoint] = {}
        self.reload()

    def reload(self) -> None:
        rows = self._connection.execute(
            "SELECT projector_name, last_processed_sequence, last_processed_at,"
            " updated_at, status, error_message, error_count FROM"
            " projection_checkpoints"
        ).fetchall()
        stored = {
            row[0]: Checkpoint(
                projector_name=row[0],
                last_processed_sequence=row[1],
                last_processed_at=row[2],
                updated_at=row[3],
                status=row[4],
                error_message=row[5],
                error_count=row[6],
            )
            for row in rows
        }
        self.checkpoints = {
            projector.name: stored.get(
                projector.name, Checkpoint(projector_name=projector.name)
            )
            for projector in LABOUR_PROJECTORS
        }

    def projected_head(self) -> int:
        """Return the last sequence every non-faulted projector has applied."""
        sequences = [
            checkpoint.last_processed_sequence
            for checkpoint in self.checkpoints.values()
            if not checkpoint.faulted
        ]
        return min(sequences) if sequences else self._database.last_sequence()

    def lagging(self, head: int) -> bool:
        """Tell whether a non-faulted projector has not reached `head`."""
        return any(
            checkpoint.last_processed_sequence < head and not checkpoint.faulted
            for checkpoint in self.checkpoints.values()
        )

    def project(self, events: Sequence[StoredEvent], now: datetime) -> None:
        """Apply `events`, which follow each other without gaps, to every
        projector whose checkpoint is right before them.

        Call inside an open transaction; a lagging or faulted projector is left
        for `catch_up`.
        """
        if not events:
            return
        first = events[0].sequence
        for projector in LABOUR_PROJECTORS:
            checkpoint = self.checkpoints[projector.name]
            if (
                checkpoint.status != "healthy"
                or checkpoint.last_processed_sequence != first - 1
            ):
                continue
            self._apply_batch(projector, checkpoint, events, now)

    def catch_up(self, now: datetime) -> bool:
        """Bring every non-faulted projector to the head of the event store, one
        transaction per batch. Return True when all of them reached it."""
        head = self._database.last_sequence()
        complete = True
        for projector in LABOUR_PROJECTORS:
            while True:
                checkpoint = self.checkpoints[projector.name]
                if checkpoint.faulted or checkpoint.last_processed_sequence >= head:
                    break
                events = list(
                    self._database.events_after(
                        checkpoint.last_processed_sequence, DEFAULT_BATCH_SIZE
                    )
                )
                with self._connection:
                    applied = self._apply_batch(projector, checkpoint, events, now)
                if not applied:
                    complete = False
                    break
        return complete

    def _apply_batch(
        self,
        projector: LabourProjector,
        checkpoint: Checkpoint,
        events: Sequence[StoredEvent],
        now: datetime,
    ) -> bool:
        try:
            with self._connection:
                handles = projector.handles
                for stored in events:
                    if type(stored.event) in handles:
                        projector.apply(self._connection, stored)
                last = events[-1]
                updated = msgspec.structs.replace(
                    checkpoint,
                    last_processed_sequence=last.sequence,
                    last_processed_at=stamp(last.timestamp),
                    updated_at=stamp(now),
                    status="healthy",
                    error_message=None,
                    error_count=0,
                )
                self._write(updated)
        except Exception as error:
            failed = msgspec.structs.replace(
                checkpoint,
                updated_at=stamp(now),
                status="error",
                error_message=f"{type(error).__name__}: {error}",
                error_count=checkpoint.error_count + 1,
            )
            self._write(failed)
            self.checkpoints[projector.name] = failed
            logger.error(
                "Projector %s failed on labour %s after sequence %d (%d in a row%s):"
                " %s",
                projector.name,
                self._database.labour_id,
                checkpoint.last_processed_sequence,
                failed.error_count,
                ", now faulted" if failed.faulted else "",
                failed.error_message,
            )
            return False
        self.checkpoints[projector.name] = updated
        return True

    def _write(self, checkpoint: Checkpoint) -> None:
        self._connection.execute(
            "INSERT INTO projection_checkpoints (projector_name,"
            " last_processed_sequence,"
            " last_processed_at, updated_at, status, error_message, error_count)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (projector_name) DO UPDATE SET"
            " last_processed_sequence = excluded.last_processed_sequence,"
            " last_processed_at = excluded.last_processed_at,"
            " updated_at = excluded.updated_at, status = excluded.status,"
            " error_message = excluded.error_message,"
            " error_count = excluded.error_count",
            (
                checkpoint.projector_name,
                checkpoint.last_processed_sequence,
                checkpoint.last_processed_at,
                checkpoint.updated_at,
                checkpoint.status,
                checkpoint.error_message,
                checkpoint.error_count,
            ),
        )

    def clear(self) -> None:
        """Delete every read-model row and checkpoint; call inside a transaction."""
        for table in READ_MODEL_TABLES:
            self._connection.execute(f"DELETE FROM {table}")
        self._connection.execute("DELETE FROM projection_checkpoints")
        self.checkpoints = {
            projector.name: Checkpoint(projector_name=projector.name)
            for projector in LABOUR_PROJECTORS
        }
