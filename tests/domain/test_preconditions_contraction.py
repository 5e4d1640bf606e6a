"""Preconditions, their order and the events of the Contraction group, with
phase progression and the overlap rule."""

import contextlib
from datetime import timedelta
from uuid import UUID

import pytest

from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.enums import LabourPhase
from fernd.domain.errors import InvalidCommand, LabourError, ValidationError
from fernd.domain.phases import progressed_phase

from .builders import (
    LABOUR_ID,
    UNKNOWN_ID,
    Scenario,
    assert_error,
    command,
    contraction_id,
)

FUTURE_MESSAGE = (
    "Domain error: Validation error: Contraction time cannot be in the future"
)
INTENSITY_MESSAGE = "Domain error: Validation error: Intensity must be between 0 and 10"
START_AFTER_END_MESSAGE = (
    "Domain error: Validation error: Contraction start time cannot be after end time"
)
OVERLAP_MESSAGE = (
    "Domain error: Validation error: "
    "Updated contraction would overlap with existing contractions"
)
TOLERANCE = timedelta(seconds=60)
MICROSECOND = timedelta(microseconds=1)


def start(new_id: UUID, **fields: object) -> cmd.StartContraction:
    return command(cmd.StartContraction, contraction_id=new_id, **fields)


def end(existing_id: UUID, intensity: int = 5, **fields: object) -> cmd.EndContraction:
    return command(
        cmd.EndContraction, contraction_id=existing_id, intensity=intensity, **fields
    )


def update(existing_id: UUID, **fields: object) -> cmd.UpdateContraction:
    return command(cmd.UpdateContraction, contraction_id=existing_id, **fields)


def delete(existing_id: UUID) -> cmd.DeleteContraction:
    return command(cmd.DeleteContraction, contraction_id=existing_id)


def ended_contraction(scenario: Scenario, minutes_ago: float = 30) -> UUID:
    """Add a one-minute contraction of intensity 5 that started `minutes_ago`."""
    new_id, _ = scenario.add_contraction(
        scenario.now - timedelta(minutes=minutes_ago), seconds=60, intensity=5
    )
    return new_id


# StartContraction


def test_start_contraction_in_planned_begins_labour(scenario: Scenario) -> None:
    start_time = scenario.now - timedelta(minutes=5)
    new_id = contraction_id(1)

    events = scenario.run(start(new_id, start_time=start_time))

    assert events == [
        ev.LabourBegun(labour_id=LABOUR_ID, start_time=start_time),
        ev.LabourPhaseChanged(labour_id=LABOUR_ID, labour_phase=LabourPhase.EARLY),
        ev.ContractionStarted(
            labour_id=LABOUR_ID, contraction_id=new_id, start_time=start_time
        ),
    ]


def test_start_contraction_in_planned_posts_no_note(scenario: Scenario) -> None:
    start_time = scenario.now - timedelta(minutes=5)

    scenario.run(start(contraction_id(1), start_time=start_time))

    assert scenario.state.labour_updates == {}
    assert scenario.state.start_time == start_time
    assert scenario.state.phase is LabourPhase.EARLY


def test_start_contraction_after_begin_emits_only_started(scenario: Scenario) -> None:
    scenario.run(command(cmd.BeginLabour))
    scenario.tick(60)

    events = scenario.run(start(contraction_id(1)))

    assert events == [
        ev.ContractionStarted(
            labour_id=LABOUR_ID,
            contraction_id=contraction_id(1),
            start_time=scenario.now,
        )
    ]


def test_start_contraction_creates_active_contraction(scenario: Scenario) -> None:
    scenario.run(start(contraction_id(1)))

    contraction = scenario.state.contractions[contraction_id(1)]
    assert contraction.start_time == scenario.now
    assert contraction.end_time == scenario.now
    assert contraction.intensity is None
    assert scenario.state.active_contraction() is contraction


def test_start_contraction_far_in_past_accepted(scenario: Scenario) -> None:
    start_time = scenario.now - timedelta(days=400)

    events = scenario.run(start(contraction_id(1), start_time=start_time))

    assert events[-1] == ev.ContractionStarted(
        labour_id=LABOUR_ID, contraction_id=contraction_id(1), start_time=start_time
    )


def test_start_contraction_at_future_tolerance_accepted(scenario: Scenario) -> None:
    events = scenario.run(start(contraction_id(1), start_time=scenario.now + TOLERANCE))

    assert len(events) == 3


def test_start_contraction_beyond_future_tolerance_rejected(
    scenario: Scenario,
) -> None:
    start_time = scenario.now + TOLERANCE + MICROSECOND

    error = scenario.reject(start(contraction_id(1), start_time=start_time))

    assert_error(error, ValidationError, FUTURE_MESSAGE, "validation_error", 400)


def test_start_contraction_completed_rejected(scenario: Scenario) -> None:
    scenario.complete()

    error = scenario.reject(start(contraction_id(1)))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Cannot start contraction in completed labour",
        "conflict",
        409,
    )


def test_start_contraction_while_active_rejected(scenario: Scenario) -> None:
    scenario.start_contraction()

    error = scenario.reject(start(contraction_id(99)))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Labour already has a contraction in progress",
        "conflict",
        409,
    )


def test_start_contraction_existing_id_rejected(scenario: Scenario) -> None:
    existing_id = ended_contraction(scenario)

    error = scenario.reject(start(existing_id))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Contraction already exists with ID",
        "conflict",
        409,
    )


def test_start_contraction_reuses_deleted_id(scenario: Scenario) -> None:
    existing_id = ended_contraction(scenario)
    scenario.run(delete(existing_id))

    events = scenario.run(start(existing_id))

    assert events == [
        ev.ContractionStarted(
            labour_id=LABOUR_ID, contraction_id=existing_id, start_time=scenario.now
        )
    ]


def test_start_contraction_future_checked_before_phase(scenario: Scenario) -> None:
    scenario.complete()
    start_time = scenario.now + TOLERANCE + MICROSECOND

    error = scenario.reject(start(contraction_id(1), start_time=start_time))

    assert type(error) is ValidationError


def test_start_contraction_phase_checked_before_active(scenario: Scenario) -> None:
    scenario.start_contraction()
    scenario.advance_to(LabourPhase.COMPLETE)

    error = scenario.reject(start(contraction_id(99)))

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Cannot start contraction in completed labour"


def test_start_contraction_active_checked_before_existing_id(
    scenario: Scenario,
) -> None:
    active_id = scenario.start_contraction()

    error = scenario.reject(start(active_id))

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Labour already has a contraction in progress"


# EndContraction


def test_end_contraction_emits_ended(scenario: Scenario) -> None:
    active_id = scenario.start_contraction()
    scenario.tick(45)

    events = scenario.run(end(active_id, intensity=7))

    assert events == [
        ev.ContractionEnded(
            labour_id=LABOUR_ID,
            contraction_id=active_id,
            end_time=scenario.now,
            intensity=7,
        )
    ]


def test_end_contraction_with_end_time_sets_it(scenario: Scenario) -> None:
    active_id = scenario.start_contraction(scenario.now - timedelta(minutes=2))
    end_time = scenario.now - timedelta(minutes=1)

    scenario.run(end(active_id, intensity=4, end_time=end_time))

    contraction = scenario.state.contractions[active_id]
    assert contraction.end_time == end_time
    assert contraction.intensity == 4
    assert contraction.is_active is False


@pytest.mark.parametrize("intensity", [0, 10])
def test_end_contraction_intensity_bounds_accepted(
    scenario: Scenario, intensity: int
) -> None:
    active_id = scenario.start_contraction(scenario.now - timedelta(minutes=1))

    events = scenario.run(end(active_id, intensity=intensity))

    assert events[0] == ev.ContractionEnded(
        labour_id=LABOUR_ID,
        contraction_id=active_id,
        end_time=scenario.now,
        intensity=intensity,
    )


@pytest.mark.parametrize("intensity", [-1, 11, 100])
def test_end_contraction_intensity_out_of_range_rejected(
    scenario: Scenario, intensity: int
) -> None:
    active_id = scenario.start_contraction()

    error = scenario.reject(end(active_id, intensity=intensity))

    assert_error(error, ValidationError, INTENSITY_MESSAGE, "validation_error", 400)


def test_end_contraction_at_future_tolerance_accepted(scenario: Scenario) -> None:
    active_id = scenario.start_contraction()

    events = scenario.run(end(active_id, end_time=scenario.now + TOLERANCE))

    assert len(events) == 1


def test_end_contraction_beyond_future_tolerance_rejected(
    scenario: Scenario,
) -> None:
    active_id = scenario.start_contraction()
    end_time = scenario.now + TOLERANCE + MICROSECOND

    error = scenario.reject(end(active_id, end_time=end_time))

    assert_error(error, ValidationError, FUTURE_MESSAGE, "validation_error", 400)


def test_end_contraction_completed_rejected(scenario: Scenario) -> None:
    active_id = scenario.start_contraction()
    scenario.advance_to(LabourPhase.COMPLETE)

    error = scenario.reject(end(active_id))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Cannot end contraction in completed labour",
        "conflict",
        409,
    )


def test_end_contraction_unknown_rejected(scenario: Scenario) -> None:
    scenario.start_contraction()

    error = scenario.reject(end(UNKNOWN_ID))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Contraction not found",
        "not_found",
        404,
    )


def test_end_contraction_already_ended_rejected(scenario: Scenario) -> None:
    ended_id = ended_contraction(scenario)

    error = scenario.reject(end(ended_id))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Contraction has already been ended",
        "conflict",
        409,
    )


def test_end_contraction_before_start_rejected(scenario: Scenario) -> None:
    active_id = scenario.start_contraction()
    end_time = scenario.now - MICROSECOND

    error = scenario.reject(end(active_id, end_time=end_time))

    assert_error(
        error, ValidationError, START_AFTER_END_MESSAGE, "validation_error", 400
    )


def test_end_contraction_at_start_time_leaves_it_active(scenario: Scenario) -> None:
    active_id = scenario.start_contraction()

    scenario.run(end(active_id, intensity=6, end_time=scenario.now))

    contraction = scenario.state.contractions[active_id]
    assert contraction.is_active is True
    assert contraction.intensity == 6


def test_end_contraction_intensity_checked_before_phase(scenario: Scenario) -> None:
    active_id = scenario.start_contraction()
    scenario.advance_to(LabourPhase.COMPLETE)

    error = scenario.reject(end(active_id, intensity=11))

    assert_error(error, ValidationError, INTENSITY_MESSAGE, "validation_error", 400)


def test_end_contraction_intensity_checked_before_end_time(
    scenario: Scenario,
) -> None:
    active_id = scenario.start_contraction()
    end_time = scenario.now + TOLERANCE + MICROSECOND

    error = scenario.reject(end(active_id, intensity=-1, end_time=end_time))

    assert isinstance(error, ValidationError)
    assert error.detail == "Intensity must be between 0 and 10"


def test_end_contraction_end_time_checked_before_phase(scenario: Scenario) -> None:
    active_id = scenario.start_contraction()
    scenario.advance_to(LabourPhase.COMPLETE)
    end_time = scenario.now + TOLERANCE + MICROSECOND

    error = scenario.reject(end(active_id, end_time=end_time))

    assert isinstance(error, ValidationError)
    assert error.detail == "Contraction time cannot be in the future"


def test_end_contraction_phase_checked_before_existence(scenario: Scenario) -> None:
    scenario.complete()

    error = scenario.reject(end(UNKNOWN_ID))

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Cannot end contraction in completed labour"


def test_end_contraction_ended_checked_before_start_after_end(
    scenario: Scenario,
) -> None:
    ended_id = ended_contraction(scenario, minutes_ago=30)
    end_time = scenario.now - timedelta(hours=5)

    error = scenario.reject(end(ended_id, end_time=end_time))

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Contraction has already been ended"


# UpdateContraction


def test_update_contraction_emits_updated_with_all_fields(
    scenario: Scenario,
) -> None:
    ended_id = ended_contraction(scenario, minutes_ago=30)
    new_start = scenario.now - timedelta(minutes=40)
    new_end = scenario.now - timedelta(minutes=39)

    events = scenario.run(
        update(ended_id, start_time=new_start, end_time=new_end, intensity=3)
    )

    assert events == [
        ev.ContractionUpdated(
            labour_id=LABOUR_ID,
            contraction_id=ended_id,
            start_time=new_start,
            end_time=new_end,
            intensity=3,
        )
    ]
    contraction = scenario.state.contractions[ended_id]
    assert contraction.start_time == new_start
    assert contraction.end_time == new_end
    assert contraction.intensity == 3


def test_update_contraction_omitted_fields_are_null(scenario: Scenario) -> None:
    ended_id = ended_contraction(scenario)
    before = scenario.state.contractions[ended_id]
    old_start, old_end = before.start_time, before.end_time

    events = scenario.run(update(ended_id, intensity=9))

    assert events == [
        ev.ContractionUpdated(
            labour_id=LABOUR_ID,
            contraction_id=ended_id,
            start_time=None,
            end_time=None,
            intensity=9,
        )
    ]
    contraction = scenario.state.contractions[ended_id]
    assert contraction.start_time == old_start
    assert contraction.end_time == old_end


def test_update_contraction_all_omitted_still_emits(scenario: Scenario) -> None:
    ended_id = ended_contraction(scenario)

    events = scenario.run(update(ended_id))

    assert events == [
        ev.ContractionUpdated(labour_id=LABOUR_ID, contraction_id=ended_id)
    ]


@pytest.mark.parametrize("intensity", [-1, 11])
def test_update_contraction_intensity_out_of_range_rejected(
    scenario: Scenario, intensity: int
) -> None:
    ended_id = ended_contraction(scenario)

    error = scenario.reject(update(ended_id, intensity=intensity))

    assert_error(error, ValidationError, INTENSITY_MESSAGE, "validation_error", 400)


@pytest.mark.parametrize("field", ["start_time", "end_time"])
def test_update_contraction_future_time_rejected(
    scenario: Scenario, field: str
) -> None:
    ended_id = ended_contraction(scenario)
    future = scenario.now + TOLERANCE + MICROSECOND

    error = scenario.reject(update(ended_id, **{field: future}))

    assert_error(error, ValidationError, FUTURE_MESSAGE, "validation_error", 400)


def test_update_contraction_completed_rejected(scenario: Scenario) -> None:
    ended_id = ended_contraction(scenario)
    scenario.complete()

    error = scenario.reject(update(ended_id, intensity=2))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Cannot update contraction in completed labour",
        "conflict",
        409,
    )


def test_update_contraction_unknown_rejected(scenario: Scenario) -> None:
    ended_contraction(scenario)

    error = scenario.reject(update(UNKNOWN_ID, intensity=2))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Contraction not found",
        "not_found",
        404,
    )


def test_update_contraction_active_rejected(scenario: Scenario) -> None:
    active_id = scenario.start_contraction()

    error = scenario.reject(update(active_id, intensity=2))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Cannot update active contraction",
        "conflict",
        409,
    )


def test_update_contraction_start_after_current_end_rejected(
    scenario: Scenario,
) -> None:
    ended_id = ended_contraction(scenario, minutes_ago=30)
    current_end = scenario.state.contractions[ended_id].end_time

    error = scenario.reject(update(ended_id, start_time=current_end + MICROSECOND))

    assert_error(
        error, ValidationError, START_AFTER_END_MESSAGE, "validation_error", 400
    )


def test_update_contraction_end_before_current_start_rejected(
    scenario: Scenario,
) -> None:
    ended_id = ended_contraction(scenario, minutes_ago=30)
    current_start = scenario.state.contractions[ended_id].start_time

    error = scenario.reject(update(ended_id, end_time=current_start - MICROSECOND))

    assert_error(
        error, ValidationError, START_AFTER_END_MESSAGE, "validation_error", 400
    )


def test_update_contraction_both_bounds_reversed_rejected(
    scenario: Scenario,
) -> None:
    ended_id = ended_contraction(scenario, minutes_ago=30)

    error = scenario.reject(
        update(
            ended_id,
            start_time=scenario.now - timedelta(minutes=5),
            end_time=scenario.now - timedelta(minutes=6),
        )
    )

    assert type(error) is ValidationError


def test_update_contraction_intensity_checked_before_phase(
    scenario: Scenario,
) -> None:
    ended_id = ended_contraction(scenario)
    scenario.complete()

    error = scenario.reject(update(ended_id, intensity=11))

    assert_error(error, ValidationError, INTENSITY_MESSAGE, "validation_error", 400)


def test_update_contraction_intensity_checked_before_time(
    scenario: Scenario,
) -> None:
    ended_id = ended_contraction(scenario)
    future = scenario.now + TOLERANCE + MICROSECOND

    error = scenario.reject(update(ended_id, intensity=-1, end_time=future))

    assert isinstance(error, ValidationError)
    assert error.detail == "Intensity must be between 0 and 10"


def test_update_contraction_time_checked_before_phase(scenario: Scenario) -> None:
    ended_id = ended_contraction(scenario)
    scenario.complete()
    future = scenario.now + TOLERANCE + MICROSECOND

    error = scenario.reject(update(ended_id, start_time=future))

    assert isinstance(error, ValidationError)
    assert error.detail == "Contraction time cannot be in the future"


def test_update_contraction_phase_checked_before_existence(
    scenario: Scenario,
) -> None:
    scenario.complete()

    error = scenario.reject(update(UNKNOWN_ID))

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Cannot update contraction in completed labour"


def test_update_contraction_active_checked_before_bounds(scenario: Scenario) -> None:
    active_id = scenario.start_contraction()

    error = scenario.reject(
        update(active_id, end_time=scenario.now - timedelta(minutes=1))
    )

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Cannot update active contraction"


def test_update_contraction_bounds_checked_before_overlap(scenario: Scenario) -> None:
    base = scenario.now - timedelta(hours=1)
    scenario.add_contraction(base, seconds=60, intensity=5)
    second_id, _ = scenario.add_contraction(
        base + timedelta(minutes=10), seconds=60, intensity=5
    )

    # The new start lies inside the first contraction and after the current end.
    error = scenario.reject(
        update(
            second_id,
            start_time=base + timedelta(seconds=30),
            end_time=base + timedelta(seconds=20),
        )
    )

    assert isinstance(error, ValidationError)
    assert error.detail == "Contraction start time cannot be after end time"


# UpdateContraction overlap rule


def two_contractions(scenario: Scenario) -> tuple[UUID, UUID]:
    """Add [base, base+60 s] and [base+120 s, base+180 s], and return their ids."""
    base = scenario.now - timedelta(hours=1)
    first_id, _ = scenario.add_contraction(base, seconds=60, intensity=5)
    second_id, _ = scenario.add_contraction(
        base + timedelta(seconds=120), seconds=60, intensity=5
    )
    return first_id, second_id


def test_update_contraction_overlap_rejected(scenario: Scenario) -> None:
    first_id, second_id = two_contractions(scenario)
    first_end = scenario.state.contractions[first_id].end_time

    error = scenario.reject(update(second_id, start_time=first_end - MICROSECOND))

    assert_error(error, ValidationError, OVERLAP_MESSAGE, "validation_error", 400)


def test_update_contraction_enclosing_other_rejected(scenario: Scenario) -> None:
    first_id, second_id = two_contractions(scenario)
    first = scenario.state.contractions[first_id]

    error = scenario.reject(
        update(
            second_id,
            start_time=first.start_time - timedelta(seconds=1),
            end_time=first.end_time + timedelta(seconds=200),
        )
    )

    assert_error(error, ValidationError, OVERLAP_MESSAGE, "validation_error", 400)


def test_update_contraction_touching_start_accepted(scenario: Scenario) -> None:
    first_id, second_id = two_contractions(scenario)
    first_end = scenario.state.contractions[first_id].end_time

    events = scenario.run(update(second_id, start_time=first_end))

    assert len(events) >= 1
    assert scenario.state.contractions[second_id].start_time == first_end


def test_update_contraction_touching_end_accepted(scenario: Scenario) -> None:
    first_id, second_id = two_contractions(scenario)
    second_start = scenario.state.contractions[second_id].start_time

    events = scenario.run(update(first_id, end_time=second_start))

    assert len(events) >= 1
    assert scenario.state.contractions[first_id].end_time == second_start


def test_update_contraction_overlap_ignores_active(scenario: Scenario) -> None:
    _, second_id = two_contractions(scenario)
    active_start = scenario.now - timedelta(minutes=1)
    scenario.start_contraction(active_start)

    # The new interval contains the active contraction's start instant.
    events = scenario.run(update(second_id, end_time=scenario.now))

    assert len(events) >= 1


def test_update_contraction_intensity_only_skips_overlap(scenario: Scenario) -> None:
    base = scenario.now - timedelta(hours=1)
    # Start and end make no overlap check, so these two overlap already.
    scenario.add_contraction(base, seconds=120, intensity=5)
    second_id, _ = scenario.add_contraction(
        base + timedelta(seconds=60), seconds=120, intensity=5
    )

    events = scenario.run(update(second_id, intensity=2))

    assert len(events) >= 1


def test_update_contraction_unchanged_time_checks_overlap(scenario: Scenario) -> None:
    base = scenario.now - timedelta(hours=1)
    scenario.add_contraction(base, seconds=120, intensity=5)
    second_id, _ = scenario.add_contraction(
        base + timedelta(seconds=60), seconds=120, intensity=5
    )
    current_start = scenario.state.contractions[second_id].start_time

    error = scenario.reject(update(second_id, start_time=current_start))

    assert_error(error, ValidationError, OVERLAP_MESSAGE, "validation_error", 400)


def test_update_contraction_alone_never_overlaps(scenario: Scenario) -> None:
    only_id = ended_contraction(scenario)

    events = scenario.run(
        update(
            only_id,
            start_time=scenario.now - timedelta(hours=3),
            end_time=scenario.now - timedelta(hours=2),
        )
    )

    assert len(events) == 1


def test_update_contraction_deleted_not_counted_for_overlap(
    scenario: Scenario,
) -> None:
    first_id, second_id = two_contractions(scenario)
    first_end = scenario.state.contractions[first_id].end_time
    scenario.run(delete(first_id))

    events = scenario.run(update(second_id, start_time=first_end - MICROSECOND))

    assert len(events) >= 1


# DeleteContraction


def test_delete_contraction_emits_deleted(scenario: Scenario) -> None:
    ended_id = ended_contraction(scenario)

    events = scenario.run(delete(ended_id))

    assert events == [
        ev.ContractionDeleted(labour_id=LABOUR_ID, contraction_id=ended_id)
    ]
    assert ended_id not in scenario.state.contractions


def test_delete_contraction_completed_rejected(scenario: Scenario) -> None:
    ended_id = ended_contraction(scenario)
    scenario.complete()

    error = scenario.reject(delete(ended_id))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Cannot delete contraction in completed labour",
        "conflict",
        409,
    )


def test_delete_contraction_unknown_rejected(scenario: Scenario) -> None:
    ended_contraction(scenario)

    error = scenario.reject(delete(UNKNOWN_ID))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Contraction not found",
        "not_found",
        404,
    )


def test_delete_contraction_active_rejected(scenario: Scenario) -> None:
    active_id = scenario.start_contraction()

    error = scenario.reject(delete(active_id))

    assert_error(
        error,
        InvalidCommand,
        "Domain error: Invalid command: Cannot delete active contraction",
        "conflict",
        409,
    )


def test_delete_contraction_phase_checked_before_existence(
    scenario: Scenario,
) -> None:
    scenario.complete()

    error = scenario.reject(delete(UNKNOWN_ID))

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Cannot delete contraction in completed labour"


def test_delete_contraction_phase_checked_before_active(scenario: Scenario) -> None:
    active_id = scenario.start_contraction()
    scenario.advance_to(LabourPhase.COMPLETE)

    error = scenario.reject(delete(active_id))

    assert isinstance(error, InvalidCommand)
    assert error.detail == "Cannot delete contraction in completed labour"


# Phase progression


def add_series(
    scenario: Scenario, samples: list[tuple[int, float]], first_minutes_ago: int = 120
) -> list[ev.Event]:
    """Add contractions of `(intensity, seconds)` five minutes apart and return
    the events of the last EndContraction."""
    base = scenario.now - timedelta(minutes=first_minutes_ago)
    last_events: list[ev.Event] = []
    for index, (intensity, seconds) in enumerate(samples):
        _, last_events = scenario.add_contraction(
            base + timedelta(minutes=5 * index), seconds=seconds, intensity=intensity
        )
    return last_events


def phase_changes(events: list[ev.Event]) -> list[LabourPhase]:
    return [
        event.labour_phase
        for event in events
        if isinstance(event, ev.LabourPhaseChanged)
    ]


def test_phase_unchanged_with_two_rated_contractions(scenario: Scenario) -> None:
    events = add_series(scenario, [(10, 180), (10, 180)])

    assert phase_changes(events) == []
    assert scenario.state.phase is LabourPhase.EARLY


def test_phase_active_at_inclusive_thresholds(scenario: Scenario) -> None:
    events = add_series(scenario, [(6, 60), (6, 60), (6, 60)])

    assert events[1:] == [
        ev.LabourPhaseChanged(labour_id=LABOUR_ID, labour_phase=LabourPhase.ACTIVE)
    ]
    assert scenario.state.phase is LabourPhase.ACTIVE


def test_phase_active_from_mean_intensity(scenario: Scenario) -> None:
    events = add_series(scenario, [(5, 60), (6, 60), (7, 60)])

    assert phase_changes(events) == [LabourPhase.ACTIVE]


def test_phase_unchanged_below_active_intensity(scenario: Scenario) -> None:
    events = add_series(scenario, [(6, 120), (6, 120), (5, 120)])

    assert phase_changes(events) == []


def test_phase_unchanged_below_active_duration(scenario: Scenario) -> None:
    events = add_series(scenario, [(9, 59), (9, 59), (9, 59)])

    assert phase_changes(events) == []


def test_phase_jumps_early_to_transition(scenario: Scenario) -> None:
    events = add_series(scenario, [(8, 90), (8, 90), (8, 90)])

    assert scenario.state.phase is LabourPhase.TRANSITION
    assert events[1:] == [
        ev.LabourPhaseChanged(labour_id=LABOUR_ID, labour_phase=LabourPhase.TRANSITION)
    ]


def test_phase_active_when_transition_duration_missed(scenario: Scenario) -> None:
    events = add_series(scenario, [(9, 89), (9, 89), (9, 89)])

    assert phase_changes(events) == [LabourPhase.ACTIVE]


def test_phase_active_when_transition_intensity_missed(scenario: Scenario) -> None:
    events = add_series(scenario, [(8, 120), (8, 120), (7, 120)])

    assert phase_changes(events) == [LabourPhase.ACTIVE]


def test_phase_uses_newest_three_only(scenario: Scenario) -> None:
    events = add_series(scenario, [(0, 10), (9, 120), (9, 120), (9, 120)])

    assert phase_changes(events) == [LabourPhase.TRANSITION]


def test_phase_uses_reverse_insertion_order(scenario: Scenario) -> None:
    add_series(scenario, [(6, 60), (6, 60), (5, 60)], first_minutes_ago=60)
    assert scenario.state.phase is LabourPhase.EARLY

    # Inserted last but started first, so by insertion order it is the newest.
    # The newest three then average 6 and 1 minute, which they would not if
    # they were sorted by start time.
    _, events = scenario.add_contraction(
        scenario.now - timedelta(hours=5), seconds=60, intensity=7
    )

    assert phase_changes(events) == [LabourPhase.ACTIVE]


def test_phase_sorting_by_time_not_used(scenario: Scenario) -> None:
    add_series(scenario, [(9, 120), (9, 120), (9, 120)], first_minutes_ago=60)
    scenario.advance_to(LabourPhase.EARLY)

    # Inserted last with an early start: counted first although it is oldest.
    _, events = scenario.add_contraction(
        scenario.now - timedelta(hours=5), seconds=60, intensity=0
    )

    # Newest three by insertion: 0, 9, 9 -> mean 6, durations 1, 2, 2 minutes.
    assert phase_changes(events) == [LabourPhase.ACTIVE]


def test_phase_skips_unrated_contractions(scenario: Scenario) -> None:
    weak_id, _ = scenario.add_contraction(
        scenario.now - timedelta(minutes=60), seconds=120, intensity=0
    )
    add_series(scenario, [(8, 120), (8, 120)], first_minutes_ago=50)
    scenario.start_contraction()
    assert scenario.state.phase is LabourPhase.EARLY

    # The active contraction is newest but has no intensity, so the newest
    # three rated ones are the two strong ones and the updated one.
    events = scenario.run(update(weak_id, intensity=8))

    assert phase_changes(events) == [LabourPhase.TRANSITION]


def test_phase_never_goes_down(scenario: Scenario) -> None:
    add_series(scenario, [(9, 120), (9, 120), (9, 120)], first_minutes_ago=60)
    assert scenario.state.phase is LabourPhase.TRANSITION

    events = add_series(scenario, [(1, 20), (1, 20), (1, 20)], first_minutes_ago=30)

    assert phase_changes(events) == []
    assert scenario.state.phase is LabourPhase.TRANSITION


def test_phase_transition_not_lowered_to_active(scenario: Scenario) -> None:
    scenario.run(command(cmd.BeginLabour))
    scenario.advance_to(LabourPhase.TRANSITION)

    events = add_series(scenario, [(6, 60), (6, 60), (6, 60)])

    assert phase_changes(events) == []


def test_phase_pushing_not_lowered(scenario: Scenario) -> None:
    scenario.run(command(cmd.BeginLabour))
    scenario.advance_to(LabourPhase.PUSHING)

    events = add_series(scenario, [(10, 180), (10, 180), (10, 180)])

    assert phase_changes(events) == []
    assert scenario.state.phase is LabourPhase.PUSHING


def test_phase_active_to_transition(scenario: Scenario) -> None:
    add_series(scenario, [(6, 60), (6, 60), (6, 60)], first_minutes_ago=60)
    assert scenario.state.phase is LabourPhase.ACTIVE

    # Only the third of these lifts the newest three to a mean of 8 and 1.5 min.
    events = add_series(scenario, [(8, 90), (8, 90), (8, 90)], first_minutes_ago=30)

    assert phase_changes(events) == [LabourPhase.TRANSITION]


def test_phase_deleted_contraction_not_counted(scenario: Scenario) -> None:
    add_series(scenario, [(9, 120), (9, 120)], first_minutes_ago=60)
    weak_id, _ = scenario.add_contraction(
        scenario.now - timedelta(minutes=40), seconds=10, intensity=0
    )
    scenario.run(delete(weak_id))

    _, events = scenario.add_contraction(
        scenario.now - timedelta(minutes=30), seconds=120, intensity=9
    )

    assert phase_changes(events) == [LabourPhase.TRANSITION]


def test_update_contraction_runs_progression(scenario: Scenario) -> None:
    add_series(scenario, [(9, 120), (9, 120), (9, 120)], first_minutes_ago=60)
    last_id = list(scenario.state.contractions)[-1]
    scenario.advance_to(LabourPhase.EARLY)

    events = scenario.run(update(last_id, intensity=9))

    assert events == [
        ev.ContractionUpdated(labour_id=LABOUR_ID, contraction_id=last_id, intensity=9),
        ev.LabourPhaseChanged(labour_id=LABOUR_ID, labour_phase=LabourPhase.TRANSITION),
    ]


def test_update_contraction_progression_uses_new_values(scenario: Scenario) -> None:
    add_series(scenario, [(9, 60), (9, 60), (9, 60)], first_minutes_ago=60)
    assert scenario.state.phase is LabourPhase.ACTIVE
    last = list(scenario.state.contractions.values())[-1]

    # Lengthening the last contraction to 2.5 minutes lifts the mean to 1.5.
    events = scenario.run(
        update(last.id, end_time=last.start_time + timedelta(seconds=150))
    )

    assert phase_changes(events) == [LabourPhase.TRANSITION]


def test_update_contraction_without_fields_skips_progression(
    scenario: Scenario,
) -> None:
    add_series(scenario, [(9, 120), (9, 120), (9, 120)], first_minutes_ago=60)
    last_id = list(scenario.state.contractions)[-1]
    scenario.advance_to(LabourPhase.EARLY)

    events = scenario.run(update(last_id))

    assert events == [
        ev.ContractionUpdated(labour_id=LABOUR_ID, contraction_id=last_id)
    ]


def test_progressed_phase_complete_never_changes() -> None:
    strong = [(10, 3.0), (10, 3.0), (10, 3.0)]

    assert progressed_phase(LabourPhase.COMPLETE, strong) is None


def test_progressed_phase_never_reaches_pushing() -> None:
    strong = [(10, 30.0), (10, 30.0), (10, 30.0)]

    assert progressed_phase(LabourPhase.PLANNED, strong) is LabourPhase.TRANSITION


# At most one active contraction


@pytest.mark.xfail(
    strict=True,
    reason=(
        "UpdateContraction accepts an end equal to the start on an ended "
        "contraction, which makes it active while another one is active"
    ),
)
def test_update_contraction_cannot_make_second_active(scenario: Scenario) -> None:
    ended_id = ended_contraction(scenario)
    scenario.start_contraction()
    ended_start = scenario.state.contractions[ended_id].start_time

    with contextlib.suppress(LabourError):
        scenario.run(update(ended_id, end_time=ended_start))

    active = [c for c in scenario.state.contractions.values() if c.is_active]
    assert len(active) <= 1


def test_update_contraction_to_zero_length_makes_it_active(
    scenario: Scenario,
) -> None:
    ended_id = ended_contraction(scenario)
    ended_start = scenario.state.contractions[ended_id].start_time

    scenario.run(update(ended_id, end_time=ended_start))

    assert scenario.state.active_contraction() == scenario.state.contractions[ended_id]
