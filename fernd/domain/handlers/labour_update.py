"""Handlers of the LabourUpdate group and of PostApplicationLabourUpdate."""

from datetime import timedelta
from uuid import UUID

from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.constants import ANNOUNCEMENT_COOLDOWN_SECONDS
from fernd.domain.enums import LabourUpdateType
from fernd.domain.errors import InvalidCommand
from fernd.domain.handlers.context import CommandContext
from fernd.domain.labour import Labour, LabourUpdate
from fernd.domain.validation import check_update_message

_COOLDOWN = timedelta(seconds=ANNOUNCEMENT_COOLDOWN_SECONDS)


def _find(labour: Labour, labour_update_id: UUID) -> LabourUpdate:
    update = labour.labour_updates.get(labour_update_id)
    if update is None:
        raise InvalidCommand("Labour update not found")
    return update


def _check_cooldown(labour: Labour, ctx: CommandContext) -> None:
    last = labour.last_announcement()
    if last is not None and ctx.now - last.sent_time <= _COOLDOWN:
        raise InvalidCommand("Too soon since last announcement")


def post_labour_update(
    labour: Labour, command: cmd.PostLabourUpdate, ctx: CommandContext
) -> list[ev.Event]:
    check_update_message(command.message)
    if command.labour_update_type is LabourUpdateType.ANNOUNCEMENT:
        _check_cooldown(labour, ctx)
    return [
        ev.LabourUpdatePosted(
            labour_id=labour.id,
            labour_update_id=ctx.new_id(),
            labour_update_type=command.labour_update_type,
            message=command.message,
            application_generated=False,
            sent_time=ctx.now,
        )
    ]


def update_labour_update_message(
    labour: Labour, command: cmd.UpdateLabourUpdateMessage, ctx: CommandContext
) -> list[ev.Event]:
    check_update_message(command.message)
    update = _find(labour, command.labour_update_id)
    if update.labour_update_type is LabourUpdateType.ANNOUNCEMENT:
        raise InvalidCommand("Cannot update an announcement")
    return [
        ev.LabourUpdateMessageUpdated(
            labour_id=labour.id, labour_update_id=update.id, message=command.message
        )
    ]


def update_labour_update_type(
    labour: Labour, command: cmd.UpdateLabourUpdateType, ctx: CommandContext
) -> list[ev.Event]:
    update = _find(labour, command.labour_update_id)
    if update.labour_update_type is LabourUpdateType.ANNOUNCEMENT:
        raise InvalidCommand("Cannot update an announcement")
    if command.labour_update_type is LabourUpdateType.ANNOUNCEMENT:
        _check_cooldown(labour, ctx)
    return [
        ev.LabourUpdateTypeUpdated(
            labour_id=labour.id,
            labour_update_id=update.id,
            labour_update_type=command.labour_update_type,
        )
    ]


def delete_labour_update(
    labour: Labour, command: cmd.DeleteLabourUpdate, ctx: CommandContext
) -> list[ev.Event]:
    update = _find(labour, command.labour_update_id)
    return [ev.LabourUpdateDeleted(labour_id=labour.id, labour_update_id=update.id)]


def post_application_labour_update(
    labour: Labour, command: cmd.PostApplicationLabourUpdate, ctx: CommandContext
) -> list[ev.Event]:
    return [
        ev.LabourUpdatePosted(
            labour_id=labour.id,
            labour_update_id=ctx.new_id(),
            labour_update_type=LabourUpdateType.PRIVATE_NOTE,
            message=command.message,
            application_generated=True,
            sent_time=ctx.now,
        )
    ]
