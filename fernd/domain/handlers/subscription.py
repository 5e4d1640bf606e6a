"""Handlers of the Subscriber and Subscription groups and of the share token."""

import hmac
from uuid import UUID

from fernd.domain import commands as cmd
from fernd.domain import events as ev
from fernd.domain.enums import LabourPhase, SubscriberStatus
from fernd.domain.errors import InvalidCommand
from fernd.domain.handlers.context import CommandContext
from fernd.domain.labour import Labour, Subscription
from fernd.domain.validation import check_no_duplicates

# A caller holding one of these may not request access again.
_REQUEST_BLOCKING_STATUSES = frozenset(
    {SubscriberStatus.BLOCKED, SubscriberStatus.SUBSCRIBED, SubscriberStatus.REQUESTED}
)


def _find(labour: Labour, subscription_id: UUID) -> Subscription:
    subscription = labour.subscriptions.get(subscription_id)
    if subscription is None:
        raise InvalidCommand("Subscription not found")
    return subscription


def token_matches(supplied: str, stored: str) -> bool:
    """Compare a share token in constant time after upper-casing its ASCII
    letters; a token of another length does not match."""
    return hmac.compare_digest(supplied.encode().upper(), stored.encode())


def request_access(
    labour: Labour, command: cmd.RequestAccess, ctx: CommandContext
) -> list[ev.Event]:
    subscriber_id = ctx.caller.user_id
    if subscriber_id == labour.mother_id:
        raise InvalidCommand("Cannot subscribe to own labour")
    if labour.phase is LabourPhase.COMPLETE:
        raise InvalidCommand("Cannot subscribe to completed labour")
    if labour.subscription_token is None:
        raise InvalidCommand("Labour has no subscription token set")
    if not token_matches(command.token, labour.subscription_token):
        raise InvalidCommand("Incorrect subscription token")
    existing = labour.subscription_of(subscriber_id)
    if existing is not None and existing.status in _REQUEST_BLOCKING_STATUSES:
        raise InvalidCommand("Cannot subscribe to labour")

    # An unsubscribed or removed user keeps their subscription id.
    subscription_id = existing.id if existing is not None else ctx.new_id()
    return [
        ev.SubscriberRequested(
            labour_id=labour.id,
            subscriber_id=subscriber_id,
            subscription_id=subscription_id,
        )
    ]


def unsubscribe(
    labour: Labour, command: cmd.Unsubscribe, ctx: CommandContext
) -> list[ev.Event]:
    subscription = _find(labour, command.subscription_id)
    if subscription.status is not SubscriberStatus.SUBSCRIBED:
        raise InvalidCommand("Cannot unsubscribe from labour")
    return [
        ev.SubscriberUnsubscribed(labour_id=labour.id, subscription_id=subscription.id)
    ]


def update_notification_methods(
    labour: Labour, command: cmd.UpdateNotificationMethods, ctx: CommandContext
) -> list[ev.Event]:
    check_no_duplicates(command.notification_methods)
    subscription = _find(labour, command.subscription_id)
    return [
        ev.SubscriberNotificationMethodsUpdated(
            labour_id=labour.id,
            subscription_id=subscription.id,
            notification_methods=list(command.notification_methods),
        )
    ]


def update_access_level(
    labour: Labour, command: cmd.UpdateAccessLevel, ctx: CommandContext
) -> list[ev.Event]:
    subscription = _find(labour, command.subscription_id)
    if subscription.access_level is command.access_level:
        raise InvalidCommand("Subscription already has access level")
    return [
        ev.SubscriberAccessLevelUpdated(
            labour_id=labour.id,
            subscription_id=subscription.id,
            access_level=command.access_level,
        )
    ]


def approve_subscriber(
    labour: Labour, command: cmd.ApproveSubscriber, ctx: CommandContext
) -> list[ev.Event]:
    subscription = _find(labour, command.subscription_id)
    if subscription.status is not SubscriberStatus.REQUESTED:
        raise InvalidCommand("Subscription is not in REQUESTED state")
    return [ev.SubscriberApproved(labour_id=labour.id, subscription_id=subscription.id)]


def remove_subscriber(
    labour: Labour, command: cmd.RemoveSubscriber, ctx: CommandContext
) -> list[ev.Event]:
    subscription = _find(labour, command.subscription_id)
    if subscription.status in (SubscriberStatus.BLOCKED, SubscriberStatus.REMOVED):
        raise InvalidCommand("Cannot remove subscriber")
    return [ev.SubscriberRemoved(labour_id=labour.id, subscription_id=subscription.id)]


def block_subscriber(
    labour: Labour, command: cmd.BlockSubscriber, ctx: CommandContext
) -> list[ev.Event]:
    subscription = _find(labour, command.subscription_id)
    if subscription.status is SubscriberStatus.BLOCKED:
        raise InvalidCommand("Subscriber is already blocked")
    return [ev.SubscriberBlocked(labour_id=labour.id, subscription_id=subscription.id)]


def unblock_subscriber(
    labour: Labour, command: cmd.UnblockSubscriber, ctx: CommandContext
) -> list[ev.Event]:
    subscription = _find(labour, command.subscription_id)
    if subscription.status is not SubscriberStatus.BLOCKED:
        raise InvalidCommand("Subscriber is not blocked")
    return [
        ev.SubscriberUnblocked(labour_id=labour.id, subscription_id=subscription.id)
    ]


def update_subscriber_role(
    labour: Labour, command: cmd.UpdateSubscriberRole, ctx: CommandContext
) -> list[ev.Event]:
    subscription = _find(labour, command.subscription_id)
    if subscription.role is command.role:
        raise InvalidCommand("Subscriber already has role")
    return [
        ev.SubscriberRoleUpdated(
            labour_id=labour.id, subscription_id=subscription.id, role=command.role
        )
    ]


def invalidate_subscription_token(
    labour: Labour, command: cmd.InvalidateSubscriptionToken, ctx: CommandContext
) -> list[ev.Event]:
    return [ev.SubscriptionTokenInvalidated(labour_id=labour.id)]


def set_subscription_token(
    labour: Labour, command: cmd.SetSubscriptionToken, ctx: CommandContext
) -> list[ev.Event]:
    return [ev.SubscriptionTokenSet(labour_id=labour.id, token=command.token)]
