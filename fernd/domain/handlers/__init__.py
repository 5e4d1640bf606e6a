"""`decide`: run steps 5 to 7 of the command pipeline on a labour's state.

Load (an unknown or deleted labour is not found), authorize, then check the
command's preconditions in their listed order and return its events.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.authorization import Principal, authorize
from fernd.domain.errors import NotFound
from fernd.domain.handlers import contraction, labour_update, subscription
from fernd.domain.handlers import labour as labour_handlers
from fernd.domain.handlers.context import CommandContext
from fernd.domain.labour import Labour, create, evolve

__all__ = ["CommandContext", "apply_events", "decide"]

Handler = Callable[[Any, Any, CommandContext], list[ev.Event]]

_HANDLERS: dict[type[cmd.Command], Handler] = {
    cmd.PlanLabour: labour_handlers.plan_labour,
    cmd.UpdateLabourPlan: labour_handlers.update_labour_plan,
    cmd.BeginLabour: labour_handlers.begin_labour,
    cmd.CompleteLabour: labour_handlers.complete_labour,
    cmd.SendLabourInvite: labour_handlers.send_labour_invite,
    cmd.DeleteLabour: labour_handlers.delete_labour,
    cmd.AdvanceLabourPhase: labour_handlers.advance_labour_phase,
    cmd.StartContraction: contraction.start_contraction,
    cmd.EndContraction: contraction.end_contraction,
    cmd.UpdateContraction: contraction.update_contraction,
    cmd.DeleteContraction: contraction.delete_contraction,
    cmd.PostLabourUpdate: labour_update.post_labour_update,
    cmd.UpdateLabourUpdateMessage: labour_update.update_labour_update_message,
    cmd.UpdateLabourUpdateType: labour_update.update_labour_update_type,
    cmd.DeleteLabourUpdate: labour_update.delete_labour_update,
    cmd.PostApplicationLabourUpdate: labour_update.post_application_labour_update,
    cmd.RequestAccess: subscription.request_access,
    cmd.Unsubscribe: subscription.unsubscribe,
    cmd.UpdateNotificationMethods: subscription.update_notification_methods,
    cmd.UpdateAccessLevel: subscription.update_access_level,
    cmd.ApproveSubscriber: subscription.approve_subscriber,
    cmd.RemoveSubscriber: subscription.remove_subscriber,
    cmd.BlockSubscriber: subscription.block_subscriber,
    cmd.UnblockSubscriber: subscription.unblock_subscriber,
    cmd.UpdateSubscriberRole: subscription.update_subscriber_role,
    cmd.InvalidateSubscriptionToken: subscription.invalidate_subscription_token,
    cmd.SetSubscriptionToken: subscription.set_subscription_token,
}


def load(labour: Labour | None, command: cmd.AnyCommand) -> Labour | None:
    """Return the labour a command acts on; raise NotFound when it is unknown
    or deleted, except for PlanLabour, which needs no labour."""
    if isinstance(command, cmd.PlanLabour):
        return labour
    if labour is None or labour.deleted:
        raise NotFound()
    return labour


def authorize_command(
    labour: Labour | None, command: cmd.AnyCommand, ctx: CommandContext
) -> Principal:
    """Authorize `command` for the caller; raise AuthorizationDenied if denied."""
    return authorize(
        labour,
        ctx.caller,
        command.name,
        command.capability,
        subscription_id=getattr(command, "subscription_id", None),
    )


def decide(
    labour: Labour | None, command: cmd.Command, ctx: CommandContext
) -> list[ev.Event]:
    """Return the events `command` appends to `labour`.

    Raises NotFound, AuthorizationDenied or a LabourError, whichever step fails
    first; the state is never changed here.
    """
    labour = load(labour, command)
    authorize_command(labour, command, ctx)
    return _HANDLERS[type(command)](labour, command, ctx)


def apply_events(
    labour: Labour | None,
    events: list[ev.Event],
    first_sequence: int,
    timestamp: datetime,
) -> Labour:
    """Apply `events`, numbered from `first_sequence`, and return the state.

    A labour that does not exist yet is created by its LabourPlanned event.
    """
    for offset, event in enumerate(events):
        sequence = first_sequence + offset
        if labour is None:
            if not isinstance(event, ev.LabourPlanned):
                raise ValueError(f"{event.name} cannot start a labour")
            labour = create(event, sequence)
        else:
            evolve(labour, event, sequence, timestamp)
    if labour is None:
        raise ValueError("No events to apply")
    return labour
