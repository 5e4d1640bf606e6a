"""Handlers of the Contraction group."""

from collections.abc import Iterator
from datetime import datetime
from uuid import UUID

from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.enums import LabourPhase
from fernd.domain.errors import InvalidCommand, ValidationError
from fernd.domain.handlers.context import CommandContext
from fernd.domain.labour import Contraction, Labour
from fernd.domain.phases import progressed_phase
from fernd.domain.validation import check_contraction_time, check_intensity


def _find(labour: Labour, contraction_id: UUID) -> Contraction:
    contraction = labour.contractions.get(contraction_id)
    if contraction is None:
        raise InvalidCommand("Contraction not found")
    return contraction


def _samples_after_change(
    labour: Labour,
    changed_id: UUID,
    start: datetime,
    end: datetime,
    intensity: int | None,
) -> Iterator[tuple[int | None, float]]:
    """Yield `(intensity, minutes)` newest first, as they would be once the
    contraction `changed_id` has the given start, end and intensity."""
    for contraction in reversed(labour.contractions.values()):
        if contraction.id == changed_id:
            yield intensity, (end - start).total_seconds() / 60
        else:
            yield contraction.intensity, contraction.duration_minutes


def _phase_change(
    labour: Labour,
    changed_id: UUID,
    start: datetime,
    end: datetime,
    intensity: int | None,
) -> list[ev.Event]:
    samples = _samples_after_change(labour, changed_id, start, end, intensity)
    phase = progressed_phase(labour.phase, samples)
    if phase is None:
        return []
    return [ev.LabourPhaseChanged(labour_id=labour.id, labour_phase=phase)]


def _overlaps(
    labour: Labour, contraction: Contraction, start: datetime, end: datetime
) -> bool:
    """Tell whether [start, end] overlaps another ended contraction; touching
    intervals do not overlap."""
    if len(labour.contractions) <= 1:
        return False
    for other in labour.contractions.values():
        if other.id == contraction.id or other.is_active:
            continue
        if start < other.end_time and other.start_time < end:
            return True
    return False


def start_contraction(
    labour: Labour, command: cmd.StartContraction, ctx: CommandContext
) -> list[ev.Event]:
    check_contraction_time(command.start_time, ctx.now)
    if labour.phase is LabourPhase.COMPLETE:
        raise InvalidCommand("Cannot start contraction in completed labour")
    if labour.active_contraction() is not None:
        raise InvalidCommand("Labour already has a contraction in progress")
    if command.contraction_id in labour.contractions:
        raise InvalidCommand("Contraction already exists with ID")

    start_time = command.start_time or ctx.now
    events: list[ev.Event] = []
    if labour.phase is LabourPhase.PLANNED:
        # The first contraction begins the labour, without a labour_begun note.
        events.append(ev.LabourBegun(labour_id=labour.id, start_time=start_time))
        events.append(
            ev.LabourPhaseChanged(labour_id=labour.id, labour_phase=LabourPhase.EARLY)
        )
    events.append(
        ev.ContractionStarted(
            labour_id=labour.id,
            contraction_id=command.contraction_id,
            start_time=start_time,
        )
    )
    return events


def end_contraction(
    labour: Labour, command: cmd.EndContraction, ctx: CommandContext
) -> list[ev.Event]:
    check_intensity(command.intensity)
    check_contraction_time(command.end_time, ctx.now)
    if labour.phase is LabourPhase.COMPLETE:
        raise InvalidCommand("Cannot end contraction in completed labour")
    contraction = _find(labour, command.contraction_id)
    if not contraction.is_active:
        raise InvalidCommand("Contraction has already been ended")
    end_time = command.end_time or ctx.now
    if contraction.start_time > end_time:
        raise ValidationError("Contraction start time cannot be after end time")

    events: list[ev.Event] = [
        ev.ContractionEnded(
            labour_id=labour.id,
            contraction_id=contraction.id,
            end_time=end_time,
            intensity=command.intensity,
        )
    ]
    events += _phase_change(
        labour, contraction.id, contraction.start_time, end_time, command.intensity
    )
    return events


def update_contraction(
    labour: Labour, command: cmd.UpdateContraction, ctx: CommandContext
) -> list[ev.Event]:
    if command.intensity is not None:
        check_intensity(command.intensity)
    check_contraction_time(command.start_time, ctx.now)
    check_contraction_time(command.end_time, ctx.now)
    if labour.phase is LabourPhase.COMPLETE:
        raise InvalidCommand("Cannot update contraction in completed labour")
    contraction = _find(labour, command.contraction_id)
    if contraction.is_active:
        raise InvalidCommand("Cannot update active contraction")

    start = command.start_time or contraction.start_time
    end = command.end_time or contraction.end_time
    if start > end:
        raise ValidationError("Contraction start time cannot be after end time")
    times_given = command.start_time is not None or command.end_time is not None
    if times_given and _overlaps(labour, contraction, start, end):
        raise ValidationError(
            "Updated contraction would overlap with existing contractions"
        )

    events: list[ev.Event] = [
        ev.ContractionUpdated(
            labour_id=labour.id,
            contraction_id=contraction.id,
            start_time=command.start_time,
            end_time=command.end_time,
            intensity=command.intensity,
        )
    ]
    if times_given or command.intensity is not None:
        intensity = (
            command.intensity
            if command.intensity is not None
            else contraction.intensity
        )
        events += _phase_change(labour, contraction.id, start, end, intensity)
    return events


def delete_contraction(
    labour: Labour, command: cmd.DeleteContraction, ctx: CommandContext
) -> list[ev.Event]:
    if labour.phase is LabourPhase.COMPLETE:
        raise InvalidCommand("Cannot delete contraction in completed labour")
    contraction = _find(labour, command.contraction_id)
    if contraction.is_active:
        raise InvalidCommand("Cannot delete active contraction")
    return [ev.ContractionDeleted(labour_id=labour.id, contraction_id=contraction.id)]
