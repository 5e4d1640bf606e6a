"""Who may receive the push of an event.

The audience is judged against the state right before the event, because that
is when the event's subject (an update, a subscription) still exists in its
old form. It is stored with the event, so a resumed socket is filtered the
same way as a live one.
"""

from fernd.domain import events as ev
from fernd.domain.enums import LabourUpdateType
from fernd.domain.labour import Labour

# Audience values: everyone connected, the mother and birth partners, the
# mother alone, or the mother and one subscriber ("subscriber:<user id>").
EVERYONE = "everyone"
PRIVATE = "private"
MOTHER = "mother"
SUBSCRIBER_PREFIX = "subscriber:"

_MOTHER_ONLY = (
    ev.LabourInviteSent,
    ev.SubscriptionTokenSet,
    ev.SubscriptionTokenInvalidated,
)
_SUBSCRIPTION_EVENTS = (
    ev.SubscriberUnsubscribed,
    ev.SubscriberNotificationMethodsUpdated,
    ev.SubscriberAccessLevelUpdated,
    ev.SubscriberApproved,
    ev.SubscriberRemoved,
    ev.SubscriberBlocked,
    ev.SubscriberUnblocked,
    ev.SubscriberRoleUpdated,
)


def audience_of(labour: Labour | None, event: ev.Event) -> str:
    """Return the audience of `event`, given the state right before it."""
    if isinstance(event, _MOTHER_ONLY):
        return MOTHER
    if isinstance(event, ev.SubscriberRequested):
        return SUBSCRIBER_PREFIX + event.subscriber_id
    if isinstance(event, _SUBSCRIPTION_EVENTS):
        subscription = (
            labour.subscriptions.get(event.subscription_id) if labour else None
        )
        if subscription is None:
            return MOTHER
        return SUBSCRIBER_PREFIX + subscription.subscriber_id
    if isinstance(event, ev.LabourUpdatePosted):
        private = event.labour_update_type is LabourUpdateType.PRIVATE_NOTE
        return PRIVATE if private else EVERYONE
    if isinstance(event, ev.LabourUpdateMessageUpdated | ev.LabourUpdateDeleted):
        update = labour.labour_updates.get(event.labour_update_id) if labour else None
        if (
            update is not None
            and update.labour_update_type is LabourUpdateType.PRIVATE_NOTE
        ):
            return PRIVATE
        return EVERYONE
    return EVERYONE
