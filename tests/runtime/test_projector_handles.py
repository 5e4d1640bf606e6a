"""The runner passes a projector only the events listed in its `handles`, so
every other event type must leave that projector's read model alone."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import pytest

from fernd.domain import events as ev
from fernd.storage.labour_db import LabourDatabase, StoredEvent
from fernd.storage.projections.base import LabourProjector
from fernd.storage.projections.runner import LABOUR_PROJECTORS

LABOUR_ID = UUID("0190f5a2-7c3e-7b41-9d2a-3f6c8e1b2a45")
SAMPLE_TIME = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def _sample(field_type: msgspec.inspect.Type) -> Any:
    """Return a valid value of `field_type`."""
    match field_type:
        case msgspec.inspect.UUIDType():
            return UUID("0190f5a2-7c3e-7b41-9d2a-3f6c8e1b2a46")
        case msgspec.inspect.DateTimeType():
            return SAMPLE_TIME
        case msgspec.inspect.StrType():
            return "sample"
        case msgspec.inspect.BoolType():
            return True
        case msgspec.inspect.IntType():
            return 5
        case msgspec.inspect.EnumType(cls=enum):
            return next(iter(enum))
        case msgspec.inspect.ListType(item_type=item):
            return [_sample(item)]
        case msgspec.inspect.UnionType(types=types):
            return _sample(
                next(t for t in types if not isinstance(t, msgspec.inspect.NoneType))
            )
    raise AssertionError(f"No sample for {field_type}")


def _event(event_type: type[ev.Event]) -> ev.Event:
    info = msgspec.inspect.type_info(event_type)
    assert isinstance(info, msgspec.inspect.StructType)
    values = {field.name: _sample(field.type) for field in info.fields}
    values["labour_id"] = LABOUR_ID
    return event_type(**values)


@pytest.mark.parametrize("projector", LABOUR_PROJECTORS, ids=lambda p: p.name)
def test_projector_ignores_events_outside_handles(
    projector: LabourProjector, tmp_path: Path
) -> None:
    database = LabourDatabase.open(tmp_path, LABOUR_ID, "FULL", create=True)
    statements: list[str] = []

    def trace(cursor: Any, sql: str, bindings: Any) -> bool:
        statements.append(sql)
        return True

    database.connection.exec_trace = trace
    try:
        ignored = [t for t in ev.EVENT_TYPES.values() if t not in projector.handles]
        for sequence, event_type in enumerate(ignored, 1):
            event = _event(event_type)
            stored = StoredEvent(
                sequence=sequence,
                event=event,
                data=ev.encode_event(event),
                timestamp=SAMPLE_TIME,
                user_id="sample",
            )
            projector.apply(database.connection, stored)
            assert statements == [], f"{event_type.__name__} ran {statements}"
    finally:
        database.connection.exec_trace = None
        database.close()


@pytest.mark.parametrize("projector", LABOUR_PROJECTORS, ids=lambda p: p.name)
def test_projector_handles_only_known_events(projector: LabourProjector) -> None:
    assert projector.handles <= set(ev.EVENT_TYPES.values())
