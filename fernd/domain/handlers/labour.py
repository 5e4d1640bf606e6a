"""Handlers of the Labour group and of the internal labour commands."""

import math
from datetime import timedelta

from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.constants import LABOUR_INVITE_LIMIT, LABOUR_INVITE_WINDOW_SECONDS
from fernd.domain.enums import LabourPhase, LabourUpdateType
from fernd.domain.errors import (
    InvalidCommand,
    InvalidStateTransition,
    RateLimited,
    ValidationError,
)
from fernd.domain.handlers.context import CommandContext
from fernd.domain.labour import Labour
from fernd.domain.validation import check_invite_email, check_labour_name, check_notes

_INVITE_WINDOW = timedelta(seconds=LABOUR_INVITE_WINDOW_SECONDS)

# The private note posted when the mother begins labour herself.
LABOUR_BEGUN_NOTE = "labour_begun"


def plan_labour(
    labour: Labour | None, command: cmd.PlanLabour, ctx: CommandContext
) -> list[ev.Event]:
    check_labour_name(command.labour_name)
    if labour is not None:
        raise InvalidStateTransition(labour.phase, LabourPhase.PLANNED)
    assert command.mother_id is not None and command.mother_name is not None
    return [
        ev.LabourPlanned(
            labour_id=command.labour_id,
            mother_id=command.mother_id,
            mother_name=command.mother_name,
            first_labour=command.first_labour,
            due_date=command.due_date,
            labour_name=command.labour_name,
        ),
        ev.LabourPhaseChanged(
            labour_id=command.labour_id, labour_phase=LabourPhase.PLANNED
        ),
    ]


def update_labour_plan(
    labour: Labour, command: cmd.UpdateLabourPlan, ctx: CommandContext
) -> list[ev.Event]:
    check_labour_name(command.labour_name)
    return [
        ev.LabourPlanUpdated(
            labour_id=labour.id,
            first_labour=command.first_labour,
            due_date=command.due_date,
            labour_name=command.labour_name,
        )
    ]


def begin_labour(
    labour: Labour, command: cmd.BeginLabour, ctx: CommandContext
) -> list[ev.Event]:
    if labour.phase is not LabourPhase.PLANNED:
        raise InvalidStateTransition(labour.phase, LabourPhase.EARLY)
    return [
        ev.LabourBegun(labour_id=labour.id, start_time=ctx.now),
        ev.LabourPhaseChanged(labour_id=labour.id, labour_phase=LabourPhase.EARLY),
        ev.LabourUpdatePosted(
            labour_id=labour.id,
            labour_update_id=ctx.new_id(),
            labour_update_type=LabourUpdateType.PRIVATE_NOTE,
            message=LABOUR_BEGUN_NOTE,
            application_generated=True,
            sent_time=ctx.now,
        ),
    ]


def complete_labour(
    labour: Labour, command: cmd.CompleteLabour, ctx: CommandContext
) -> list[ev.Event]:
    check_notes(command.notes)
    if labour.phase is LabourPhase.COMPLETE:
        raise InvalidStateTransition(LabourPhase.COMPLETE, LabourPhase.COMPLETE)
    if labour.active_contraction() is not None:
        raise ValidationError("Cannot complete labour with active contraction")
    return [
        ev.LabourCompleted(labour_id=labour.id, notes=command.notes, end_time=ctx.now),
        ev.LabourPhaseChanged(labour_id=labour.id, labour_phase=LabourPhase.COMPLETE),
    ]


def send_labour_invite(
    labour: Labour, command: cmd.SendLabourInvite, ctx: CommandContext
) -> list[ev.Event]:
    check_invite_email(command.invite_email)
    if labour.phase is LabourPhase.COMPLETE:
        raise InvalidCommand("Cannot invite to completed labour")

    window_start = ctx.now - _INVITE_WINDOW
    counted = [sent for sent in labour.recent_invite_times if sent > window_start]
    if len(counted) >= LABOUR_INVITE_LIMIT:
        # The limit lifts once the oldest counted invite leaves the window.
        wait = min(counted) + _INVITE_WINDOW - ctx.now
        raise RateLimited(
            "Too many invites sent, try again later",
            retry_after_seconds=max(1, math.ceil(wait.total_seconds())),
        )
    return [ev.LabourInviteSent(labour_id=labour.id, invite_email=command.invite_email)]


def delete_labour(
    labour: Labour, command: cmd.DeleteLabour, ctx: CommandContext
) -> list[ev.Event]:
    if labour.phase is not LabourPhase.COMPLETE:
        raise InvalidCommand("Cannot delete active labour")
    return [ev.LabourDeleted(labour_id=labour.id)]


def advance_labour_phase(
    labour: Labour, command: cmd.AdvanceLabourPhase, ctx: CommandContext
) -> list[ev.Event]:
    if labour.phase is LabourPhase.COMPLETE:
        raise InvalidCommand("Cannot advance from Completed state")
    if command.labour_phase is labour.phase:
        raise InvalidCommand(
            f"Cannot advance labour phase to {command.labour_phase.value}, "
            f"phase is already {labour.phase.value}."
        )
    return [
        ev.LabourPhaseChanged(labour_id=labour.id, labour_phase=command.labour_phase)
    ]
