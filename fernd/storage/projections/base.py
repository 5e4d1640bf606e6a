"""Shared parts of the projectors: the error they raise and timestamp helpers."""

from datetime import datetime
from typing import Protocol

import apsw

from fernd.domain import events as ev
from fernd.domain.datetimes import sortable_datetime
from fernd.storage.labour_db import StoredEvent


class ProjectionError(Exception):
    """A projector could not apply an event, for example because the row the
    event changes is missing."""


class LabourProjector(Protocol):
    """A projector of one labour's events into its own database.

    `apply` changes nothing for an event whose type is not in `handles`, so
    the runner skips those events.
    """

    name: str
    handles: frozenset[type[ev.Event]]

    def apply(self, connection: apsw.Connection, stored: StoredEvent) -> None: ...


def stamp(value: datetime) -> str:
    return sortable_datetime(value)


def parse_stamp(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


def require_change(connection: apsw.Connection, what: str) -> None:
    """Raise ProjectionError unless the last statement changed a row."""
    if connection.changes() == 0:
        raise ProjectionError(f"No {what} row to change")
