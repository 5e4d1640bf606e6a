"""The peer of the in-process benchmark on the `eventsourcing` library: a
labour aggregate with the rules the command mix exercises, and an
application with one method per command, persisted by eventsourcing.sqlite.
"""

from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.sqlite import SQLiteRecorder

from fernd.domain.constants import (
    CONTRACTION_MAX_INTENSITY,
    CONTRACTION_MIN_INTENSITY,
    LABOUR_UPDATE_MAX_LENGTH,
)

# SQLite's numbering of PRAGMA synchronous values.
SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


class PeerRuleViolation(Exception):
    """A command broke a rule of the peer's labour aggregate."""


class PeerLabour(Aggregate):
    """A labour with only the state the benchmark's commands need."""

    @event("Planned")
    def __init__(self, mother_id: str) -> None:
        self.mother_id = mother_id
        self.begun = False
        self.active_contraction_id: UUID | None = None
        self.contraction_ids: set[UUID] = set()
        self.update_count = 0

    @event("LabourBegun")
    def begin(self, start_time: datetime) -> None:
        self.begun = True

    def start_contraction(self, contraction_id: UUID, now: datetime) -> None:
        if self.active_contraction_id is not None:
            raise PeerRuleViolation("Labour already has a contraction in progress")
        if contraction_id in self.contraction_ids:
            raise PeerRuleViolation("Contraction already exists with ID")
        self._contraction_started(contraction_id, now)

    @event("ContractionStarted")
    def _contraction_started(self, contraction_id: UUID, start_time: datetime) -> None:
        self.active_contraction_id = contraction_id
        self.contraction_ids.add(contraction_id)

    def end_contraction(
        self, contraction_id: UUID, intensity: int, now: datetime
    ) -> None:
        if not CONTRACTION_MIN_INTENSITY <= intensity <= CONTRACTION_MAX_INTENSITY:
            raise PeerRuleViolation(
                f"Intensity must be between {CONTRACTION_MIN_INTENSITY}"
                f" and {CONTRACTION_MAX_INTENSITY}"
            )
        if contraction_id not in self.contraction_ids:
            raise PeerRuleViolation("Contraction not found")
        if self.active_contraction_id != contraction_id:
            raise PeerRuleViolation("Contraction has already been ended")
        self._contraction_ended(contraction_id, now, intensity)

    @event("ContractionEnded")
    def _contraction_ended(
        self, contraction_id: UUID, end_time: datetime, intensity: int
    ) -> None:
        self.active_contraction_id = None

    def post_status_update(self, message: str, now: datetime) -> None:
        if not message.strip():
            raise PeerRuleViolation("Message cannot be empty")
        if len(message) > LABOUR_UPDATE_MAX_LENGTH:
            raise PeerRuleViolation(
                f"Message must be at most {LABOUR_UPDATE_MAX_LENGTH} characters"
            )
        self._labour_update_posted(uuid4(), "STATUS_UPDATE", message, now)

    @event("LabourUpdatePosted")
    def _labour_update_posted(
        self,
        labour_update_id: UUID,
        labour_update_type: str,
        message: str,
        sent_time: datetime,
    ) -> None:
        self.update_count += 1


class PeerLabours(Application[UUID]):
    """One command method per command of the mix: get, decide, save."""

    def plan(self, mother_id: str) -> UUID:
        labour = PeerLabour(mother_id)
        self.save(labour)
        return labour.id

    def begin(self, labour_id: UUID) -> None:
        labour: PeerLabour = self.repository.get(labour_id)
        labour.begin(datetime.now(UTC))
        self.save(labour)

    def start_contraction(self, labour_id: UUID, contraction_id: UUID) -> None:
        labour: PeerLabour = self.repository.get(labour_id)
        labour.start_contraction(contraction_id, datetime.now(UTC))
        self.save(labour)

    def end_contraction(
        self, labour_id: UUID, contraction_id: UUID, intensity: int
    ) -> None:
        labour: PeerLabour = self.repository.get(labour_id)
        labour.end_contraction(contraction_id, intensity, datetime.now(UTC))
        self.save(labour)

    def post_status_update(self, labour_id: UUID, message: str) -> None:
        labour: PeerLabour = self.repository.get(labour_id)
        labour.post_status_update(message, datetime.now(UTC))
        self.save(labour)


def peer_environment(database: Path) -> dict[str, str]:
    """Return the peer's settings: SQLite in `database`, and its fastest
    configuration for one writer process. The aggregate stays in the
    library's cache; without the cache, every command replays every event.
    The cache is not fast-forwarded, because no other process writes, and a
    cached aggregate is not deep-copied before each command, because the
    aggregate checks its rules before it triggers an event, so a rejected
    command leaves it unchanged."""
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(database),
        "AGGREGATE_CACHE_MAXSIZE": "16",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }


def open_peer(database: Path) -> tuple[PeerLabours, str]:
    """Open the peer on the SQLite file `database`; return it and the name
    of the PRAGMA synchronous setting its connection uses."""
    application = PeerLabours(env=peer_environment(database))
    recorder = application.recorder
    assert isinstance(recorder, SQLiteRecorder)
    with recorder.datastore.get_connection(commit=False) as connection:
        cursor = connection.cursor()
        cursor.execute("PRAGMA synchronous")
        synchronous = SYNCHRONOUS_NAMES.get(cursor.fetchone()[0], "unknown")
    return application, synchronous
