"""Policies of the process manager: the effects that each event causes.

Only nine events have a policy. Contractions, status updates, private notes and
every other event cause no effect.
"""

from fernd.domain import events as ev
from fernd.domain.effects import (
    AnnouncementPostedNotification,
    Effect,
    EmailContext,
    GenerateSubscriptionToken,
    LabourBegunNotification,
    LabourCompletedNotification,
    LabourInviteNotification,
    MotherContext,
    SendNotification,
    SubscriberContext,
    SubscriberNotification,
    SubscriberRequestedNotification,
    SubscriptionApprovedNotification,
    command_key,
    effect_of,
    notification_key,
)
from fernd.domain.enums import (
    LabourUpdateType,
    NotificationChannel,
    SubscriberContactMethod,
)
from fernd.domain.labour import Labour, Subscription

# Values of `notification_type` and `command_type` in idempotency keys.
GENERATE_SUBSCRIPTION_TOKEN = "generate_subscription_token"
LABOUR_BEGUN = "labour_begun"
LABOUR_COMPLETED = "labour_completed"
ANNOUNCEMENT = "announcement"
APPROVED = "approved"
SUBSCRIBER_REQUESTED = "subscriber_requested"
INVITE = "invite"


def channel_of(method: SubscriberContactMethod) -> NotificationChannel:
    """Return the notification channel of the same name as `method`."""
    return NotificationChannel[method.name]


def effects_for_event(labour: Labour, event: ev.Event, sequence: int) -> list[Effect]:
    """Return the effects of `event`, stored at `sequence`, in creation order.

    `labour` must be the state right after `event` was applied: the subscribers
    and labour updates are read from it. Subscriber notifications go to each
    SUBSCRIBED subscription in list order and, within one subscription, to
    each of its contact methods in list order.
    """
    match event:
        case ev.LabourPlanned() | ev.SubscriptionTokenInvalidated():
            return [_generate_subscription_token(labour, sequence)]
        case ev.LabourBegun():
            return _notify_subscribers(
                labour,
                sequence,
                LABOUR_BEGUN,
                LabourBegunNotification(labour_id=labour.id),
            )
        case ev.LabourCompleted(notes=notes):
            return _notify_subscribers(
                labour,
                sequence,
                LABOUR_COMPLETED,
                LabourCompletedNotification(labour_id=labour.id, notes=notes),
            )
        case ev.LabourUpdatePosted():
            return _labour_update_posted(labour, event, sequence)
        case ev.LabourUpdateTypeUpdated():
            return _labour_update_type_updated(labour, event, sequence)
        case ev.SubscriberApproved(subscription_id=subscription_id):
            subscription = labour.subscriptions.get(subscription_id)
            if subscription is None:
                return []
            return [_subscription_approved(labour, subscription, sequence)]
        case ev.SubscriberRequested():
            return [_subscriber_requested(labour, event, sequence)]
        case ev.LabourInviteSent(invite_email=invite_email):
            return [_labour_invite(labour, invite_email, sequence)]
        case _:
            return []


def _generate_subscription_token(labour: Labour, sequence: int) -> Effect:
    return effect_of(
        GenerateSubscriptionToken(
            labour_id=labour.id,
            idempotency_key=command_key(
                labour.id, sequence, GENERATE_SUBSCRIPTION_TOKEN
            ),
        )
    )


def _notify_subscribers(
    labour: Labour,
    sequence: int,
    notification_type: str,
    notification: SubscriberNotification,
) -> list[Effect]:
    """Return one notification per contact method of every subscriber."""
    effects: list[Effect] = []
    for subscription in labour.subscribed():
        for method in subscription.contact_methods:
            effects.append(
                _notify_subscriber(
                    labour,
                    subscription,
                    sequence,
                    notification_type,
                    notification,
                    channel_of(method),
                )
            )
    return effects


def _notify_subscriber(
    labour: Labour,
    subscription: Subscription,
    sequence: int,
    notification_type: str,
    notification: SubscriberNotification,
    channel: NotificationChannel,
) -> Effect:
    key = notification_key(
        labour.id, sequence, subscription.subscriber_id, notification_type, channel
    )
    context = SubscriberContext(
        recipient_user_id=subscription.subscriber_id,
        subscription_id=subscription.id,
        channel=channel,
        sender_id=labour.mother_id,
        notification=notification,
    )
    return effect_of(SendNotification(idempotency_key=key, context=context))


def _labour_update_posted(
    labour: Labour, event: ev.LabourUpdatePosted, sequence: int
) -> list[Effect]:
    """Notify subscribers of an announcement that the mother posted herself."""
    if event.labour_update_type is not LabourUpdateType.ANNOUNCEMENT:
        return []
    if event.application_generated:
        return []
    notification = AnnouncementPostedNotification(
        labour_id=labour.id, message=event.message
    )
    return _notify_subscribers(labour, sequence, ANNOUNCEMENT, notification)


def _labour_update_type_updated(
    labour: Labour, event: ev.LabourUpdateTypeUpdated, sequence: int
) -> list[Effect]:
    """Notify subscribers of an update whose type has just become ANNOUNCEMENT.

    An application-generated update is named by its message, so the
    `"labour_begun"` note becomes a LabourBegun notification. Any other
    application message causes no notification. An update the mother wrote becomes an
    AnnouncementPosted notification with its message.
    """
    if event.labour_update_type is not LabourUpdateType.ANNOUNCEMENT:
        return []
    update = labour.labour_updates.get(event.labour_update_id)
    if update is None:
        return []
    notification_type = update.message if update.application_generated else ANNOUNCEMENT
    notification: SubscriberNotification
    if notification_type == LABOUR_BEGUN:
        notification = LabourBegunNotification(labour_id=labour.id)
    elif notification_type == ANNOUNCEMENT:
        notification = AnnouncementPostedNotification(
            labour_id=labour.id, message=update.message
        )
    else:
        return []
    return _notify_subscribers(labour, sequence, notification_type, notification)


def _subscription_approved(
    labour: Labour, subscription: Subscription, sequence: int
) -> Effect:
    """Tell the approved subscriber by EMAIL, whatever their contact methods."""
    return _notify_subscriber(
        labour,
        subscription,
        sequence,
        APPROVED,
        SubscriptionApprovedNotification(labour_id=labour.id),
        NotificationChannel.EMAIL,
    )


def _subscriber_requested(
    labour: Labour, event: ev.SubscriberRequested, sequence: int
) -> Effect:
    """Tell the mother by EMAIL that a user asked to follow the labour."""
    channel = NotificationChannel.EMAIL
    context = MotherContext(
        recipient_user_id=labour.mother_id,
        channel=channel,
        notification=SubscriberRequestedNotification(
            labour_id=labour.id,
            subscription_id=event.subscription_id,
            requester_user_id=event.subscriber_id,
        ),
    )
    key = notification_key(
        labour.id, sequence, labour.mother_id, SUBSCRIBER_REQUESTED, channel
    )
    return effect_of(SendNotification(idempotency_key=key, context=context))


def _labour_invite(labour: Labour, invite_email: str, sequence: int) -> Effect:
    """Invite an address, by EMAIL, to follow the labour on the mother's behalf."""
    context = EmailContext(
        email=invite_email,
        sender_id=labour.mother_id,
        notification=LabourInviteNotification(labour_id=labour.id),
    )
    key = notification_key(
        labour.id, sequence, invite_email, INVITE, NotificationChannel.EMAIL
    )
    return effect_of(SendNotification(idempotency_key=key, context=context))
